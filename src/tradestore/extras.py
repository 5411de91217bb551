"""Optional extras: the libraries `tradestore up` does not need.

`pip install tradestore` installs what the server, workers, scheduler and CLI use. The rest
is grouped into extras, installed on demand:

- backtest: numba (the fast engine) and dask[distributed] (parameter sweeps);
- reports: matplotlib and plotly (PNG and HTML backtest reports);
- research: pandas and pyarrow (pandas DataFrames of candles and indicators);
- offsite: boto3 (backups copied to an S3-compatible store).

Code that needs one imports it inside `requires_extra`, which turns "No module named
'numba'" into a MissingExtra naming the extra and the command that installs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tradestore.db.errors import TradestoreError

__all__ = ["EXTRAS", "MissingExtra", "requires_extra"]

# Extra -> the top-level modules it provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "backtest": ("numba", "dask", "distributed"),
    "reports": ("matplotlib", "plotly"),
    "research": ("pandas", "pyarrow"),
    "offsite": ("boto3", "botocore"),
}


class MissingExtra(TradestoreError, ImportError):
    """A feature needs a library from an extra that is not installed."""

    def __init__(self, extra: str, module: str, feature: str) -> None:
        self.extra = extra
        self.module = module
        self.feature = feature
        super().__init__(
            f"{feature} needs {module}, from the '{extra}' extra, which is not installed: "
            f"pip install 'tradestore[{extra}]'"
        )


@contextmanager
def requires_extra(extra: str, feature: str) -> Iterator[None]:
    """Run imports of `extra`'s libraries; a missing one raises MissingExtra. A missing
    module the extra does not provide is re-raised as it is (a real bug, not a choice)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}")
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS[extra]:
            raise
        raise MissingExtra(extra, top, feature) from exc
