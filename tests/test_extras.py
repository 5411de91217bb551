"""Optional extras: `up` needs none of them, and a feature whose extra is missing says which
extra to install and how."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tradestore.db.errors import TradestoreError
from tradestore.extras import EXTRAS, MissingExtra, requires_extra

SRC = Path(__file__).resolve().parents[1] / "src"

# What `tradestore up` imports: the CLI, the API app and the services it starts.
UP_MODULES = (
    "tradestore.cli.main",
    "tradestore.api.app",
    "tradestore.api.server",
    "tradestore.ops.up",
    "tradestore.ops.scheduler",
    "tradestore.notify.worker",
    "tradestore.cache.invalidation",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def _missing(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `import m` fail as if m were not installed (None in sys.modules halts it)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _reimport(monkeypatch: pytest.MonkeyPatch, module: str) -> object:
    monkeypatch.delitem(sys.modules, module, raising=False)
    return importlib.import_module(module)


def test_up_imports_no_backtest_or_report_library() -> None:
    done = _python(
        f"""
        import sys
        for m in {UP_MODULES!r}:
            __import__(m)
        print(sorted(m for m in ("numba", "dask", "distributed", "matplotlib", "plotly")
                     if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_up_imports_without_any_extra_installed() -> None:
    blocked = sorted(m for modules in EXTRAS.values() for m in modules)
    done = _python(
        f"""
        import sys

        class NotInstalled:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {blocked!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, NotInstalled())
        for m in {UP_MODULES!r} + ("tradestore.strategy.runner",):
            __import__(m)
        print("imported")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_fast_engine_without_numba_names_the_backtest_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _missing(monkeypatch, "numba")
    with pytest.raises(MissingExtra) as caught:
        _reimport(monkeypatch, "tradestore.strategy.fast")
    assert str(caught.value) == (
        "the fast backtest engine needs numba, from the 'backtest' extra, which is not "
        "installed: pip install 'tradestore[backtest]'"
    )
    assert (caught.value.extra, caught.value.module) == ("backtest", "numba")


def test_sweep_without_dask_names_the_backtest_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = _reimport(monkeypatch, "tradestore.strategy.sweep")
    _missing(monkeypatch, "dask", "dask.distributed", "distributed")
    with pytest.raises(MissingExtra, match=r"pip install 'tradestore\[backtest\]'") as caught:
        sweep.open_client()  # type: ignore[attr-defined]
    assert caught.value.module == "dask"


def test_reports_without_matplotlib_name_the_reports_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _missing(monkeypatch, "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg")
    with pytest.raises(MissingExtra) as caught:
        _reimport(monkeypatch, "tradestore.strategy.reports")
    assert "backtest reports needs" in str(caught.value)
    assert "pip install 'tradestore[reports]'" in str(caught.value)


def test_pandas_frames_without_pyarrow_name_the_research_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tradestore.market import query

    _missing(monkeypatch, "pyarrow")
    # Refused before any database work: the target is never reached.
    with pytest.raises(MissingExtra, match=r"pip install 'tradestore\[research\]'") as caught:
        query.candles_pandas("dbname=never_reached", symbol="X")
    assert caught.value.module == "pyarrow"


def test_missing_extra_is_a_tradestore_error_the_cli_reports() -> None:
    # The CLI turns a TradestoreError into one line; code that probes with
    # `except ImportError` still works.
    assert issubclass(MissingExtra, TradestoreError)
    assert issubclass(MissingExtra, ImportError)


def test_a_missing_module_outside_the_extra_is_not_disguised() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, requires_extra("backtest", "x"):
        import tradestore_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert not isinstance(caught.value, MissingExtra)
