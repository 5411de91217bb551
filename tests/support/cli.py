"""Running the `tradestore` command line in a test, against the test's database."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestore.cli.common import OUTPUT
from tradestore.cli.main import app
from tradestore.config import get_settings

__all__ = ["Invoke", "cli_session"]

Invoke = Callable[..., tuple[int, str]]


@contextlib.contextmanager
def cli_session(
    db: str, home: Path, monkeypatch: pytest.MonkeyPatch, *, columns: int = 250
) -> Iterator[Invoke]:
    """`invoke(*args) -> (exit code, output)` with DATABASE_URL and TRADESTORE_HOME set and
    a terminal `columns` wide (wide enough by default that no line wraps)."""
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(home))
    monkeypatch.setenv("COLUMNS", str(columns))
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: object) -> tuple[int, str]:
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.output

    try:
        yield invoke
    finally:
        OUTPUT.exact = OUTPUT.wide = False
        get_settings.cache_clear()
