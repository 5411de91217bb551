"""Database-level integrity features of the foundation (seed 001 §4, §5, §8, §9; seed 004 §4).

Each feature is tested with its failure case, through plain SQL: the rules hold for any
client, not only tradestore's Python.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from tradestore.db.errors import ValidationError, translate

KRX_BANDS = (
    '{"price_bands": [{"min_price": 0, "tick_size": 1}, {"min_price": 2000, "tick_size": 5},'
    ' {"min_price": 5000, "tick_size": 10}, {"min_price": 20000, "tick_size": 50},'
    ' {"min_price": 50000, "tick_size": 100}, {"min_price": 200000, "tick_size": 500},'
    ' {"min_price": 500000, "tick_size": 1000}], "step_size": 1, "min_qty": 1}'
)
BTC_RULES = '{"tick_size": "0.01", "step_size": "0.001", "min_qty": "0.001", "max_qty": "100", "min_notional": "10"}'


@pytest.fixture
def world(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("INSERT INTO exchanges (code, name) VALUES ('binance', 'Binance'), ('krx', 'KRX')")
    conn.execute(
        "INSERT INTO instruments (symbol, name, asset_class, base_currency, quote_currency) "
        "VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT'), "
        "('005930', 'Samsung Electronics', 'EQUITY', NULL, NULL)"
    )
    conn.execute(
        "INSERT INTO exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules) "
        "VALUES (1, 1, 'BTCUSDT', %s), (2, 2, '005930', %s)",
        (BTC_RULES, KRX_BANDS),
    )
    conn.execute(
        "INSERT INTO users (username, email, password_hash) VALUES ('a', 'a@example.com', 'h')"
    )
    conn.execute("INSERT INTO accounts (user_id, exchange_id, name) VALUES (1, 1, 'main')")
    # Orders are funded and held to the owner's risk limits.
    conn.execute("UPDATE users SET max_risk_per_trade = 100, max_total_risk = 100")
    conn.execute("SELECT post_ledger_entry(1, 'DEPOSIT', 'USDT', 100000000)")
    conn.execute("SELECT post_ledger_entry(1, 'DEPOSIT', 'BTC', 1000)")
    return conn


def _order(
    conn: psycopg.Connection,
    qty: str,
    price: str | None,
    *,
    listing: int = 1,
    side: str = "BUY",
    key: str | None = None,
    order_type: str = "LIMIT",
) -> tuple[Decimal, Decimal | None]:
    return conn.execute(
        "INSERT INTO orders (account_id, exchange_instrument_id, side, order_type, quantity, price, idempotency_key) "
        "VALUES (1, %s, %s, %s, %s, %s, %s) RETURNING quantity, price",
        (listing, side, order_type, Decimal(qty), Decimal(price) if price else None, key),
    ).fetchone()


# --- seed 001 §4.2 / §9-A: normalization and min notional -----------------------------


def test_orders_are_normalized_on_insert(world: psycopg.Connection) -> None:
    assert _order(world, "0.12345", "30000.129") == (Decimal("0.123"), Decimal("30000.12"))
    # A SELL rounds its limit up: never a worse price than asked.
    assert _order(world, "0.5", "30000.121", side="SELL") == (Decimal("0.5"), Decimal("30000.13"))


def test_orders_are_normalized_on_update(world: psycopg.Connection) -> None:
    _order(world, "0.5", "30000")
    row = world.execute(
        "UPDATE orders SET price = 31000.555, quantity = 0.7777 RETURNING quantity, price"
    ).fetchone()
    assert row == (Decimal("0.777"), Decimal("31000.55"))


def test_price_bands_pick_the_tick_by_price(world: psycopg.Connection) -> None:
    assert _order(world, "3", "4997", listing=2) == (Decimal("3"), Decimal("4995"))
    assert _order(world, "3", "73456", listing=2) == (Decimal("3"), Decimal("73400"))
    # A SELL sells held shares (spot orders are funded).
    world.execute(
        "INSERT INTO trade.positions (account_id, exchange_instrument_id, quantity, avg_entry_price) "
        "VALUES (1, 2, 3, 2000)"
    )
    assert _order(world, "3", "1999.9", listing=2, side="SELL") == (Decimal("3"), Decimal("2000"))


def test_seed_query_9a_reports_normalized_values(world: psycopg.Connection) -> None:
    row = world.execute(
        """
        SELECT
          ei.exchange_symbol,
          normalize_price(ei.trading_rules, %s::numeric)  AS px_norm,
          normalize_size(ei.trading_rules, %s::numeric)   AS qty_norm,
          meets_min_notional(ei.trading_rules, %s, %s)    AS ok_min_notional
        FROM exchange_instruments ei
        WHERE ei.id = %s;
        """,
        (Decimal("123.456"), Decimal("0.0019"), Decimal("123.456"), Decimal("0.0019"), 1),
    ).fetchone()
    assert row == ("BTCUSDT", Decimal("123.46"), Decimal("0.001"), False)
    by_id = world.execute(
        "SELECT normalize_price(1::bigint, 5.555), normalize_size(1::bigint, 1.23456), "
        "meets_min_notional(1::bigint, 100, 0.1)"
    ).fetchone()
    assert by_id == (Decimal("5.56"), Decimal("1.234"), True)


def test_min_notional_is_refused_immediately(world: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation) as refused:
        _order(world, "0.001", "300")
    assert "min notional violation" in str(refused.value)
    assert refused.value.diag.column_name == "notional"
    assert world.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_market_order_notional_is_judged_at_the_latest_price(world: psycopg.Connection) -> None:
    world.execute(
        "INSERT INTO market.candles (exchange_instrument_id, timeframe, time, open, high, low, close, volume) "
        "VALUES (1, '1m', date_trunc('minute', now()), 5, 5, 5, 5, 1)"
    )
    with pytest.raises(errors.CheckViolation, match="min notional"):
        _order(world, "1", None, order_type="MARKET")
    assert _order(world, "3", None, order_type="MARKET") == (Decimal("3"), None)


@pytest.mark.parametrize(
    ("qty", "price", "field"),
    [
        ("NaN", "100", "quantity"),
        ("Infinity", "100", "quantity"),
        ("-1", "100", "quantity"),
        ("0", "100", "quantity"),
        ("1", "NaN", "price"),
        ("1", "-Infinity", "price"),
        ("1", "0", "price"),
        ("0.0001", "30000", "quantity"),
        ("1000", "30000", "quantity"),
    ],
)
def test_bad_quantities_and_prices_name_the_field(
    world: psycopg.Connection, qty: str, price: str, field: str
) -> None:
    with pytest.raises(psycopg.Error) as refused:
        _order(world, qty, price)
    err = translate(refused.value)
    assert isinstance(err, ValidationError)
    assert err.field == field and err.rule and err.value is not None
    assert world.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_unknown_listing_is_named(world: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation) as refused:
        _order(world, "1", "100", listing=999)
    err = translate(refused.value)
    assert (err.field, err.value) == ("exchange_instrument_id", "999")


def test_malformed_trading_rules_are_refused(world: psycopg.Connection) -> None:
    for rules, field in [
        ('{"tick_size": 0}', "trading_rules.tick_size"),
        ('{"tick_size": "abc"}', "trading_rules.tick_size"),
        ('{"lot": 1}', "trading_rules.lot"),
        ('{"min_qty": 5, "max_qty": 1}', "trading_rules.max_qty"),
        ('{"price_bands": [{"min_price": 0}]}', "trading_rules.price_bands"),
    ]:
        with pytest.raises(errors.CheckViolation) as refused:
            world.execute(
                "UPDATE exchange_instruments SET trading_rules = %s WHERE id = 1", (rules,)
            )
        assert refused.value.diag.column_name == field


def test_rule_changes_keep_history_and_old_orders_keep_their_rules(
    world: psycopg.Connection,
) -> None:
    _order(world, "0.5", "30000")
    placed = world.execute("SELECT created_at FROM orders").fetchone()[0]
    world.execute(
        """UPDATE exchange_instruments SET trading_rules = '{"tick_size": "1", "step_size": "1"}' WHERE id = 1"""
    )
    versions = world.execute(
        "SELECT count(*), count(*) FILTER (WHERE effective_to IS NULL) FROM market.trading_rule_versions "
        "WHERE exchange_instrument_id = 1"
    ).fetchone()
    assert versions == (2, 1)
    assert (
        world.execute(
            "SELECT market.trading_rules_at(1, %s) ->> 'step_size'", (placed,)
        ).fetchone()[0]
        == "0.001"
    )
    # The old order is still judged by the step size of its time.
    assert world.execute("UPDATE orders SET quantity = 0.25 RETURNING quantity").fetchone()[
        0
    ] == Decimal("0.25")


# --- seed 001 §4.1 / §9-B: idempotency ------------------------------------------------


def test_idempotency_key_is_unique_while_active(world: psycopg.Connection) -> None:
    _order(world, "0.5", "30000", key="k1")
    with pytest.raises(errors.UniqueViolation, match="ux_orders_idem_active"):
        _order(world, "0.5", "30000", key="k1")
    world.execute("UPDATE orders SET status = 'CANCELED', cancelled_at = now()")
    _order(world, "0.5", "30000", key="k1")  # reusable once the first is no longer active


def test_exchange_order_id_is_unique_while_active(world: psycopg.Connection) -> None:
    insert = (
        "INSERT INTO orders (account_id, exchange_instrument_id, side, order_type, quantity, price, "
        "exchange_order_id) VALUES (1, 1, 'BUY', 'LIMIT', 1, 100, 'X1')"
    )
    world.execute(insert)
    with pytest.raises(errors.UniqueViolation, match="ux_orders_exoid_active"):
        world.execute(insert)


def test_seed_query_9b_pages_active_orders(world: psycopg.Connection) -> None:
    for i in range(3):
        _order(world, "0.5", "30000", key=f"k{i}")
    world.execute(
        "UPDATE orders SET status = 'CANCELED', cancelled_at = now() WHERE idempotency_key = 'k0'"
    )
    rows = world.execute(
        """
        SELECT id, client_order_id, exchange_order_id, status, created_at
        FROM orders
        WHERE account_id = %s
          AND status IN ('NEW','PARTIALLY_FILLED')
        ORDER BY created_at DESC
        LIMIT 100;
        """,
        (1,),
    ).fetchall()
    assert [r[0] for r in rows] == [3, 2]


def test_seed_004_status_names_are_accepted_and_stored_canonically(
    world: psycopg.Connection,
) -> None:
    world.execute(
        "INSERT INTO trade.orders (account_id, exchange_instrument_id, side, order_type, quantity, price, status) "
        "VALUES (1, 1, 'BUY', 'LIMIT', 1, 100, 'PENDING')"
    )
    assert world.execute("SELECT status FROM trade.orders").fetchone()[0] == "NEW"


# --- seed 001 §4.1: the append-only ledger ---------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE transactions SET amount = 1",
        "DELETE FROM transactions",
        "TRUNCATE transactions",
        "TRUNCATE account.transactions CASCADE",
    ],
)
def test_ledger_is_append_only(world: psycopg.Connection, statement: str) -> None:
    world.execute(
        "INSERT INTO transactions (account_id, transaction_type, currency, amount) VALUES (1, 'DEPOSIT', 'USDT', 100)"
    )
    # A plain TRUNCATE may be refused before the trigger is reached: PostgreSQL refuses to
    # truncate a table another table references (settlement's funding payments). Either
    # way nothing is removed; with CASCADE the trigger is what refuses it.
    refusal = (
        (errors.RestrictViolation, errors.FeatureNotSupported)
        if statement == "TRUNCATE transactions"
        else errors.RestrictViolation
    )
    with pytest.raises(refusal) as refused:
        world.execute(statement)
    if isinstance(refused.value, errors.RestrictViolation):
        assert "append-only" in str(refused.value)
    assert world.execute("SELECT amount FROM transactions ORDER BY id DESC").fetchone()[0] == 100
    assert world.execute("SELECT count(*) FROM transactions").fetchone()[0] == 3


def test_seed_query_9c_lists_funding_fees(world: psycopg.Connection) -> None:
    world.execute(
        "INSERT INTO trade.positions (account_id, exchange_instrument_id, quantity, avg_entry_price) VALUES (1, 1, 1, 100)"
    )
    world.execute(
        "INSERT INTO transactions (account_id, transaction_type, currency, amount, related_position_id, timestamp) "
        "VALUES (1, 'FUNDING_FEE', 'USDT', -0.5, 1, '2024-01-01T08:00Z'), (1, 'DEPOSIT', 'USDT', 10, NULL, now())"
    )
    rows = world.execute(
        """
        SELECT t.timestamp, ei.exchange_symbol, t.amount
        FROM transactions t
        JOIN positions p ON p.id = t.related_position_id
        JOIN exchange_instruments ei ON ei.id = p.exchange_instrument_id
        WHERE t.transaction_type = 'FUNDING_FEE'
          AND t.account_id = %s
        ORDER BY t.timestamp DESC
        LIMIT 200;
        """,
        (1,),
    ).fetchall()
    assert rows == [(dt.datetime(2024, 1, 1, 8, tzinfo=dt.UTC), "BTCUSDT", Decimal("-0.5"))]


def test_seed_query_9d_reads_the_latest_kpi(world: psycopg.Connection) -> None:
    world.execute(
        "INSERT INTO ops_kpi_snapshots (ts, order_latency_p50_ms) VALUES ('2024-01-01', 5), ('2024-01-02', 9)"
    )
    assert (
        world.execute("SELECT * FROM ops_kpi_snapshots ORDER BY ts DESC LIMIT 1;").fetchone()[1]
        == 9
    )


# --- seed 001 §4.3 / §5.1: notifications and inbound dedupe ----------------------------


def test_enqueue_notification_dedupes_by_key(conn: psycopg.Connection) -> None:
    first = conn.execute("SELECT enqueue_notification(7, 'WARN', 't', 'm', 'once')").fetchone()[0]
    again = conn.execute("SELECT enqueue_notification(7, 'WARN', 't', 'm', 'once')").fetchone()[0]
    a = conn.execute("SELECT enqueue_notification(7, 'INFO', 't', 'm')").fetchone()[0]
    b = conn.execute("SELECT enqueue_notification(7, 'INFO', 't', 'm')").fetchone()[0]
    assert first > 0 and again == 0 and b > a > 0
    assert conn.execute(
        "SELECT count(*), min(status), min(fail_count) FROM notification_outbox"
    ).fetchone() == (3, "PENDING", 0)
    with pytest.raises(errors.InvalidTextRepresentation):
        conn.execute("SELECT enqueue_notification(7, 'LOUD', 't', 'm')")


def test_mark_idem_seen_records_first_and_last_sight(conn: psycopg.Connection) -> None:
    conn.execute("SELECT mark_idem_seen('k', 'hash-1', 'tradingview')")
    conn.execute("SELECT pg_sleep(0.01)")
    conn.execute("SELECT mark_idem_seen('k', 'hash-2', 'tradingview')")  # RETURNS VOID
    row = conn.execute(
        "SELECT count(*), min(payload_hash), bool_and(last_seen_at > first_seen_at) FROM inbound_dedupe_keys"
    ).fetchone()
    assert row == (1, "hash-1", True)


# --- seed 004 §4: constraints and triggers -----------------------------------------------


def test_updated_at_moves_on_update(world: psycopg.Connection) -> None:
    before = world.execute("SELECT updated_at FROM instruments WHERE id = 2").fetchone()[0]
    world.execute("BEGIN")  # now() is the transaction's start: use a later transaction
    world.execute("UPDATE instruments SET sector = 'Semiconductors' WHERE id = 2")
    world.execute("COMMIT")
    after = world.execute("SELECT updated_at FROM market.stocks WHERE stock_id = 2").fetchone()[0]
    assert after > before


def test_holdings_are_valued_at_the_latest_daily_close(world: psycopg.Connection) -> None:
    world.execute(
        "INSERT INTO accounts (user_id, exchange_id, name, base_currency) VALUES (1, 2, 'krx', 'KRW')"
    )
    world.execute(
        "INSERT INTO trade.positions (account_id, exchange_instrument_id, quantity, avg_entry_price) VALUES (2, 2, 10, 70000)"
    )
    world.execute(
        "INSERT INTO market.daily_prices (stock_id, trade_date, close_price, volume) VALUES (2, current_date - 1, 72000, 100)"
    )
    row = world.execute(
        "SELECT quantity, current_value, unrealized_pnl, unrealized_pnl_rate FROM account.holdings"
    ).fetchone()
    assert row == (Decimal("10"), Decimal("720000"), Decimal("20000"), Decimal("2.86"))
    world.execute(
        "INSERT INTO market.daily_prices (stock_id, trade_date, close_price, volume) VALUES (2, current_date, 63000, 100)"
    )
    assert world.execute("SELECT unrealized_pnl_rate FROM account.holdings").fetchone()[
        0
    ] == Decimal("-10.00")


def test_seed_004_check_and_unique_constraints(world: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation, match="chk_price_positive"):
        world.execute(
            "INSERT INTO market.daily_prices (stock_id, trade_date, close_price, volume) VALUES (2, current_date, 0, 1)"
        )
    with pytest.raises(errors.CheckViolation):
        world.execute(
            "INSERT INTO brain.ai_reports (stock_id, analysis_date, sentiment_score) VALUES (2, current_date, 11)"
        )
    report = world.execute(
        "INSERT INTO brain.ai_reports (stock_id, analysis_date) VALUES (2, current_date) RETURNING report_id"
    ).fetchone()[0]
    with pytest.raises(errors.UniqueViolation):  # NULL model_version does not slip past the UNIQUE
        world.execute(
            "INSERT INTO brain.ai_reports (stock_id, analysis_date) VALUES (2, current_date)"
        )
    pick = "INSERT INTO brain.daily_picks (report_id, pick_date, action) VALUES (%s, current_date, 'BUY')"
    world.execute(pick, (report,))
    with pytest.raises(errors.UniqueViolation, match="uniq_daily_pick"):
        world.execute(pick, (report,))
    with pytest.raises(errors.RestrictViolation):  # ON DELETE RESTRICT
        world.execute("DELETE FROM market.instruments WHERE id = 2")


def test_no_default_partition_and_partitions_made_ahead(world: psycopg.Connection) -> None:
    premade = world.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'market.candles'::regclass"
    ).fetchone()[0]
    assert premade >= 4  # this month and three ahead
    far = "INSERT INTO market.candles (exchange_instrument_id, time, open, high, low, close, volume) VALUES (1, '2031-05-05', 1, 1, 1, 1, 0)"
    with pytest.raises(errors.CheckViolation, match="no partition"):
        world.execute(far)
    assert (
        world.execute(
            "SELECT system.ensure_partitions('market.candles', '2031-05-01', '2031-06-01')"
        ).fetchone()[0]
        == 1
    )
    world.execute(far)


def test_secrets_cannot_be_stored_in_configuration(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation, match="no_secrets"):
        conn.execute(
            """INSERT INTO system_configuration (key, value) VALUES ('telegram_bot_token', '"x"')"""
        )
