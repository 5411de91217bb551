"""Each seed's own writes through its views, routed through the SQL API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk, build_desk
from tradestore.db.errors import translate

SEARCH = "{}, trade, account, market, brain, analytics, system, public"


@pytest.fixture
def desk(conn: psycopg.Connection[Any]) -> Desk:
    return build_desk(conn)


def _seed(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(f"SET search_path = {SEARCH.format(schema)}")


def _refused(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> Any:
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        conn.execute(sql, params)
    return translate(err.value)


def test_christmas_orders_insert_places_and_update_cancels(conn, desk) -> None:
    _seed(conn, "christmas")
    row = conn.execute(
        "INSERT INTO orders (user_id, symbol, order_type, side, quantity, price, status) "
        "VALUES (%s, 'BTCUSDT', 'limit', 'buy', 0.01234, 40000.005, 'NEW') RETURNING id, price, quantity, status",
        (desk.user_id,),
    ).fetchone()
    # Normalized by the listing's rules (BUY rounds down, size truncates to the step).
    assert row[1:] == (Decimal("40000.00"), Decimal("0.0123"), "NEW")
    conn.execute("UPDATE orders SET status = 'CANCELED' WHERE id = %s", (row[0],))
    assert (
        conn.execute("SELECT status FROM trade.orders WHERE id = %s", (row[0],)).fetchone()[0]
        == "CANCELED"
    )
    refused = _refused(conn, "DELETE FROM orders WHERE id = %s", (row[0],))
    assert "cancel_order" in refused.rule
    refused = _refused(conn, "UPDATE orders SET quantity = 1 WHERE id = %s", (row[0],))
    assert "apply_fill" in refused.rule


def test_christmas_order_below_min_notional_is_refused(conn, desk) -> None:
    _seed(conn, "christmas")
    refused = _refused(
        conn,
        "INSERT INTO orders (user_id, symbol, order_type, side, quantity, price, status) "
        "VALUES (%s, 'BTCUSDT', 'LIMIT', 'BUY', 0.0001, 100, 'NEW')",
        (desk.user_id,),
    )
    assert refused.field == "notional"


def test_bithumb_orders_insert_maps_buy_sell_and_price(conn, desk) -> None:
    desk.hold(desk.account_id, "ETH", 1)  # a spot SELL is funded from held base
    _seed(conn, "bithumb")
    row = conn.execute(
        "INSERT INTO orders (user_id, symbol, order_type, order_side, quantity, price, remaining_quantity, notes) "
        "VALUES (%s, 'ETHUSDT', 'sell', 'ask', 1, 2000, 1, 'from 003') RETURNING id, order_type, status",
        (desk.user_id,),
    ).fetchone()
    assert row[1:] == ("sell", "pending")
    stored = conn.execute(
        "SELECT side, order_type, exchange_instrument_id, notes FROM trade.orders WHERE id = %s",
        (row[0],),
    ).fetchone()
    assert stored == ("SELL", "LIMIT", desk.eth, "from 003")


def test_bars_through_market_data_and_candles(conn, desk) -> None:
    _seed(conn, "christmas")
    conn.execute(
        "INSERT INTO market_data (symbol, timestamp, open, high, low, close, volume) "
        "VALUES ('BTCUSDT', '2024-01-01 00:05+00', 100, 101, 99, 100.5, 3)"
    )
    refused = _refused(
        conn,
        "INSERT INTO market_data (symbol, timestamp, open, high, low, close, volume) "
        "VALUES ('BTCUSDT', '2024-01-01 00:06+00', 100, 99, 98, 100.5, 3)",
    )
    assert refused.field == "high"
    _seed(conn, "bithumb")
    conn.execute(
        "INSERT INTO candles (symbol, timeframe, timestamp, open_price, high_price, low_price, close_price, volume) "
        "VALUES ('ETHUSDT', '1h', '2024-01-01 01:00+00', 10, 11, 9, 10, 5)"
    )
    got = conn.execute(
        "SELECT exchange_instrument_id, timeframe, close FROM market.candles ORDER BY exchange_instrument_id"
    ).fetchall()
    assert got == [(desk.btc, "1m", Decimal("100.5")), (desk.eth, "1h", Decimal("10"))]
    refused = _refused(
        conn,
        "INSERT INTO candles (symbol, timeframe, timestamp, open_price, high_price, low_price, close_price, "
        "volume, rsi) VALUES ('ETHUSDT', '1h', '2024-01-01 02:00+00', 10, 11, 9, 10, 5, 50)",
    )
    assert "indicators compute" in refused.rule


def test_backtests_of_002_003_and_004(conn, desk) -> None:
    _seed(conn, "christmas")
    refused = _refused(
        conn,
        "INSERT INTO backtest_runs (user_id, strategy_name, start_date, end_date, symbols, status) "
        "VALUES (%s, 'sma', '2024-01-01', '2024-02-01', ARRAY['BTCUSDT'], 'pending')",
        (desk.user_id,),
    )
    assert refused.field == "initial_capital"
    run = conn.execute(
        "INSERT INTO backtest_runs (user_id, strategy_name, start_date, end_date, symbols, status, initial_capital) "
        "VALUES (%s, 'sma', '2024-01-01', '2024-02-01', ARRAY['BTCUSDT'], 'pending', 1000) RETURNING id, status",
        (desk.user_id,),
    ).fetchone()
    assert run[1] == "PENDING"
    conn.execute(
        "INSERT INTO backtest_results (backtest_id, total_trades, win_rate, total_return, max_drawdown) "
        "VALUES (%s, 10, 60, 5.23, 12.5)",
        (run[0],),
    )
    stored = conn.execute(
        "SELECT status, total_trades, win_rate, total_return, max_drawdown FROM analytics.backtest_runs "
        "WHERE id = %s",
        (run[0],),
    ).fetchone()
    assert stored == ("COMPLETED", 10, Decimal("0.6"), Decimal("0.0523"), Decimal("0.125"))
    # 004: a new completed run, ratios in percent.
    row = conn.execute(
        "INSERT INTO analytics.backtest_results (user_id, strategy_name, test_period_start, test_period_end, "
        "initial_capital, final_value, total_return, symbol) "
        "VALUES (%s, 'aegis', '2024-01-01', '2024-06-30', 1000000, 1100000, 10, '005930') "
        "RETURNING backtest_id, total_return, test_period_end",
        (desk.user_id,),
    ).fetchone()
    assert row[1] == Decimal("10.0000")
    assert str(row[2]) == "2024-06-30"


def test_strategies_of_003_write_to_the_table(conn, desk) -> None:
    _seed(conn, "bithumb")
    sid = conn.execute(
        "INSERT INTO strategies (user_id, name, strategy_type, parameters, risk_per_trade) "
        "VALUES (%s, 'scalp', 'scalping', '{\"fast\": 5}', 2.5) RETURNING id",
        (desk.user_id,),
    ).fetchone()[0]
    assert conn.execute(
        "SELECT risk_per_trade FROM analytics.strategies WHERE id = %s", (sid,)
    ).fetchone()[0] == Decimal("2.5")


def test_aegis_stocks_daily_prices_and_orders_by_holding(conn, desk) -> None:
    row = conn.execute(
        "INSERT INTO market.stocks (ticker, name, market_type, sector, market_cap, listing_date) "
        "VALUES ('000660', 'SK hynix', 'KOSDAQ', 'Semis', 100000000000000, '1996-12-26') "
        "RETURNING stock_id, is_active"
    ).fetchone()
    assert row[1] is True
    conn.execute("UPDATE market.stocks SET market_type = 'KOSPI' WHERE stock_id = %s", (row[0],))
    assert conn.execute(
        "SELECT asset_class, quote_currency, market_type FROM market.instruments WHERE id = %s",
        (row[0],),
    ).fetchone() == ("EQUITY", "KRW", "KOSPI")
    conn.execute(
        "INSERT INTO market.daily_prices (stock_id, trade_date, close_price, volume) "
        "VALUES (%s, current_date, 150000, 10)",
        (row[0],),
    )
    # 004 orders by holding: the position gives account and listing.
    pos = conn.execute(
        "INSERT INTO trade.positions (account_id, exchange_instrument_id, quantity, avg_entry_price) "
        "VALUES (%s, %s, 0, 0) RETURNING id",
        (desk.account_id, desk.btc),
    ).fetchone()[0]
    oid = conn.execute(
        "INSERT INTO trade.orders (holding_id, order_type, side, quantity, price, status, created_by) "
        "VALUES (%s, 'LIMIT', 'BUY', 0.01, 40000, 'PENDING', 'aegis') RETURNING order_id",
        (pos,),
    ).fetchone()[0]
    assert conn.execute(
        "SELECT account_id, exchange_instrument_id, status FROM trade.orders WHERE id = %s", (oid,)
    ).fetchone() == (desk.account_id, desk.btc, "NEW")
    refused = _refused(
        conn,
        "INSERT INTO trade.orders (order_type, side, quantity, price) VALUES ('LIMIT', 'BUY', 1, 1)",
    )
    assert refused.field == "account_id" and "submit_order" in refused.rule
    with pytest.raises(psycopg.errors.GeneratedAlways):
        conn.execute(
            "INSERT INTO trade.orders (holding_id, order_type, side, quantity, limit_price) "
            "VALUES (%s, 'LIMIT', 'BUY', 0.01, 40000)",
            (pos,),
        )
