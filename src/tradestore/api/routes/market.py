"""Market data: listings, candles and indicators for any timeframe, latest ticker and bar.

Candles come from the market layer (tradestore.market.query.candles over
market.candles_between): ingested bars when the listing has the timeframe, else its
rollup, with the not-yet-materialized tail aggregated on the fly, so any timeframe
(`<n>m|h|d|w`) is answered up to the newest bar. Indicators are the stored ones
(market.technical_indicators) when the series has them, else computed with TA-Lib over
the same bars (plus a warm-up before the window) for this request.

Daily prices (seed 004 market.daily_prices, one row per instrument and trade date) are
read for the listing's instrument, as stored or split-adjusted through the symbol_events
module's market.daily_prices_split_adjusted view.

The latest ticker and bar are read through Redis (ticker:{symbol} 1s, market:{symbol}:
latest 5s) on the event loop, without a database transaction, and fall back to
PostgreSQL, which puts the key back.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError as PydanticError
from starlette.concurrency import run_in_threadpool

from tradestore.api.context import UserContext, current_user, prefetch
from tradestore.api.schemas import (
    CandleOut,
    CandlesOut,
    DailyPriceOut,
    DailyPricesOut,
    IndicatorsOut,
    LatestBarOut,
    ListingOut,
    TickerOut,
)
from tradestore.cache import keys
from tradestore.cache import market as market_cache
from tradestore.cache.keys import CacheValue, MarketLatest, Ticker
from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import dicts, scalar
from tradestore.market import query
from tradestore.market.indicators import INDICATOR_COLUMNS, compute_indicators, session_ids
from tradestore.market.listings import listing_label
from tradestore.market.timeframes import (
    TIMEFRAME_RULE,
    bucket_start,
    check_served,
    timeframe_delta,
)

__all__ = ["router"]

router = APIRouter(prefix="/market", tags=["market"])

MAX_BARS = 5000
DEFAULT_BARS = 500
# Bars read before the window when indicators are computed on the fly: enough for the
# 200-bar averages and for the recursive ones (EMA, RSI, ATR, MACD) to settle.
WARMUP_BARS = 600
DEFAULT_INDICATORS = ("ma_20", "ema_50", "bollinger_upper", "bollinger_middle", "bollinger_lower")

SymbolParam = Query(
    ...,
    min_length=3,
    max_length=100,
    description="<exchange>:<symbol>: binance:BTCUSDT, BINANCE:BTCUSDT and binance:BTC/USDT "
    "name the same listing",
)
TimeframeParam = Query("1h", min_length=2, max_length=6, description=TIMEFRAME_RULE)
StartParam = Query(None, description="first bucket (ISO 8601 with a zone)")
EndParam = Query(None, description="end of the window, exclusive (ISO 8601 with a zone)")
BarsParam = Query(DEFAULT_BARS, ge=1, le=MAX_BARS, description=f"bars, 1 to {MAX_BARS}")


def _listing(conn: Any, symbol: str) -> int:
    """The listing `symbol` names (market.resolve_listing: the exchange prefix is required
    here, the symbol may be the exchange's or the global one, with or without '/')."""
    row = conn.execute("SELECT market.resolve_listing(NULL, %s)", (symbol,)).fetchone()
    if row is None or row[0] is None:
        raise NotFound("symbol", symbol)
    return int(row[0])


def _canonical(conn: Any, symbol: str) -> str:
    """`exchange:EXCHANGE_SYMBOL` of the listing `symbol` names: the form the cache keys use."""
    return listing_label(conn, _listing(conn, symbol))


def _aware(value: dt.datetime | None, field: str) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValidationError(field, "must carry a time zone (e.g. Z)", value.isoformat())
    return value


def _window(
    conn: Any,
    listing: int,
    timeframe: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of at most `limit` buckets; by default the newest `limit` bars."""
    step = timeframe_delta(timeframe)
    start, end = _aware(start, "start"), _aware(end, "end")
    if start is not None and end is not None:
        if end <= start:
            raise ValidationError("end", "must be after start", end.isoformat())
        if (end - start) / step > MAX_BARS:
            raise ValidationError(
                "start", f"the window may cover at most {MAX_BARS} bars", start.isoformat()
            )
        return start, end
    if start is not None:
        return start, start + limit * step
    if end is None:
        row = conn.execute(
            "SELECT max(last_time + market.timeframe_interval(timeframe)) "
            "FROM market.candle_series WHERE exchange_instrument_id = %s",
            (listing,),
        ).fetchone()
        newest = row[0] if row and row[0] else dt.datetime.now(dt.UTC)
        end = bucket_start(timeframe, newest - dt.timedelta(microseconds=1)) + step
    return end - limit * step, end


@router.get("/listings", summary="Listings (exchange:symbol) with market data")
def listings(
    q: str | None = Query(None, max_length=50, description="part of the symbol"),
    limit: int = Query(100, ge=1, le=500),
    ctx: UserContext = Depends(current_user),
) -> list[ListingOut]:
    with ctx.db() as conn:
        rows = dicts(
            conn,
            """SELECT ei.id, x.code || ':' || ei.exchange_symbol AS symbol, x.code AS exchange,
                      ei.exchange_symbol, i.symbol AS instrument, i.base_currency, i.quote_currency,
                      (ei.trading_rules ->> 'tick_size')::numeric AS tick_size,
                      (ei.trading_rules ->> 'step_size')::numeric AS step_size
                 FROM market.exchange_instruments ei
                 JOIN market.exchanges x ON x.id = ei.exchange_id
                 JOIN market.instruments i ON i.id = ei.instrument_id
                WHERE %(q)s::text IS NULL
                   OR strpos(upper(x.code || ':' || ei.exchange_symbol), upper(%(q)s)) > 0
                ORDER BY EXISTS (SELECT 1 FROM market.candle_series s
                                  WHERE s.exchange_instrument_id = ei.id) DESC, x.code,
                         ei.exchange_symbol
                LIMIT %(limit)s""",
            {"q": q, "limit": limit},
        )
    return [ListingOut.model_validate(r) for r in rows]


@router.get("/candles", summary="Bars of any timeframe (aggregated in real time)",
            responses={404: {}, 422: {}})  # fmt: skip
def candles(
    symbol: str = SymbolParam,
    timeframe: str = TimeframeParam,
    start: dt.datetime | None = StartParam,
    end: dt.datetime | None = EndParam,
    limit: int = BarsParam,
    ctx: UserContext = Depends(current_user),
) -> CandlesOut:
    timeframe_delta(timeframe)
    with ctx.db() as conn:
        listing = _listing(conn, symbol)
        check_served(conn, listing, timeframe)
        lo, hi = _window(conn, listing, timeframe, start, end, limit)
        frame = query.candles(conn, timeframe=timeframe, listing_id=listing, start=lo, end=hi)
    rows = frame.tail(limit).to_dicts()
    return CandlesOut(
        symbol=symbol, timeframe=timeframe, candles=[CandleOut.model_validate(r) for r in rows]
    )


_DAILY_SPLIT_VIEW = "market.daily_prices_split_adjusted"
# One query for both sources: the view has the table's column names plus split_factor.
_DAILY = """
SELECT trade_date, open_price AS open, high_price AS high, low_price AS low,
       close_price AS close, volume, amount, changes, {factor} AS split_factor
  FROM {source}
 WHERE stock_id = %(stock)s
   AND (%(start)s::date IS NULL OR trade_date >= %(start)s::date)
   AND (%(end)s::date IS NULL OR trade_date < %(end)s::date)
 ORDER BY trade_date {order}
 LIMIT %(limit)s
"""


@router.get("/daily-prices", summary="Daily prices (seed 004), as stored or split-adjusted",
            responses={404: {}, 422: {}})  # fmt: skip
def daily_prices(
    symbol: str = SymbolParam,
    start: dt.date | None = Query(None, description="first trade date (YYYY-MM-DD)"),
    end: dt.date | None = Query(None, description="end of the window, exclusive (YYYY-MM-DD)"),
    limit: int = BarsParam,
    adjusted: bool = Query(
        False, description="split-adjusted prices (needs the symbol_events module)"
    ),
    ctx: UserContext = Depends(current_user),
) -> DailyPricesOut:
    if start is not None and end is not None and end <= start:
        raise ValidationError("end", "must be after start", end.isoformat())
    with ctx.db() as conn:
        stock = scalar(
            conn,
            "SELECT instrument_id FROM market.exchange_instruments WHERE id = %s",
            (_listing(conn, symbol),),
        )
        if adjusted and scalar(conn, "SELECT to_regclass(%s)", (_DAILY_SPLIT_VIEW,)) is None:
            raise ValidationError(
                "adjusted", "needs the symbol_events module (split-adjusted prices)", "true"
            )
        sql = _DAILY.format(
            factor="split_factor" if adjusted else "NULL::numeric",
            source=_DAILY_SPLIT_VIEW if adjusted else "market.daily_prices",
            # Only a start: the first `limit` days from it; else the newest before `end`.
            order="ASC" if start is not None and end is None else "DESC",
        )
        rows = dicts(conn, sql, {"stock": stock, "start": start, "end": end, "limit": limit})
    rows.sort(key=lambda r: r["trade_date"])
    return DailyPricesOut(
        symbol=symbol, adjusted=adjusted, prices=[DailyPriceOut.model_validate(r) for r in rows]
    )


def _names(names: str | None) -> list[str]:
    if not names:
        return list(DEFAULT_INDICATORS)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in INDICATOR_COLUMNS]
    if unknown or not chosen or len(chosen) > len(INDICATOR_COLUMNS):
        raise ValidationError(
            "names", f"must be a comma-separated subset of {', '.join(INDICATOR_COLUMNS)}", names
        )
    return list(dict.fromkeys(chosen))


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _computed(
    conn: Any, listing: int, timeframe: str, lo: dt.datetime, hi: dt.datetime, names: list[str]
) -> list[dict[str, Any]]:
    step = timeframe_delta(timeframe)
    bars = query.candles(
        conn,
        timeframe=timeframe,
        listing_id=listing,
        start=lo - WARMUP_BARS * step,
        end=hi,
        numeric="float",
    )
    if bars.is_empty():
        return []
    times = bars["time"].to_numpy()
    values = compute_indicators(
        bars["high"].to_numpy(),
        bars["low"].to_numpy(),
        bars["close"].to_numpy(),
        bars["volume"].to_numpy(),
        session_ids(times.astype("datetime64[us]").astype(np.int64)),
    )
    keep = np.nonzero(times >= np.datetime64(lo.astimezone(dt.UTC).replace(tzinfo=None)))[0]
    stamps = bars["time"].to_list()
    return [{"time": stamps[i], **{n: _number(values[n][i]) for n in names}} for i in keep.tolist()]


@router.get("/indicators", summary="Indicators of any timeframe (stored, else computed)",
            responses={404: {}, 422: {}})  # fmt: skip
def indicators(
    symbol: str = SymbolParam,
    timeframe: str = TimeframeParam,
    names: str | None = Query(
        None, max_length=600, description="comma-separated, default " + ",".join(DEFAULT_INDICATORS)
    ),
    start: dt.datetime | None = StartParam,
    end: dt.datetime | None = EndParam,
    limit: int = BarsParam,
    ctx: UserContext = Depends(current_user),
) -> IndicatorsOut:
    timeframe_delta(timeframe)
    chosen = _names(names)
    with ctx.db() as conn:
        listing = _listing(conn, symbol)
        check_served(conn, listing, timeframe)
        lo, hi = _window(conn, listing, timeframe, start, end, limit)
        stored = query.indicators(conn, timeframe=timeframe, listing_id=listing, start=lo, end=hi)
        if not stored.is_empty():
            source = "stored"
            rows = [
                {"time": r["time"], **{n: _number(r[n]) for n in chosen}}
                for r in stored.select(["time", *chosen]).tail(limit).to_dicts()
            ]
        else:
            source = "computed"
            rows = _computed(conn, listing, timeframe, lo, hi, chosen)[-limit:]
    return IndicatorsOut(symbol=symbol, timeframe=timeframe, source=source, names=chosen, rows=rows)


JSON = "application/json"


async def _market_read(
    ctx: UserContext,
    symbol: str,
    key: Callable[[str], str],
    model: type[CacheValue],
    out: type[TickerOut] | type[LatestBarOut],
    lookup: Callable[..., Any],
    what: str,
) -> Response:
    """A market key read on the event loop, without a database transaction: market data
    is readable by every user, and a key exists only under its listing's canonical
    spelling (exchange:EXCHANGE_SYMBOL), which market.resolve_listing prefers over every
    other reading of the same text. Any other spelling, a miss or Redis down: the
    listing is resolved and read through in PostgreSQL, in a worker thread."""
    given = keys.market_symbol(*keys.parse_market_symbol(symbol))
    raw = await ctx.get(key(given))  # read by the request's prelude (prefetch)
    if raw is not None:
        try:
            value = model.model_validate_json(raw)
        except PydanticError:
            value = None  # unreadable: the read-through below drops and rebuilds it
        if value is not None:
            ctx.cache.record(True)
            return Response(out(**value.model_dump(), cached=True).model_dump_json(), 200,
                            media_type=JSON)  # fmt: skip

    def read() -> str:
        with ctx.db() as conn:
            found, cached = lookup(ctx.cache, conn, _canonical(conn, symbol))
        if found is None:
            raise NotFound(what, symbol)
        return out(**found.model_dump(), cached=cached).model_dump_json()

    return Response(await run_in_threadpool(read), 200, media_type=JSON)


def _given_key(key: Callable[[str], str]) -> Callable[[Request], str | None]:
    """The key of the ?symbol= given, for `prefetch` (None without one)."""

    def of(request: Request) -> str | None:
        symbol = request.query_params.get("symbol")
        return (
            None if symbol is None else key(keys.market_symbol(*keys.parse_market_symbol(symbol)))
        )

    return of


@router.get("/ticker", summary="Latest ticker (Redis ticker:{symbol}, else PostgreSQL)",
            response_model=TickerOut, responses={404: {}})  # fmt: skip
@prefetch(_given_key(keys.ticker_key))
async def ticker(symbol: str = SymbolParam, ctx: UserContext = Depends(current_user)) -> Response:
    return await _market_read(
        ctx, symbol, keys.ticker_key, Ticker, TickerOut, market_cache.ticker_lookup, "ticker"
    )


@router.get("/latest", summary="Newest bar (Redis market:{symbol}:latest, else PostgreSQL)",
            response_model=LatestBarOut, responses={404: {}})  # fmt: skip
@prefetch(_given_key(keys.market_latest_key))
async def latest(symbol: str = SymbolParam, ctx: UserContext = Depends(current_user)) -> Response:
    return await _market_read(
        ctx, symbol, keys.market_latest_key, MarketLatest, LatestBarOut,
        market_cache.latest_lookup, "bar",
    )  # fmt: skip
