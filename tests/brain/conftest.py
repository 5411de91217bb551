from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brain.fake_llm import FakeLLM, fake_llm


@pytest.fixture
def llm_server() -> Iterator[FakeLLM]:
    with fake_llm() as fake:
        yield fake
