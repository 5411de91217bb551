"""Equity and drawdown reports of a backtest run: a PNG (matplotlib's Agg renderer) and an
interactive HTML page (plotly), under TRADESTORE_HOME/reports/backtests/.

The HTML works offline: plotly.js is vendored once as plotly.min.js beside the pages
(plotly's include_plotlyjs="directory"), never loaded from a CDN. `run_report` returns the
paths for a run id (making the files from the stored equity curve if they are missing),
and `standalone_html` a single page with plotly.js inline, for the dashboard to serve.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
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

__all__ = [
    "Marks",
    "RunReport",
    "reports_dir",
    "run_report",
    "standalone_html",
    "summary_lines",
    "write_run_report",
]


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


@dataclass(frozen=True)
class Marks:
    """Trade markers (entry and exit times, +1 long / -1 short) and the metrics box."""

    entries: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    exits: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    directions: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int8))
    summary: tuple[str, ...] = ()


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.2f}%"


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def summary_lines(metrics: dict[str, Any]) -> tuple[str, ...]:
    """The metrics box: return, buy & hold, drawdown, Sharpe, SQN, win rate, trades, exposure."""
    return (
        f"Return {_pct(metrics.get('total_return'))}",
        f"Buy & Hold {_pct(metrics.get('buy_and_hold_return'))}",
        f"Max DD {_pct(metrics.get('max_drawdown'))}",
        f"Sharpe {_num(metrics.get('sharpe_ratio'))}",
        f"SQN {_num(metrics.get('sqn'))}",
        f"Win rate {_pct(metrics.get('win_rate'))}",
        f"Trades {metrics.get('total_trades', '-')}",
        f"Exposure {_pct(metrics.get('exposure'))}",
    )


def _at(times: np.ndarray, equity: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Equity at (or just before) each time, for placing a marker on the curve."""
    if not len(times) or not len(when):
        return np.array([], dtype=np.float64)
    idx = np.clip(np.searchsorted(times, when, side="right") - 1, 0, len(times) - 1)
    return equity[idx]


def _figure(
    times: np.ndarray, equity: np.ndarray, initial: float, title: str, marks: Marks | None = None
) -> go.Figure:
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
    marks = marks or Marks()
    for when, name, symbol, color in ((marks.entries, "entry", "triangle-up", "green"),
                                      (marks.exits, "exit", "triangle-down", "red")):  # fmt: skip
        if len(when):
            fig.add_trace(
                go.Scatter(
                    x=np.asarray(when, dtype="datetime64[ms]").astype(object),
                    y=_at(times, equity, np.asarray(when, dtype="datetime64[ns]")),
                    name=name, mode="markers",
                    marker={"symbol": symbol, "color": color, "size": 7},
                ),
                row=1, col=1,
            )  # fmt: skip
    if marks.summary:
        fig.add_annotation(
            text="<br>".join(marks.summary), xref="paper", yref="paper", x=0.01, y=0.99,
            xanchor="left", yanchor="top", showarrow=False, align="left",
            bgcolor="rgba(255,255,255,0.8)", bordercolor="grey",
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
    marks: Marks | None = None,
) -> RunReport:
    """Write the PNG and the HTML of a run and return their paths: the equity curve with
    the trades' entries (green, up) and exits (red, down), the metrics box, the drawdown."""
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
    marks = marks or Marks()
    for when, marker, color in ((marks.entries, "^", "tab:green"), (marks.exits, "v", "tab:red")):
        when = np.asarray(when, dtype="datetime64[ns]")
        if len(when):
            ax_eq.scatter(when.astype("datetime64[ms]"), _at(times, equity, when),
                          marker=marker, color=color, s=18, zorder=3)  # fmt: skip
    if marks.summary:
        ax_eq.text(0.01, 0.97, "\n".join(marks.summary), transform=ax_eq.transAxes,
                   va="top", ha="left", fontsize=8, family="monospace",
                   bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})  # fmt: skip
    drawdown = -drawdown_series(equity, initial_capital) * 100
    ax_dd.fill_between(x, drawdown, 0, color="tab:red", alpha=0.4, linewidth=0)
    ax_dd.set_ylabel("drawdown %")
    fig.tight_layout()
    fig.savefig(report.png, dpi=110)

    _figure(times, equity, initial_capital, title, marks).write_html(
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


def _stored_marks(row: dict[str, Any]) -> Marks:
    def stamp(text: str) -> np.datetime64:
        return np.datetime64(
            dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None), "ns"
        )

    history = row.get("trade_history") or []
    metrics = {**((row.get("results_data") or {}).get("metrics") or {}), **row}
    return Marks(
        entries=np.array([stamp(t["entry_time"]) for t in history], dtype="datetime64[ns]"),
        exits=np.array(
            [stamp(t["exit_time"]) for t in history if t.get("exit_time")], dtype="datetime64[ns]"
        ),
        directions=np.array([1 if t["direction"] == "LONG" else -1 for t in history], np.int8),
        summary=summary_lines(metrics),
    )


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
            directory=directory, marks=_stored_marks(row),
        )  # fmt: skip
    return report


def standalone_html(conn: psycopg.Connection[Any], run_id: int) -> str:
    """One self-contained HTML page (plotly.js inline) of a run's stored equity curve."""
    row = get_run(conn, run_id)
    times, equity = _stored_curve(row)
    fig = _figure(times, equity, float(row["initial_capital"]), _title(row), _stored_marks(row))
    return fig.to_html(include_plotlyjs=True, full_html=True)
