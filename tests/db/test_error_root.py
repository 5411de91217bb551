"""Every error tradestore raises on purpose derives from TradestoreError, so the CLI and
the API each catch one class (cli.common.handles_errors, api.errors)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import typer

import tradestore
from tradestore.cli.common import handles_errors
from tradestore.db.errors import TradestoreError
from tradestore.db.server import ServerStartError
from tradestore.ops.backup import BackupError


def _exception_classes() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(tradestore.__path__, "tradestore."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                found.append(obj)
    return found


def test_every_exception_class_defined_in_tradestore_derives_from_tradestore_error() -> None:
    classes = _exception_classes()
    # The walk reaches the errors of every capability, not just db.errors.
    assert {c.__name__ for c in classes} >= {
        "ValidationError", "DatabaseLost", "SettingsError", "AuthError", "ApiError", "AlertError"
    }  # fmt: skip
    outside = [
        f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, TradestoreError)
    ]
    assert outside == []


@pytest.mark.parametrize(
    "error",
    [BackupError("pg_dump failed"), ServerStartError("initdb failed")],
    ids=["BackupError", "ServerStartError"],
)
def test_cli_turns_any_tradestore_error_into_one_line_and_exit_1(
    error: TradestoreError, capsys: pytest.CaptureFixture[str]
) -> None:
    @handles_errors
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 1
    assert str(error) in capsys.readouterr().err
