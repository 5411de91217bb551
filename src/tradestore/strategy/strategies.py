"""The strategy interface and the built-in strategies.

A strategy turns one symbol's candles and its indicators (TA-Lib) into signals: entries,
exits and, for strategies that can be short, short entries and exits, one boolean per bar.
Signals are events (a crossover happens on one bar), evaluated at the bar's close and
acted on at the next bar's open, so a strategy never trades on a price it could not have
seen. Both engines run the same signals.

A strategy that needs its own position or cash to decide can override `on_bar`; it then
runs on the event path only.

Add a strategy by subclassing `Strategy` and decorating it with `@register`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import talib

from tradestore.db.errors import ValidationError
from tradestore.strategy.model import Bars

__all__ = [
    "IMPLEMENTATIONS",
    "BarContext",
    "BollingerBreakout",
    "EmaCrossover",
    "Intent",
    "RsiMeanReversion",
    "Signals",
    "SmaCrossover",
    "Strategy",
    "crossed_above",
    "crossed_below",
    "get_implementation",
    "make_strategy",
    "register",
]

ParamValue = int | float | str | bool
Intent = Literal["long", "short", "close"]


@dataclass
class Signals:
    entries: np.ndarray
    exits: np.ndarray
    short_entries: np.ndarray | None = None
    short_exits: np.ndarray | None = None
    indicators: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class BarContext:
    """What an event-path strategy sees at a bar's close."""

    t: int  # timeline row
    symbol_index: int
    symbol: str
    bar_index: int  # index into `bars` (the symbol's own bars)
    bars: Bars
    position: Any  # Decimal signed quantity
    cash: Any
    equity: Any


def crossed_above(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True on the bar where a goes from <= b to > b (NaN never crosses)."""
    b_arr = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    out = np.zeros(a.shape, dtype=np.bool_)
    with np.errstate(invalid="ignore"):
        out[1:] = (a[1:] > b_arr[1:]) & (a[:-1] <= b_arr[:-1])
    return out


def crossed_below(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    b_arr = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    out = np.zeros(a.shape, dtype=np.bool_)
    with np.errstate(invalid="ignore"):
        out[1:] = (a[1:] < b_arr[1:]) & (a[:-1] >= b_arr[:-1])
    return out


class Strategy(ABC):
    """Base class. `defaults` names every parameter and its default; a parameter's type is
    its default's type (values given as text, e.g. from the CLI, are converted)."""

    name: ClassVar[str]
    description: ClassVar[str]
    defaults: ClassVar[dict[str, ParamValue]]
    # Which registry strategy_type the strategy suits best (seed 003 types).
    strategy_type: ClassVar[str] = "swing_trading"

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, ParamValue] = {
            **self.defaults,
            **coerce_params(self, params),
        }
        self.validate()

    def validate(self) -> None:  # noqa: B027 - optional hook, most strategies override it
        """Check parameter values; raise ValidationError('parameters.<name>', rule, value)."""

    @property
    def event_only(self) -> bool:
        return type(self).on_bar is not Strategy.on_bar

    @abstractmethod
    def signals(self, bars: Bars) -> Signals:
        """Signals for one symbol's bars."""

    def on_bar(self, ctx: BarContext) -> Intent | None:  # pragma: no cover - default
        """Event-path hook; strategies that override it decide bar by bar."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


IMPLEMENTATIONS: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    IMPLEMENTATIONS[cls.name] = cls
    return cls


def get_implementation(name: str) -> type[Strategy]:
    try:
        return IMPLEMENTATIONS[name]
    except KeyError:
        raise ValidationError(
            "implementation",
            f"must be one of {', '.join(sorted(IMPLEMENTATIONS))}",
            name,
        ) from None


def make_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    return get_implementation(name)(**dict(params or {}))


def _convert(kind: type, name: str, value: Any) -> ParamValue:
    field_name = f"parameters.{name}"
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValidationError(field_name, "must be true or false", value)
    if kind is int:
        if isinstance(value, bool):
            raise ValidationError(field_name, "must be an integer", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValidationError(field_name, "must be an integer", value) from None
    if kind is float:
        if isinstance(value, bool):
            raise ValidationError(field_name, "must be a number", value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValidationError(field_name, "must be a number", value) from None
        if not np.isfinite(number):
            raise ValidationError(field_name, "must be a finite number", value)
        return number
    return str(value)


def coerce_params(strategy: Strategy | type[Strategy], params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters converted to the types of the strategy's defaults; unknown names refused."""
    defaults = strategy.defaults
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ValidationError(f"parameters.{key}", f"unknown parameter (known: {known})", value)
        out[key] = _convert(type(defaults[key]), key, value)
    return out


def _require(cond: bool, name: str, rule: str, value: Any) -> None:
    if not cond:
        raise ValidationError(f"parameters.{name}", rule, value)


def _period(params: Mapping[str, ParamValue], name: str) -> None:
    value = params[name]
    _require(isinstance(value, int) and 2 <= value <= 100_000, name, "must be 2..100000", value)


class _Crossover(Strategy):
    """Long when the fast average crosses above the slow one, out (or short) when it
    crosses below."""

    defaults: ClassVar[dict[str, ParamValue]] = {"fast": 10, "slow": 30}
    average: ClassVar[Callable[..., np.ndarray]]

    def validate(self) -> None:
        _period(self.params, "fast")
        _period(self.params, "slow")
        _require(
            self.params["fast"] < self.params["slow"],
            "fast",
            f"must be < slow ({self.params['slow']})",
            self.params["fast"],
        )

    def signals(self, bars: Bars) -> Signals:
        fast = type(self).average(bars.close, timeperiod=int(self.params["fast"]))
        slow = type(self).average(bars.close, timeperiod=int(self.params["slow"]))
        up, down = crossed_above(fast, slow), crossed_below(fast, slow)
        return Signals(up, down, down, up, {"fast_ma": fast, "slow_ma": slow})


@register
class SmaCrossover(_Crossover):
    name = "sma_crossover"
    description = "Simple moving averages: long on a golden cross, out on a death cross."
    average = staticmethod(talib.SMA)


@register
class EmaCrossover(_Crossover):
    name = "ema_crossover"
    description = "Exponential moving averages: long on a golden cross, out on a death cross."
    average = staticmethod(talib.EMA)


@register
class RsiMeanReversion(Strategy):
    """Buy when RSI falls through `lower` (oversold), sell when it rises through `upper`
    (overbought); short the other way round when shorts are allowed."""

    name = "rsi_mean_reversion"
    description = "RSI mean reversion: buy oversold, sell overbought."
    defaults: ClassVar[dict[str, ParamValue]] = {"period": 14, "lower": 30.0, "upper": 70.0}

    def validate(self) -> None:
        _period(self.params, "period")
        lower, upper = float(self.params["lower"]), float(self.params["upper"])
        _require(0 < lower < 100, "lower", "must be between 0 and 100", lower)
        _require(0 < upper < 100, "upper", "must be between 0 and 100", upper)
        _require(lower < upper, "lower", f"must be < upper ({upper})", lower)

    def signals(self, bars: Bars) -> Signals:
        rsi = talib.RSI(bars.close, timeperiod=int(self.params["period"]))
        lower, upper = float(self.params["lower"]), float(self.params["upper"])
        oversold, overbought = crossed_below(rsi, lower), crossed_above(rsi, upper)
        return Signals(oversold, overbought, overbought, oversold, {"rsi": rsi})


@register
class BollingerBreakout(Strategy):
    """Long when the close breaks above the upper band, out when it falls back through
    the middle band; short on a break below the lower band, covered at the middle."""

    name = "bollinger_breakout"
    description = "Bollinger band breakout, exit at the middle band."
    strategy_type = "day_trading"
    defaults: ClassVar[dict[str, ParamValue]] = {"period": 20, "std": 2.0}

    def validate(self) -> None:
        _period(self.params, "period")
        std = float(self.params["std"])
        _require(0 < std <= 10, "std", "must be > 0 and <= 10", std)

    def signals(self, bars: Bars) -> Signals:
        std = float(self.params["std"])
        upper, middle, lower = talib.BBANDS(
            bars.close, timeperiod=int(self.params["period"]), nbdevup=std, nbdevdn=std
        )
        close = bars.close
        return Signals(
            crossed_above(close, upper),
            crossed_below(close, middle),
            crossed_below(close, lower),
            crossed_above(close, middle),
            {"bb_upper": upper, "bb_middle": middle, "bb_lower": lower},
        )
