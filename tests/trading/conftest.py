from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk, build_desk


@pytest.fixture
def desk(conn: psycopg.Connection[Any]) -> Desk:
    return build_desk(conn)
