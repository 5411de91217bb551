"""Equity and drawdown reports of a backtest run: a PNG (matplotlib's Agg renderer) and an
interactive HTML page (plotly), under TRADESTORE_HOME/reports/backtests/.

The HTML works offline: plotly.js is vendored once as plotly.min.js beside the pages
(plotly's include_plotlyjs="directory"), never loaded from a CDN. `run_report` returns the
paths for a run id (making the files from the stored equity curve if they are missing),
and `standalone_html` a single page with plotly.js inline, for the dashboard to serve.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from tradestore.config import get_settings
from tradestore.extras import requires_extra
from tradestore.strategy.metrics import drawdown_series
from tradestore.strategy.store import get_run

with requires_extra("reports", "backtest reports"):
    import plotly.graph_objects as go
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from plotly.subplots import make_subplots

__all__ = ["RunReport", "reports_dir", "run_report", "standalone_html", "write_run_report"]


@dataclass(frozen=True)
class RunReport:
    run_id: int
    png: Path
    html: Path

    def html_text(self) -> str:
        return self.html.read_text(encoding="utf-8")


def reports_dir(home: Path | None = None) -> Path:
    """TRADESTORE_HOME/reports/backtests (made on first use)."""
    base = home if home is not None else get_settings().TRADESTORE_HOME
    path = Path(base) / "reports" / "backtests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(directory: Path, run_id: int) -> RunReport:
    return RunReport(run_id, directory / f"run_{run_id}.png", directory / f"run_{run_id}.html")


def _figure(times: np.ndarray, equity: np.ndarray, initial: float, title: str) -> go.Figure:
    drawdown = -drawdown_series(equity, initial) * 100
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05,
        subplot_titles=("Equity", "Drawdown (%)"),
    )  # fmt: skip
    x = times.astype("datetime64[ms]").astype(object)
    fig.add_trace(go.Scatter(x=x, y=equity, name="equity", line={"width": 1.2}), row=1, col=1)
    fig.add_trace(
        go.Scatter(x=x, y=drawdown, name="drawdown", fill="tozeroy", line={"width": 0.8}),
        row=2, col=1,
    )  # fmt: skip
    fig.update_layout(title=title, showlegend=False, template="plotly_white", height=640)
    return fig


def write_run_report(
    run_id: int,
    times: np.ndarray,
    equity: np.ndarray,
    initial_capital: float,
    *,
    title: str = "",
    directory: Path | None = None,
) -> RunReport:
    """Write the PNG and the HTML of a run and return their paths."""
    report = _paths(directory or reports_dir(), run_id)
    times = np.asarray(times).astype("datetime64[ns]")
    equity = np.asarray(equity, dtype=np.float64)
    title = title or f"backtest run {run_id}"

    # The object API with the Agg canvas: no pyplot state, no display, thread-safe.
    fig = Figure(figsize=(11, 6.5))
    FigureCanvasAgg(fig)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = times.astype("datetime64[ms]")
    ax_eq.plot(x, equity, linewidth=1.0)
    ax_eq.axhline(initial_capital, color="grey", linewidth=0.6, linestyle="--")
    ax_eq.set_title(title)
    ax_eq.set_ylabel("equity")
    drawdown = -drawdown_series(equity, initial_capital) * 100
    ax_dd.fill_between(x, drawdown, 0, color="tab:red", alpha=0.4, linewidth=0)
    ax_dd.set_ylabel("drawdown %")
    fig.tight_layout()
    fig.savefig(report.png, dpi=110)

    _figure(times, equity, initial_capital, title).write_html(
        report.html, include_plotlyjs="directory", full_html=True
    )
    return report


def _stored_curve(row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    points = row.get("equity_curve") or []
    times = np.array(
        [
            dt.datetime.fromisoformat(p["t"].replace("Z", "+00:00")).replace(tzinfo=None)
            for p in points
        ],
        dtype="datetime64[ns]",
    )
    equity = np.array([float(p["equity"]) for p in points], dtype=np.float64)
    return times, equity


def _title(row: dict[str, Any]) -> str:
    symbols = ",".join(row["symbols"])
    return f"#{row['id']} {row['strategy_name']} {symbols} {row['timeframe']}"


def run_report(
    conn: psycopg.Connection[Any],
    run_id: int,
    *,
    home: Path | None = None,
    regenerate: bool = False,
) -> RunReport:
    """The report files of a run; made from the stored equity curve when missing (a run
    whose report was not written at completion, e.g. a sweep's)."""
    directory = reports_dir(home)
    report = _paths(directory, run_id)
    if regenerate or not (report.png.exists() and report.html.exists()):
        row = get_run(conn, run_id)
        times, equity = _stored_curve(row)
        report = write_run_report(
            run_id, times, equity, float(row["initial_capital"]), title=_title(row),
            directory=directory,
        )  # fmt: skip
    return report


def standalone_html(conn: psycopg.Connection[Any], run_id: int) -> str:
    """One self-contained HTML page (plotly.js inline) of a run's stored equity curve."""
    row = get_run(conn, run_id)
    times, equity = _stored_curve(row)
    fig = _figure(times, equity, float(row["initial_capital"]), _title(row))
    return fig.to_html(include_plotlyjs=True, full_html=True)
