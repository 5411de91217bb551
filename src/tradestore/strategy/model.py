"""The engine's inputs and outputs: market data aligned on one timeline, the run's
configuration, and the fills, trades and equity curve a run produces. Both engines (the
exact event path and the numba fast path) take and return these types."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from tradestore.db.errors import ValidationError
from tradestore.strategy.rules import RuleArrays

__all__ = [
    "REASONS",
    "REJECTIONS",
    "BacktestConfig",
    "Bars",
    "Deferred",
    "FillTable",
    "Funding",
    "Instrument",
    "MarketData",
    "Rejection",
    "SignalMatrix",
    "SimResult",
    "TradeTable",
    "to_decimal",
]

# Why a fill happened (fills.reason codes).
REASONS = ("signal", "stop_loss", "take_profit")
# Why an order was refused (rejection codes), as (field, rule): the live SQL API refuses
# the same orders with the same field and rule.
REJECTIONS = (
    ("quantity", "must be at least one step_size (not enough free cash)"),
    ("quantity", "must be >= min_qty"),
    ("quantity", "must be <= max_qty"),
    ("notional", "min notional violation"),
    ("notional", "must be <= max_notional"),
    ("max_positions", "too many open positions"),
    ("price", "must be a finite number > 0"),
    # Free cash was there, but the position size (equity x size fraction) buys less than
    # one step: a sizing setting to raise, not a shortage of cash.
    ("quantity", "must be at least one step_size (the position size buys less than one step)"),
)


def to_decimal(value: float) -> Decimal:
    """A float as the shortest decimal that reads back as it (exact for prices with up
    to 15 significant digits, which is what candles hold)."""
    return Decimal(repr(float(value)))


def _positive(field_name: str, value: Decimal | None, *, allow_zero: bool = True) -> None:
    if value is None:
        return
    if not value.is_finite() or value < 0 or (not allow_zero and value == 0):
        rule = "must be a finite number >= 0" if allow_zero else "must be a finite number > 0"
        raise ValidationError(field_name, rule, value)


@dataclass(frozen=True)
class BacktestConfig:
    """How orders are sized and filled. Percentages are percent (2.0 = 2%), as seed 003's
    strategies columns hold them; slippage is a fraction of the price (0.0005 = 5 bp)."""

    initial_capital: Decimal = Decimal(10000)
    slippage: Decimal = Decimal(0)
    stop_loss_pct: Decimal | None = None
    take_profit_pct: Decimal | None = None
    # Percent of equity at risk per entry (with a stop: risk / stop of equity is spent);
    # None: not set, see size_fraction.
    risk_per_trade: Decimal | None = None
    # Spend this percent of equity (fees included) per entry; overrides risk sizing.
    position_size_pct: Decimal | None = None
    # Open positions at most; None: no limit beyond one position per symbol.
    max_positions: int | None = None
    allow_short: bool = False

    def __post_init__(self) -> None:
        _positive("initial_capital", self.initial_capital, allow_zero=False)
        _positive("slippage", self.slippage)
        if self.slippage >= 1:
            raise ValidationError("slippage", "must be a fraction < 1", self.slippage)
        _positive("stop_loss_pct", self.stop_loss_pct)
        if self.stop_loss_pct is not None and self.stop_loss_pct >= 100:
            raise ValidationError("stop_loss_pct", "must be < 100", self.stop_loss_pct)
        _positive("take_profit_pct", self.take_profit_pct)
        _positive("risk_per_trade", self.risk_per_trade)
        if self.risk_per_trade is not None and self.risk_per_trade > 100:
            raise ValidationError("risk_per_trade", "must be <= 100", self.risk_per_trade)
        _positive("position_size_pct", self.position_size_pct, allow_zero=False)
        if self.max_positions is not None and self.max_positions < 0:
            raise ValidationError("max_positions", "must be >= 0", self.max_positions)

    def position_limit(self, n_symbols: int) -> int:
        """Open positions at most: max_positions, else one per symbol."""
        return self.max_positions if self.max_positions is not None else n_symbols

    def size_fraction(self, n_symbols: int = 1) -> Decimal:
        """Share of equity one entry may spend (fees included), before the cash cap:
        position_size_pct if given; else risk_per_trade / stop_loss_pct (lose
        risk_per_trade percent of equity when the stop is hit); else risk_per_trade / 100;
        with neither set, an equal share of equity per position slot (all of it for one
        symbol, as backtesting.py's default size does)."""
        if self.position_size_pct is not None:
            return self.position_size_pct / 100
        if self.risk_per_trade is not None:
            if self.stop_loss_pct:
                return self.risk_per_trade / self.stop_loss_pct
            return self.risk_per_trade / 100
        return Decimal(1) / max(self.position_limit(n_symbols), 1)

    def sizing_text(self, n_symbols: int = 1) -> str:
        """How entries are sized, in words (shown by the CLI and stored with the run)."""
        pct = (self.size_fraction(n_symbols) * 100).normalize()
        if self.position_size_pct is not None:
            return f"{pct:f}% of equity per entry (--size-pct)"
        if self.risk_per_trade is not None:
            how = "risk / stop loss" if self.stop_loss_pct else "risk"
            return f"{pct:f}% of equity per entry ({how})"
        return f"{pct:f}% of equity per entry (default: equity / position slots)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "initial_capital": self.initial_capital,
            "slippage": self.slippage,
            "stop_loss_pct": self.stop_loss_pct,
            "take_profit_pct": self.take_profit_pct,
            "risk_per_trade": self.risk_per_trade,
            "position_size_pct": self.position_size_pct,
            "max_positions": self.max_positions,
            "allow_short": self.allow_short,
        }


@dataclass(frozen=True)
class Instrument:
    """A listing as the engine needs it: its rules (exact and as floats) and contract."""

    listing_id: int
    symbol: str
    exchange: str = ""
    rules: dict[str, Any] = field(default_factory=dict)
    derivative: bool = False
    exchange_kind: str = "CRYPTO"
    # A PERPETUAL listing pays or receives funding (market.settle_funding's rule).
    perpetual: bool = False

    @property
    def arrays(self) -> RuleArrays:
        return RuleArrays.from_rules(self.rules)

    @property
    def multiplier(self) -> Decimal:
        value = self.rules.get("contract_size")
        return Decimal(str(value)) if value is not None else Decimal(1)


@dataclass(frozen=True)
class Funding:
    """One funding time of a perpetual listing: the rate and the mark price that
    market.settle_funding books it with (market.mark_price_at)."""

    time: np.datetime64  # datetime64[ns] UTC
    rate: Decimal
    mark: Decimal


@dataclass(frozen=True)
class Bars:
    """One symbol's bars (no gaps in the arrays: only the bars that exist)."""

    times: np.ndarray  # datetime64[ns] UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


@dataclass
class MarketData:
    """Candles of one or many symbols on one timeline: arrays are (T, S), NaN where a
    symbol has no bar at a time. fee_rates hold the taker fee in force for each bar.
    funding holds, per symbol, the funding times of a perpetual in the run's range (empty
    for every other listing, or without the settlement module)."""

    timeframe: str
    times: np.ndarray  # datetime64[ns], sorted, unique
    instruments: list[Instrument]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    fee_rates: np.ndarray
    funding: list[list[Funding]] = field(default_factory=list)

    @property
    def has_funding(self) -> bool:
        return any(self.funding)

    @property
    def n_bars(self) -> int:
        return len(self.times)

    @property
    def n_symbols(self) -> int:
        return len(self.instruments)

    @property
    def symbols(self) -> list[str]:
        return [i.symbol for i in self.instruments]

    def rows(self, s: int) -> np.ndarray | slice:
        """Timeline rows where symbol s has a bar (a slice when it has them all)."""
        rows = np.flatnonzero(~np.isnan(self.open[:, s]))
        return slice(None) if len(rows) == self.n_bars else rows

    def bars(self, s: int) -> Bars:
        rows = self.rows(s)
        # Contiguous copies for TA-Lib (a column of a (T, S) array is strided when S > 1).
        return Bars(
            self.times[rows],
            *(np.ascontiguousarray(a[rows, s]) for a in (self.open, self.high, self.low,
                                                          self.close, self.volume)),
        )  # fmt: skip

    def time_at(self, t: int) -> dt.datetime:
        return _as_datetime(self.times[t])

    @classmethod
    def single(
        cls,
        times: np.ndarray,
        open_: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray | None = None,
        *,
        instrument: Instrument | None = None,
        fee_rate: float = 0.0,
        timeframe: str = "1m",
    ) -> MarketData:
        """One symbol from 1-D arrays (benchmarks, tests, notebooks)."""
        n = len(close)

        def col(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(n, 1))

        return cls(
            timeframe=timeframe,
            times=np.asarray(times).astype("datetime64[ns]"),
            instruments=[instrument or Instrument(0, "SYMBOL")],
            open=col(open_),
            high=col(high),
            low=col(low),
            close=col(close),
            volume=col(volume if volume is not None else np.zeros(n)),
            fee_rates=np.full((n, 1), fee_rate, dtype=np.float64),
        )


def _as_datetime(value: np.datetime64) -> dt.datetime:
    ns = int(value.astype("datetime64[ns]").astype(np.int64))
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC) + dt.timedelta(
        microseconds=(ns % 1_000_000_000) // 1000
    )


@dataclass
class SignalMatrix:
    """Signals on the timeline, (T, S) booleans. A signal at a bar's close is acted on at
    the symbol's next bar's open."""

    entries: np.ndarray
    exits: np.ndarray
    short_entries: np.ndarray
    short_exits: np.ndarray
    # Per symbol, the strategy's indicator arrays on that symbol's own bars (for logs).
    indicators: list[dict[str, np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0  # time spent computing the signals

    @classmethod
    def empty(cls, n_bars: int, n_symbols: int) -> SignalMatrix:
        def z() -> np.ndarray:
            return np.zeros((n_bars, n_symbols), dtype=np.bool_)

        return cls(z(), z(), z(), z())

    def any(self) -> np.ndarray:
        return self.entries | self.exits | self.short_entries | self.short_exits


@dataclass
class FillTable:
    """Fills in time order. Floats for statistics; `exact` holds the Decimal quantity,
    price, fee and realized PnL of each fill when the exact engine made them."""

    t: np.ndarray  # timeline row
    s: np.ndarray  # symbol index
    side: np.ndarray  # +1 BUY, -1 SELL
    quantity: np.ndarray
    price: np.ndarray
    fee: np.ndarray
    realized: np.ndarray
    reason: np.ndarray  # index into REASONS
    exact: list[tuple[Decimal, Decimal, Decimal, Decimal]] | None = None
    seconds: np.ndarray | None = None  # per fill, measured by the event path

    def __len__(self) -> int:
        return len(self.t)

    def decimal(self, i: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(quantity, price, fee, realized PnL) of fill i."""
        if self.exact is not None:
            return self.exact[i]
        return (
            to_decimal(self.quantity[i]),
            to_decimal(self.price[i]),
            to_decimal(self.fee[i]),
            to_decimal(self.realized[i]),
        )


@dataclass
class TradeTable:
    """Round trips (flat -> position -> flat), built from the fills. pnl is net of both
    fills' fees; return is pnl over the entry notional. An open trade has exit = -1."""

    s: np.ndarray
    direction: np.ndarray  # +1 long, -1 short
    entry_t: np.ndarray
    exit_t: np.ndarray
    quantity: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    pnl: np.ndarray
    fees: np.ndarray
    ret: np.ndarray
    exit_reason: np.ndarray
    entry_fill: np.ndarray
    exit_fill: np.ndarray

    def __len__(self) -> int:
        return len(self.s)

    @property
    def closed(self) -> np.ndarray:
        return self.exit_t >= 0


@dataclass(frozen=True)
class Rejection:
    t: int
    s: int
    side: int
    quantity: float
    price: float
    code: int  # index into REJECTIONS
    seconds: float = 0.0

    @property
    def field(self) -> str:
        return REJECTIONS[self.code][0]

    @property
    def rule(self) -> str:
        return REJECTIONS[self.code][1]


class Deferred:
    """A list built on first use (the fast path's refusals and signal events: turning
    thousands of array entries into Python objects would cost more than the simulation,
    and most runs, sweeps above all, never look at them)."""

    def __init__(self, count: int, build: Callable[[], list[Any]]) -> None:
        self.count = count
        self.build = build


@dataclass
class SimResult:
    """What a run produced. `rejections` and `signal_events` may be given as Deferred."""

    engine: str
    times: np.ndarray
    equity: np.ndarray  # marked at each bar's close
    fills: FillTable
    trades: TradeTable
    rejections_: list[Rejection] | Deferred
    final_value: Decimal
    initial_capital: Decimal
    seconds: float
    # (t, s, action) of every bar where the strategy signalled, for strategy_executions.
    signal_events_: list[tuple[int, int, str]] | Deferred = field(default_factory=list)
    # Funding of perpetuals booked into cash (event path): the sum and the payment count.
    funding_paid: Decimal = Decimal(0)
    funding_payments: int = 0

    @property
    def rejections(self) -> list[Rejection]:
        if isinstance(self.rejections_, Deferred):
            self.rejections_ = self.rejections_.build()
        return self.rejections_

    @property
    def rejection_count(self) -> int:
        value = self.rejections_
        return value.count if isinstance(value, Deferred) else len(value)

    @property
    def signal_events(self) -> list[tuple[int, int, str]]:
        if isinstance(self.signal_events_, Deferred):
            self.signal_events_ = self.signal_events_.build()
        return self.signal_events_
