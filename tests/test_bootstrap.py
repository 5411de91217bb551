"""run.py: `up` installs the core, `test` the extras too, each stamped on its own, and the
test command lints, checks formatting and type-checks (mypy, strict) before the suite."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_py(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tradestore_run_py", ROOT / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "VENV", tmp_path)
    return module


def test_up_installs_the_core_and_test_installs_the_test_extras(
    run_py: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"core": str(ROOT), "test": f"{ROOT}[test]"} == run_py.TARGETS
    installed: list[str] = []
    monkeypatch.setattr(run_py, "ensure_venv", installed.append)
    monkeypatch.setattr(run_py, "run_tests", lambda args: 0)
    monkeypatch.setattr(run_py.subprocess, "call", lambda *a, **kw: 0)
    monkeypatch.setattr(run_py.os, "execv", lambda *a: None)
    for command in ("up", "test", "bench", "tradestore"):
        run_py.main([command])
    assert installed == ["core", "test", "test", "core"]


def test_test_after_up_installs_again_and_up_after_test_does_not(run_py: ModuleType) -> None:
    assert not run_py._installed("core") and not run_py._installed("test")
    run_py._stamp("core").write_text(run_py._install_hash())
    assert run_py._installed("core")
    assert not run_py._installed("test")  # `test` after `up` adds the extras
    run_py._stamp("core").unlink()
    run_py._stamp("test").write_text(run_py._install_hash())
    assert run_py._installed("core") and run_py._installed("test")


def test_a_changed_pyproject_installs_again(run_py: ModuleType) -> None:
    run_py._stamp("test").write_text("hash of an older pyproject.toml")
    assert not run_py._installed("core") and not run_py._installed("test")


def test_the_test_command_checks_lint_and_format(run_py: ModuleType) -> None:
    checks = run_py.static_checks()
    tools = [(Path(command[0]).name, command[1:3]) for _, command in checks]
    # ruff lint and format over the code, then mypy with pyproject's settings (no arguments)
    assert tools == [("ruff", ["check", "src"]), ("ruff", ["format", "--check"]), ("mypy", [])]
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True and mypy["files"] == ["src/tradestore"]
