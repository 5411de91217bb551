"""The market-data tables as every client sees them (plain SQL, as from psql): bar rules,
the listing check per statement, series bookkeeping, partitions, seed views, and the
TimescaleDB module's refusal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from tests.market.helpers import make_listing
from tradestore.db import migrate
from tradestore.db.errors import ValidationError, translate

INSERT = (
    'INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, low, close, volume, vwap) '
    "VALUES (%s, '1m', date_trunc('minute', now()), %s, %s, %s, %s, %s, %s)"
)


@pytest.mark.parametrize(
    ("o", "h", "lo", "c", "v", "vwap", "constraint"),
    [
        ("10", "9", "8", "9", "1", None, "chk_candles_ohlc"),  # high below open
        ("10", "11", "10.5", "11", "1", None, "chk_candles_ohlc"),  # low above open
        ("10", "11", "0", "10", "1", None, "chk_candles_ohlc"),  # zero price
        ("10", "Infinity", "9", "10", "1", None, "chk_candles_ohlc"),
        ("NaN", "11", "9", "10", "1", None, "chk_candles_ohlc"),
        ("10", "NaN", "9", "10", "1", None, "chk_candles_ohlc"),
        ("10", "11", "9", "-Infinity", "1", None, "chk_candles_ohlc"),
        ("10", "11", "9", "10", "-1", None, "chk_candles_volume"),
        ("10", "11", "9", "10", "NaN", None, "chk_candles_volume"),
        ("10", "11", "9", "10", "1", "12", "chk_candles_vwap"),
    ],
)
def test_bar_rules_hold_for_every_client(
    conn: psycopg.Connection,
    o: str,
    h: str,
    lo: str,
    c: str,
    v: str,
    vwap: str | None,
    constraint: str,
) -> None:
    listing = make_listing(conn)
    with pytest.raises(errors.CheckViolation) as refused:
        conn.execute(INSERT, (listing, o, h, lo, c, v, vwap))
    assert refused.value.diag.constraint_name == constraint


def test_listing_is_checked_per_statement_and_held_by_its_series(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation) as refused:
        conn.execute(INSERT, (424242, "10", "11", "9", "10", "1", None))
    error = translate(refused.value)
    assert isinstance(error, ValidationError)
    assert (error.field, error.rule, error.value) == (
        "exchange_instrument_id",
        "must reference an existing listing",
        "424242",
    )

    listing = make_listing(conn)
    conn.execute(INSERT, (listing, "10", "11", "9", "10", "1", "10.5"))
    series = conn.execute(
        "SELECT timeframe, first_time = last_time FROM market.candle_series WHERE exchange_instrument_id = %s",
        (listing,),
    ).fetchall()
    assert series == [("1m", True)]
    # candle_series holds the listing with a real ON DELETE RESTRICT foreign key ...
    assert (
        conn.execute(
            "SELECT confdeltype FROM pg_constraint WHERE conrelid = 'market.candle_series'::regclass "
            "AND confrelid = 'market.exchange_instruments'::regclass"
        ).fetchone()[0]
        == "r"
    )
    with pytest.raises(errors.RestrictViolation):
        conn.execute("DELETE FROM market.exchange_instruments WHERE id = %s", (listing,))
    # ... and a series cannot go while it has bars.
    with pytest.raises(errors.RestrictViolation, match="still has bars"):
        conn.execute("DELETE FROM market.candle_series")
    assert market_latest(conn, listing) == Decimal("10")
    conn.execute("TRUNCATE market.candles")
    assert conn.execute("SELECT count(*) FROM market.candle_series").fetchone()[0] == 0


def market_latest(conn: psycopg.Connection, listing: int) -> Decimal:
    return conn.execute("SELECT market.latest_price(%s)", (listing,)).fetchone()[0]


def test_latest_price_takes_the_newest_bar_of_any_timeframe(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    now = conn.execute("SELECT date_trunc('hour', now())").fetchone()[0]
    conn.execute(
        'INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, low, close, volume) '
        "VALUES (%s, '1h', %s, 5, 5, 5, 5, 1), (%s, '1m', %s, 7, 7, 7, 7, 1), (%s, '1m', %s, 6, 6, 6, 6, 1)",
        (
            listing,
            now,
            listing,
            now + dt.timedelta(minutes=58),
            listing,
            now + dt.timedelta(minutes=3),
        ),
    )
    # The 1m bar at :58 ends at :59, before the hourly bar ends; the hourly bar is newer.
    assert market_latest(conn, listing) == Decimal("5")


def test_indicator_rows_check_their_listing(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation, match="existing listing"):
        conn.execute(
            'INSERT INTO market.technical_indicators (exchange_instrument_id, timeframe, "time", rsi_14) '
            "VALUES (99, '1m', date_trunc('minute', now()), 50)"
        )


def test_partitions_ahead_and_per_timeframe_rollup_trees(conn: psycopg.Connection) -> None:
    registered = dict(
        conn.execute(
            "SELECT n.nspname || '.' || c.relname, p.retention FROM system.partitioned_tables p "
            "JOIN pg_class c ON c.oid = p.table_name::oid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'market'"
        ).fetchall()
    )
    assert registered["market.tickers"] == dt.timedelta(days=30)
    assert registered["market.order_books"] == dt.timedelta(days=30)
    assert registered["market.trade_prints"] == dt.timedelta(days=30)
    assert {
        "market.candles",
        "market.technical_indicators",
        "market.daily_prices",
        "market.candle_rollups_1h",
        "market.candle_rollups_1d",
    } <= set(registered)
    ahead = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'market.candle_rollups_1h'::regclass"
    ).fetchone()[0]
    assert ahead >= 4
    made = conn.execute(
        "SELECT market.ensure_partitions_for('market.trade_prints', ARRAY['2020-02-03 10:00+00', "
        "'2020-02-03 23:00+00', '2020-02-05 01:00+00']::timestamptz[])"
    ).fetchone()[0]
    assert made == 2  # daily table: two distinct days
    with pytest.raises(errors.CheckViolation, match="between 1900 and 2200"):
        conn.execute(
            "SELECT market.ensure_partitions_for('market.candles', ARRAY['1800-01-01'::timestamptz])"
        )


def test_seed_views_serve_market_data(conn: psycopg.Connection) -> None:
    listing = make_listing(conn, symbol="BTC_KRW", exchange="bithumb")
    conn.execute(INSERT, (listing, "10", "11", "9", "10.5", "2", None))
    market_data = conn.execute(
        "SELECT symbol, open, close, volume FROM christmas.market_data"
    ).fetchall()
    assert market_data == [("BTC_KRW", Decimal("10"), Decimal("10.5"), Decimal("2"))]
    assert conn.execute(
        "SELECT symbol, timeframe, open_price, close_price FROM bithumb.candles WHERE timeframe = '1m'"
    ).fetchall() == [("BTC_KRW", "1m", Decimal("10"), Decimal("10.5"))]
    # The live hourly bucket of that bar is served too.
    assert (
        conn.execute("SELECT count(*) FROM bithumb.candles WHERE timeframe = '1h'").fetchone()[0]
        == 1
    )


def test_timescaledb_module_refuses_clearly(db: str) -> None:
    available = (
        psycopg.connect(db)
        .execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')")
        .fetchone()[0]
    )
    if available:
        pytest.skip("this server offers TimescaleDB")
    with pytest.raises(migrate.ModuleUnavailable, match="timescaledb extension is not available"):
        migrate.enable_modules(db, ["timeseries"])
    assert "timeseries" not in migrate.enabled_modules(db)
