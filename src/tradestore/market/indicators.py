"""Technical indicators (seed 003's list) computed with TA-Lib and stored in
market.technical_indicators (003's wide form; 002's long form is the view
christmas.technical_indicators).

TA-Lib computes every indicator it has: SMA, EMA, RSI, STOCH, MACD, CCI, ATR, BBANDS
(timeperiod=20 passed explicitly: TA-Lib releases before 0.6 default to 5; the 0.8
wrapper installed here defaults to 20), OBV and TYPPRICE. It has no
VWAP and no Keltner channel, so those are built from its primitives:

- vwap: session VWAP, sum(TYPPRICE x volume) / sum(volume) from the first bar of the
  session, reset at each session start (a calendar day in the exchange's timezone, UTC
  for crypto). NaN (stored NULL) until the session has volume.
- keltner: the EMA variant (Raschke): middle = EMA(close, 20), upper/lower = middle
  +/- 2 x ATR(10), as the parameters in the 002 view say.

Incremental computation: only bars after the last computed one (or from the first bar
that changed since, see market.indicator_series.dirty_from) are written, computed over a
warm-up window of earlier bars. TA-Lib's EMA, RSI, ATR and MACD are recursive ("unstable
period"): a value depends on all history, with a weight that decays geometrically. The
warm-up (warmup_bars) is the longest lookback plus the bars it takes for the weight of
everything before the window to fall under 1e-12 (2,963 bars, set by EMA 200), so the
incremental values equal a full recompute to floating-point rounding. OBV is a running
sum: it continues from the stored OBV of the window's first bar.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import psycopg
import talib
from talib import abstract as talib_abstract

from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError, translate
from tradestore.market.binary import copy_in_float_rows, copy_out_fixed
from tradestore.market.timeframes import timeframe_delta

__all__ = [
    "INDICATOR_COLUMNS",
    "IndicatorReport",
    "compute_indicators",
    "session_ids",
    "update_indicators",
    "warmup_bars",
]

INDICATOR_COLUMNS: tuple[str, ...] = (
    "ma_5", "ma_10", "ma_20", "ma_50", "ma_100", "ma_200",
    "ema_8", "ema_13", "ema_21", "ema_50", "ema_200",
    "rsi_14", "stochastic_k", "stochastic_d",
    "macd_line", "macd_signal", "macd_histogram", "cci_20",
    "atr_14", "bollinger_upper", "bollinger_middle", "bollinger_lower",
    "keltner_upper", "keltner_middle", "keltner_lower",
    "volume_ma_20", "obv", "vwap",
)  # fmt: skip

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAN = "'NaN'::float8"
# Rows per staged write: ~6 MB, inside the default temp_buffers (8 MB), so the staging
# table never spills to disk.
_WRITE_CHUNK = 20_000
# Residual weight of the history before the warm-up window in a recursive indicator.
WARMUP_TOLERANCE = 1e-12


def _decay_bars(alpha: float, tolerance: float) -> int:
    """Bars until a weight (1 - alpha)^n falls below tolerance."""
    return math.ceil(math.log(tolerance) / math.log(1.0 - alpha))


def _lookback(name: str, **params: Any) -> int:
    return int(talib_abstract.Function(name, **params).lookback)


def warmup_bars(tolerance: float = WARMUP_TOLERANCE) -> int:
    """Bars of history needed before the first new bar so that incremental values equal
    a full recompute: the longest TA-Lib lookback, plus for the recursive indicators
    (EMA: alpha = 2/(n+1); Wilder's RSI and ATR: alpha = 1/n) the bars it takes for the
    weight of older history to decay under `tolerance`."""

    def ema(n: int) -> int:
        return _decay_bars(2.0 / (n + 1), tolerance)

    def wilder(n: int) -> int:
        return _decay_bars(1.0 / n, tolerance)

    needs = [
        _lookback("SMA", timeperiod=200),
        _lookback("EMA", timeperiod=200) + ema(200),
        _lookback("RSI", timeperiod=14) + wilder(14),
        _lookback("ATR", timeperiod=14) + wilder(14),
        _lookback("MACD", fastperiod=12, slowperiod=26, signalperiod=9) + ema(26) + ema(9),
        _lookback("EMA", timeperiod=20) + ema(20),
        _lookback("ATR", timeperiod=10) + wilder(10),
        _lookback("STOCH", fastk_period=14, slowk_period=3, slowd_period=3),
        _lookback("CCI", timeperiod=20),
        _lookback("BBANDS", timeperiod=20),
    ]
    return max(needs) + 1


def session_ids(times_us: np.ndarray, timezone: str = "UTC") -> np.ndarray:
    """The session (calendar day in `timezone`) of each bar, as days since 1970-01-01."""
    days = (
        pl.Series(times_us)
        .cast(pl.Datetime("us", "UTC"))
        .dt.convert_time_zone(timezone)
        .dt.date()
        .cast(pl.Int32)
    )
    return days.to_numpy()


def compute_indicators(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    sessions: np.ndarray,
    obv_offset: float = 0.0,
) -> dict[str, np.ndarray]:
    """All INDICATOR_COLUMNS for consecutive bars (float64 arrays, NaN where an indicator
    has no value yet). obv_offset is added to TA-Lib's OBV (which starts at the first
    bar's volume) to continue a stored running sum."""
    h, lo, c, v = (np.ascontiguousarray(a, dtype=np.float64) for a in (high, low, close, volume))
    out: dict[str, np.ndarray] = {}
    for n in (5, 10, 20, 50, 100, 200):
        out[f"ma_{n}"] = talib.SMA(c, timeperiod=n)
    for n in (8, 13, 21, 50, 200):
        out[f"ema_{n}"] = talib.EMA(c, timeperiod=n)
    out["rsi_14"] = talib.RSI(c, timeperiod=14)
    out["stochastic_k"], out["stochastic_d"] = talib.STOCH(
        h, lo, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3, slowd_matype=0
    )
    out["macd_line"], out["macd_signal"], out["macd_histogram"] = talib.MACD(
        c, fastperiod=12, slowperiod=26, signalperiod=9
    )
    out["cci_20"] = talib.CCI(h, lo, c, timeperiod=20)
    out["atr_14"] = talib.ATR(h, lo, c, timeperiod=14)
    # Seed 003 means the usual 20 periods, 2 sigma; older TA-Lib defaults to 5, so say it.
    out["bollinger_upper"], out["bollinger_middle"], out["bollinger_lower"] = talib.BBANDS(
        c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0
    )
    middle = talib.EMA(c, timeperiod=20)
    band = 2.0 * talib.ATR(h, lo, c, timeperiod=10)
    out["keltner_middle"], out["keltner_upper"], out["keltner_lower"] = (
        middle,
        middle + band,
        middle - band,
    )
    out["volume_ma_20"] = talib.SMA(v, timeperiod=20)
    out["obv"] = talib.OBV(c, v) + obv_offset
    typical = talib.TYPPRICE(h, lo, c)
    per_session = pl.DataFrame({"s": sessions, "pv": typical * v, "v": v}).select(
        pl.col("pv").cum_sum().over("s"), pl.col("v").cum_sum().over("s")
    )
    cum_pv, cum_v = per_session["pv"].to_numpy(), per_session["v"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["vwap"] = np.where(cum_v > 0, cum_pv / cum_v, np.nan)
    return {name: np.asarray(out[name], dtype=np.float64) for name in INDICATOR_COLUMNS}


@dataclass
class IndicatorReport:
    listing_id: int
    timeframe: str
    bars_read: int
    rows_written: int
    computed_from: Any
    computed_through: Any
    full: bool
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------- database
def _bars_query(source: str) -> str:
    """Bars (time, high, low, close, volume) of the series from %(lo)s on, up to %(hi)s."""
    table = "market.candles" if source == "raw" else "market.candle_rollups"
    return (
        f'SELECT "time", high::float8, low::float8, close::float8, volume::float8 FROM {table} '
        "WHERE exchange_instrument_id = %(listing)s AND timeframe = %(tf)s "
        'AND "time" >= %(lo)s AND "time" < %(hi)s ORDER BY "time"'
    )


def _source(conn: psycopg.Connection[Any], listing_id: int, timeframe: str) -> tuple[str, Any]:
    """('raw' | 'rollup', upper bound of the bars indicators may use)."""
    if conn.execute(
        "SELECT 1 FROM market.candle_series WHERE exchange_instrument_id = %s AND timeframe = %s",
        (listing_id, timeframe),
    ).fetchone():
        return "raw", "infinity"
    is_rollup = conn.execute(
        "SELECT 1 FROM market.rollup_timeframes WHERE timeframe = %s", (timeframe,)
    ).fetchone()
    if is_rollup:
        # Indicators use complete, materialized buckets only.
        conn.execute("SELECT * FROM market.refresh_rollup(%s, %s)", (listing_id, timeframe))
        row = conn.execute(
            "SELECT watermark FROM market.rollup_series WHERE exchange_instrument_id = %s AND timeframe = %s",
            (listing_id, timeframe),
        ).fetchone()
        if row and row[0] is not None:
            return "rollup", row[0]
    raise ValidationError(
        "timeframe", "has no bars for this listing (ingested or materialized)", timeframe
    )


def _warmup_start(
    conn: psycopg.Connection[Any],
    source: str,
    params: Mapping[str, Any],
    first_new: Any,
    warmup: int,
) -> Any:
    """The time of the bar `warmup` bars before first_new (or the series' first bar)."""
    table = "market.candles" if source == "raw" else "market.candle_rollups"
    row = conn.execute(
        f'SELECT "time" FROM {table} WHERE exchange_instrument_id = %(listing)s AND timeframe = %(tf)s '
        f'AND "time" < %(first)s ORDER BY "time" DESC OFFSET %(back)s LIMIT 1',
        {**params, "first": first_new, "back": warmup - 1},
    ).fetchone()
    if row is not None:
        return row[0]
    first = conn.execute(
        f'SELECT min("time") FROM {table} WHERE exchange_instrument_id = %(listing)s AND timeframe = %(tf)s',
        params,
    ).fetchone()
    return first[0] if first else None


def _us(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def _update(
    conn: psycopg.Connection[Any], listing_id: int, timeframe: str, full: bool, warmup: int
) -> IndicatorReport:
    started = time.perf_counter()
    conn.execute(
        "INSERT INTO market.indicator_series (exchange_instrument_id, timeframe) VALUES (%s, %s) "
        "ON CONFLICT DO NOTHING",
        (listing_id, timeframe),
    )
    computed_through, dirty_from = conn.execute(
        "SELECT computed_through, dirty_from FROM market.indicator_series "
        "WHERE exchange_instrument_id = %s AND timeframe = %s FOR UPDATE",
        (listing_id, timeframe),
    ).fetchone()  # type: ignore[misc]
    source, upper = _source(conn, listing_id, timeframe)
    timezone = conn.execute(
        "SELECT x.timezone FROM market.exchange_instruments ei JOIN market.exchanges x ON x.id = ei.exchange_id "
        "WHERE ei.id = %s",
        (listing_id,),
    ).fetchone()[0]  # type: ignore[index]
    params: dict[str, Any] = {"listing": listing_id, "tf": timeframe, "hi": upper}
    table = "market.candles" if source == "raw" else "market.candle_rollups"

    first_new: Any = None
    if not full and computed_through is not None:
        row = conn.execute(
            f'SELECT min("time") FROM {table} WHERE exchange_instrument_id = %(listing)s '
            'AND timeframe = %(tf)s AND "time" < %(hi)s AND ("time" > %(through)s OR "time" >= %(dirty)s)',
            {**params, "through": computed_through, "dirty": dirty_from},
        ).fetchone()
        first_new = row[0] if row else None
        if first_new is None:  # nothing new
            conn.execute(
                "UPDATE market.indicator_series SET dirty_from = NULL WHERE exchange_instrument_id = %s "
                "AND timeframe = %s",
                (listing_id, timeframe),
            )
            return IndicatorReport(
                listing_id,
                timeframe,
                0,
                0,
                None,
                computed_through,
                False,
                time.perf_counter() - started,
            )

    obv_offset = 0.0
    if first_new is None:
        full = True
        lower: Any = "-infinity"
    else:
        lower = _warmup_start(conn, source, params, first_new, warmup)
        # The window also reaches back to the start of first_new's session (VWAP).
        session_start = conn.execute(
            "SELECT (date_trunc('day', %s::timestamptz AT TIME ZONE %s)) AT TIME ZONE %s",
            (first_new, timezone, timezone),
        ).fetchone()[0]  # type: ignore[index]
        lower = min(lower, session_start)
    columns = copy_out_fixed(
        conn, _bars_query(source), ["ts", "f8", "f8", "f8", "f8"], {**params, "lo": lower}
    )
    times, high, low, close, volume = columns
    if not full and len(times):
        # Continue OBV from its stored value at the window's first bar, unless the window
        # reaches the series' first bar (then OBV starts there, as in a full recompute).
        series_first = conn.execute(
            f'SELECT min("time") FROM {table} WHERE exchange_instrument_id = %(listing)s AND timeframe = %(tf)s',
            params,
        ).fetchone()[0]  # type: ignore[index]
        if _us(series_first) < int(times[0]):
            stored = conn.execute(
                "SELECT obv FROM market.technical_indicators WHERE exchange_instrument_id = %s "
                'AND timeframe = %s AND "time" = %s',
                (listing_id, timeframe, _EPOCH + dt.timedelta(microseconds=int(times[0]))),
            ).fetchone()
            if stored is None or stored[0] is None:  # not kept (retention): start over
                return _update(conn, listing_id, timeframe, True, warmup)
            obv_offset = float(stored[0]) - float(volume[0])

    values = compute_indicators(high, low, close, volume, session_ids(times, timezone), obv_offset)
    keep = 0 if full else int(np.searchsorted(times, _us(first_new)))
    out_times = times[keep:]
    out_values = [values[name][keep:] for name in INDICATOR_COLUMNS]

    if full:
        conn.execute(
            "DELETE FROM market.technical_indicators WHERE exchange_instrument_id = %s AND timeframe = %s",
            (listing_id, timeframe),
        )
    else:
        conn.execute(
            "DELETE FROM market.technical_indicators WHERE exchange_instrument_id = %s AND timeframe = %s "
            'AND "time" >= %s',
            (listing_id, timeframe, first_new),
        )
    written = 0
    if len(out_times):
        # The statement trigger keeps each INSERT's rows as a transition table: room for
        # it in memory; chunks small enough for the default temp_buffers.
        conn.execute("SET LOCAL work_mem = '256MB'")
        conn.execute(
            f'CREATE TEMP TABLE indicator_stage ("time" timestamptz, '
            f"{', '.join(f'{c} float8' for c in INDICATOR_COLUMNS)}) ON COMMIT DROP"
        )
        insert = (
            f'INSERT INTO market.technical_indicators (exchange_instrument_id, timeframe, "time", '
            f'{", ".join(INDICATOR_COLUMNS)}) SELECT %s, %s, "time", '
            f"{', '.join(f'nullif({c}, {_NAN})' for c in INDICATOR_COLUMNS)} FROM pg_temp.indicator_stage"
        )
        for start in range(0, len(out_times), _WRITE_CHUNK):
            stop = start + _WRITE_CHUNK
            copy_in_float_rows(
                conn,
                "pg_temp.indicator_stage",
                ['"time"', *INDICATOR_COLUMNS],
                out_times[start:stop],
                [v[start:stop] for v in out_values],
            )
            written += conn.execute(insert, (listing_id, timeframe)).rowcount
            conn.execute("TRUNCATE pg_temp.indicator_stage")
        conn.execute("DROP TABLE pg_temp.indicator_stage")
    through = conn.execute(
        f'SELECT max("time") FROM {table} WHERE exchange_instrument_id = %(listing)s AND timeframe = %(tf)s '
        'AND "time" < %(hi)s',
        params,
    ).fetchone()[0]  # type: ignore[index]
    conn.execute(
        "UPDATE market.indicator_series SET computed_through = %s, dirty_from = NULL, updated_at = now() "
        "WHERE exchange_instrument_id = %s AND timeframe = %s",
        (through, listing_id, timeframe),
    )
    return IndicatorReport(
        listing_id,
        timeframe,
        len(times),
        written,
        None if full else first_new,
        through,
        full,
        time.perf_counter() - started,
    )


def _ensure_partitions(conn: psycopg.Connection[Any], listing_id: int, timeframe: str) -> None:
    """Partitions of market.technical_indicators for every month the series has bars (in
    a transaction of its own: making a partition locks the table). A rollup series is
    refreshed first, so its new buckets have their months too."""
    raw = conn.execute(
        "SELECT 1 FROM market.candle_series WHERE exchange_instrument_id = %s AND timeframe = %s",
        (listing_id, timeframe),
    ).fetchone()
    if (
        not raw
        and conn.execute(
            "SELECT 1 FROM market.rollup_timeframes WHERE timeframe = %s", (timeframe,)
        ).fetchone()
    ):
        conn.execute("SELECT * FROM market.refresh_rollup(%s, %s)", (listing_id, timeframe))
    conn.execute(
        """SELECT market.ensure_partitions_for('market.technical_indicators',
                  ARRAY(SELECT market.series_months(%s, %s, %s)))""",
        (listing_id, timeframe, "raw" if raw else "rollup"),
    )


def update_indicators(
    target: str | psycopg.Connection[Any],
    listing_id: int,
    timeframe: str,
    *,
    full: bool = False,
    warmup: int | None = None,
) -> IndicatorReport:
    """Compute and store the indicators of one series (a listing at a timeframe, ingested
    or a rollup) for the bars not computed yet, or all of them with full=True. One
    transaction. `warmup` overrides warmup_bars() (for tests)."""
    timeframe_delta(timeframe)
    try:
        if isinstance(target, psycopg.Connection):
            with target.transaction():
                _ensure_partitions(target, listing_id, timeframe)
            with target.transaction():
                return _update(target, listing_id, timeframe, full, warmup or warmup_bars())
        with connect(target) as conn:
            with conn.transaction():
                _ensure_partitions(conn, listing_id, timeframe)
            with conn.transaction():
                return _update(conn, listing_id, timeframe, full, warmup or warmup_bars())
    except psycopg.Error as exc:
        raise translate(exc) from exc
