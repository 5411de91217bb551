"""Performance metrics of a backtest, with one explicit convention each (docs/strategies.md
explains every definition and why it was chosen).

Return metrics use the bar returns of the equity curve, r_t = E_t / E_{t-1} - 1, marked
at each bar's close, the first bar against the initial capital. They are annualized with
`periods_per_year` of the bar size and market calendar (crypto trades every day: 365 daily
bars, 8,760 hourly, 525,600 minute bars; equities 252 sessions of 6.5 hours). The annual
risk-free rate becomes a per-bar rate (1 + rf) ** (1 / P) - 1.

- total_return    E_T / E_0 - 1
- annual_return   CAGR over the bars: (E_T / E_0) ** (P / N) - 1 (N = number of bars);
                  -1 when the account is wiped out
- annual_volatility  std(r, ddof=1) * sqrt(P)
- sharpe_ratio    mean(r - rf) / std(r - rf, ddof=1) * sqrt(P)
- sortino_ratio   mean(r - rf) * P / downside_deviation
- downside_deviation  sqrt(mean(min(r - rf, 0) ** 2)) * sqrt(P), over all N bars
- max_drawdown    max_t (1 - E_t / max(E_0, E_1..E_t)), a positive fraction
- calmar_ratio    annual_return / max_drawdown

Trade metrics use closed round trips, their PnL in money net of both fills' fees:
win rate = winners / closed trades (a break-even trade is neither a win nor a loss);
profit factor = gross profit / |gross loss| in money (not in % returns as backtesting.py
does); average and largest win and loss in money (losses are negative).

- sqn             System Quality Number (Van Tharp): sqrt(n) * mean(pnl) / std(pnl, ddof=1)
                  over the n closed trades' PnL in money, as backtesting.py computes it
- buy_and_hold_return  last close / first close - 1 of the run's bars (with several
                  symbols, the mean over the symbols: equal weights, bought at the start)
- exposure        share of bars with a position held at the bar's close: from the entry
                  bar up to, not including, the exit bar (backtesting.py's "Exposure Time"
                  also counts the exit bar)

These are the formulas of empyrical-reloaded (given our P and rf instead of its default
252 and 0); tests/strategy/test_metrics.py checks each against it and backtesting.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tradestore.db.errors import ValidationError
from tradestore.market.calendars import SESSION_MINUTES, is_exchange_calendar, sessions_per_year
from tradestore.strategy.model import SimResult

__all__ = [
    "Conventions",
    "Metrics",
    "annual_return",
    "annual_volatility",
    "bar_returns",
    "buy_and_hold_return",
    "compute_metrics",
    "downside_deviation",
    "max_drawdown",
    "monthly_returns",
    "periods_per_year",
    "profit_factor",
    "sharpe_ratio",
    "sortino_ratio",
    "sqn",
    "timeframe_minutes",
]

CALENDARS = ("crypto", "equity", "fx")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}


def timeframe_minutes(timeframe: str) -> int:
    tf = timeframe.strip()
    if len(tf) < 2 or tf[-1] not in _UNIT_MINUTES or not tf[:-1].isdigit() or int(tf[:-1]) < 1:
        raise ValidationError(
            "timeframe", "must be a count and a unit m, h, d or w (1m, 5m, 4h, 1d, 1w)", timeframe
        )
    return int(tf[:-1]) * _UNIT_MINUTES[tf[-1]]


def periods_per_year(timeframe: str, calendar: str = "crypto") -> float:
    """Bars per year. crypto: 365 days of 24 h; equity: 252 sessions of 6.5 h (daily bars
    252, weekly 52); fx: 260 weekdays of 24 h (weekly 52)."""
    minutes = timeframe_minutes(timeframe)
    unit = timeframe.strip()[-1]
    count = int(timeframe.strip()[:-1])
    if calendar == "crypto":
        return 365 * 1440 / minutes
    if is_exchange_calendar(calendar):  # XKRX, XNYS: the exchange's own sessions per year
        if unit == "w":
            return 52 / count
        days = sessions_per_year(calendar)
        if unit == "d":
            return days / count
        return days * SESSION_MINUTES.get(calendar, 390) / minutes
    if calendar not in CALENDARS:
        raise ValidationError("calendar", f"must be one of {', '.join(CALENDARS)}", calendar)
    if unit == "w":
        return 52 / count
    days = 252 if calendar == "equity" else 260
    if unit == "d":
        return days / count
    session_minutes = 390 if calendar == "equity" else 1440
    return days * session_minutes / minutes


@dataclass(frozen=True)
class Conventions:
    periods_per_year: float
    risk_free_rate: float = 0.0  # annual, as a fraction
    calendar: str = "crypto"

    @property
    def rf_per_period(self) -> float:
        return (1 + self.risk_free_rate) ** (1 / self.periods_per_year) - 1


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def bar_returns(equity: np.ndarray, initial: float) -> np.ndarray:
    prev = np.empty_like(equity)
    if len(equity):
        prev[0] = initial
        prev[1:] = equity[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return equity / prev - 1.0


def annual_return(total_growth: float, n_bars: int, ppy: float) -> float | None:
    """CAGR from the growth factor E_T / E_0 over n_bars bars."""
    if n_bars < 1:
        return None
    if total_growth <= 0:
        return -1.0
    return _finite(total_growth ** (ppy / n_bars) - 1)


def annual_volatility(returns: np.ndarray, ppy: float) -> float | None:
    if len(returns) < 2:
        return None
    return _finite(np.std(returns, ddof=1) * math.sqrt(ppy))


def sharpe_ratio(returns: np.ndarray, ppy: float, rf: float = 0.0) -> float | None:
    if len(returns) < 2:
        return None
    excess = returns - rf
    std = np.std(excess, ddof=1)
    if not std > 0:
        return None
    return _finite(np.mean(excess) / std * math.sqrt(ppy))


def downside_deviation(returns: np.ndarray, ppy: float, target: float = 0.0) -> float | None:
    if len(returns) < 1:
        return None
    below = np.minimum(returns - target, 0.0)
    return _finite(math.sqrt(np.mean(below**2)) * math.sqrt(ppy))


def sortino_ratio(returns: np.ndarray, ppy: float, target: float = 0.0) -> float | None:
    dd = downside_deviation(returns, ppy, target)
    if not dd:
        return None
    return _finite(np.mean(returns - target) * ppy / dd)


def max_drawdown(equity: np.ndarray, initial: float) -> float:
    if not len(equity):
        return 0.0
    peaks = np.maximum.accumulate(np.maximum(equity, initial))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = 1.0 - equity / peaks
    return float(np.clip(np.nanmax(dd), 0.0, 1.0))


def drawdown_series(equity: np.ndarray, initial: float) -> np.ndarray:
    peaks = np.maximum.accumulate(np.maximum(equity, initial))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - equity / peaks


def profit_factor(pnl: np.ndarray) -> float | None:
    """Gross profit / |gross loss|; None (undefined) without a losing trade."""
    loss = -float(np.sum(pnl[pnl < 0]))
    if not loss > 0:
        return None
    return float(np.sum(pnl[pnl > 0])) / loss


def sqn(pnl: np.ndarray) -> float | None:
    """System Quality Number of the closed trades' PnL: sqrt(n) * mean / std (ddof=1);
    None with fewer than two trades or no spread."""
    if len(pnl) < 2:
        return None
    std = float(np.std(pnl, ddof=1))
    if not std > 0:
        return None
    return _finite(math.sqrt(len(pnl)) * float(np.mean(pnl)) / std)


def buy_and_hold_return(closes: np.ndarray | None) -> float | None:
    """last close / first close - 1 per symbol (its first and last bar in the run), the
    mean over symbols; None without two closes."""
    if closes is None:
        return None
    closes = np.asarray(closes, dtype=np.float64)
    if closes.ndim == 1:
        closes = closes.reshape(-1, 1)
    out = []
    for s in range(closes.shape[1]):
        col = closes[:, s]
        col = col[np.isfinite(col)]
        if len(col) >= 2 and col[0] > 0:
            out.append(col[-1] / col[0] - 1.0)
    return _finite(float(np.mean(out))) if out else None


def monthly_returns(times: np.ndarray, equity: np.ndarray, initial: float) -> dict[str, float]:
    """Return of each calendar month (UTC) from month-end equity, the first month against
    the initial capital: {"2024-01": 0.0123, ...}."""
    if not len(equity):
        return {}
    months = times.astype("datetime64[M]")
    last = np.r_[np.flatnonzero(months[1:] != months[:-1]), len(months) - 1]
    ends = equity[last]
    starts = np.r_[initial, ends[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = ends / starts - 1.0
    return {
        str(months[i]): (float(r) if math.isfinite(r) else None)  # type: ignore[misc]
        for i, r in zip(last, rets, strict=True)
    }


@dataclass(frozen=True)
class Metrics:
    final_value: Any  # Decimal
    total_return: float | None
    annual_return: float | None
    annual_volatility: float | None
    sharpe_ratio: float | None
    sortino_ratio: float | None
    downside_deviation: float | None
    max_drawdown: float
    calmar_ratio: float | None
    win_rate: float | None
    profit_factor: float | None
    total_trades: int
    winning_trades: int
    losing_trades: int
    open_trades: int
    avg_win: float | None
    avg_loss: float | None
    largest_win: float | None
    largest_loss: float | None
    avg_trade_return: float | None
    total_fees: float
    rejected_orders: int
    exposure: float  # share of bars with a position held at the close
    sqn: float | None
    buy_and_hold_return: float | None
    n_bars: int
    conventions: Conventions

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["conventions"] = asdict(self.conventions)
        return data


def compute_metrics(
    result: SimResult, conventions: Conventions, closes: np.ndarray | None = None
) -> Metrics:
    """The metrics of a run; closes (bars x symbols) give the buy-and-hold return."""
    ppy, rf = conventions.periods_per_year, conventions.rf_per_period
    initial = float(result.initial_capital)
    equity = result.equity
    returns = bar_returns(equity, initial)
    growth = float(result.final_value) / initial if len(equity) else 1.0
    mdd = max_drawdown(equity, initial)
    ann = annual_return(growth, len(equity), ppy)

    trades = result.trades
    closed = trades.closed
    pnl = trades.pnl[closed]
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    total = int(closed.sum())
    fills = result.fills
    # Bars with a position: from the entry bar up to (not including) the exit bar.
    delta = np.zeros(len(equity) + 1, dtype=np.int64)
    np.add.at(delta, trades.entry_t, 1)
    np.add.at(delta, np.where(trades.exit_t >= 0, trades.exit_t, len(equity)), -1)
    in_market = np.cumsum(delta[:-1]) > 0
    return Metrics(
        final_value=result.final_value,
        total_return=_finite(growth - 1.0),
        annual_return=ann,
        annual_volatility=annual_volatility(returns, ppy),
        sharpe_ratio=sharpe_ratio(returns, ppy, rf),
        sortino_ratio=sortino_ratio(returns, ppy, rf),
        downside_deviation=downside_deviation(returns, ppy, rf),
        max_drawdown=mdd,
        calmar_ratio=_finite(ann / mdd) if ann is not None and mdd > 0 else None,
        win_rate=len(wins) / total if total else None,
        profit_factor=profit_factor(pnl),
        total_trades=total,
        winning_trades=len(wins),
        losing_trades=len(losses),
        open_trades=int((~closed).sum()),
        avg_win=float(wins.mean()) if len(wins) else None,
        avg_loss=float(losses.mean()) if len(losses) else None,
        largest_win=float(wins.max()) if len(wins) else None,
        largest_loss=float(losses.min()) if len(losses) else None,
        avg_trade_return=float(np.mean(trades.ret[closed])) if total else None,
        total_fees=float(fills.fee.sum()),
        rejected_orders=result.rejection_count,
        exposure=float(in_market.mean()) if len(equity) else 0.0,
        sqn=sqn(pnl),
        buy_and_hold_return=buy_and_hold_return(closes),
        n_bars=len(equity),
        conventions=conventions,
    )
