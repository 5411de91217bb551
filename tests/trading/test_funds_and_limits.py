"""Funds, risk limits and bounds, all held by the database on submit: a spot order reserves
what it may spend (or sell), the owner's risk limits are enforced, and numbers and currency
codes outside the documented bounds are refused with field, rule and value."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk
from tradestore.db.connect import SEARCH_PATH
from tradestore.db.errors import ValidationError
from tradestore.trading import (
    apply_fill,
    asset_balances,
    cancel_order,
    get_order,
    ledger,
    submit_order,
)


def free_used(desk: Desk, account: int, currency: str) -> tuple[Decimal, Decimal]:
    held = {b.currency: (b.free, b.used) for b in asset_balances(desk.conn, account)}
    return held.get(currency, (Decimal(0), Decimal(0)))


def limited_account(desk: Desk, name: str, cash: int, **limits: Any) -> int:
    """An account of a new user with seed 003's default limits (2% / 10% / 5), or others."""
    cols = ", ".join(["username", "email", "password_hash", *limits])
    marks = ", ".join(["%s"] * (3 + len(limits)))
    user = desk.conn.execute(
        f"INSERT INTO account.users ({cols}) VALUES ({marks}) RETURNING id",
        (name, f"{name}@example.com", "x", *limits.values()),
    ).fetchone()[0]
    account = desk.conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name) VALUES (%s, %s, %s) RETURNING id",
        (user, desk.exchange_id, name),
    ).fetchone()[0]
    if cash:
        ledger.deposit(desk.conn, account, "USDT", cash)
    return int(account)


# ------------------------------------------------------------------------------ funds


def test_spot_buy_beyond_the_free_quote_is_refused_and_writes_nothing(desk: Desk) -> None:
    account = desk.new_account("small", 10_000)
    before = desk.count("trade.orders")
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", 1, 350_000)
    assert caught.value.field == "quantity" and "insufficient funds" in caught.value.rule
    assert "353500 USDT" in caught.value.rule  # 350,000 + the 1% worst-case fee
    assert desk.count("trade.orders") == before
    assert free_used(desk, account, "USDT") == (10_000, 0)


def test_spot_sell_of_what_is_not_held_is_refused(desk: Desk) -> None:
    desk.set_price(desk.btc, "50000")
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, desk.account_id, desk.btc, "SELL", "MARKET", 1)
    assert caught.value.field == "quantity" and "0 " not in caught.value.value
    assert "BTC" in caught.value.rule
    desk.hold(desk.account_id, "BTC", 1)
    order = submit_order(desk.conn, desk.account_id, desk.btc, "SELL", "MARKET", 1)
    assert free_used(desk, desk.account_id, "BTC") == (0, 1)
    with pytest.raises(ValidationError):  # the 1 BTC is held back by the first SELL
        submit_order(desk.conn, desk.account_id, desk.btc, "SELL", "LIMIT", "0.5", 60000)
    cancel_order(desk.conn, order)
    assert free_used(desk, desk.account_id, "BTC") == (1, 0)


def test_reservation_is_consumed_by_fills_and_released_by_cancel(desk: Desk) -> None:
    account = desk.new_account("res", 10_100)
    order = submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", 2, 5000)
    assert free_used(desk, account, "USDT") == (0, 10_100)  # 2 x 5000 x 1.01
    with pytest.raises(ValidationError):
        submit_order(desk.conn, account, desk.eth, "BUY", "LIMIT", 1, 10)
    apply_fill(desk.conn, order, "r-1", 1, 4900, 5)  # filled below the limit, 5 USDT fee
    free, used = free_used(desk, account, "USDT")
    assert used == 5050 and free == 10_100 - 4900 - 5 - 5050
    cancel_order(desk.conn, order)
    assert free_used(desk, account, "USDT") == (10_100 - 4905, 0)
    # What open orders hold back cannot be withdrawn either.
    held = submit_order(desk.conn, account, desk.eth, "BUY", "LIMIT", 1, 5000)
    with pytest.raises(ValidationError) as caught:
        ledger.withdraw(desk.conn, account, "USDT", 200)
    assert caught.value.field == "amount" and "free" in caught.value.rule
    cancel_order(desk.conn, held)
    ledger.withdraw(desk.conn, account, "USDT", 200)


def test_market_buy_reserves_at_the_latest_price_plus_slippage_or_is_refused(desk: Desk) -> None:
    account = desk.new_account("mkt", 1_000_000)
    with pytest.raises(ValidationError) as caught:  # no price known at all
        submit_order(desk.conn, account, desk.btc, "BUY", "MARKET", 1)
    assert caught.value.field == "price" and "latest price" in caught.value.rule
    desk.set_price(desk.btc, "100")
    submit_order(desk.conn, account, desk.btc, "BUY", "MARKET", 1)
    assert free_used(desk, account, "USDT")[1] == Decimal("100") * Decimal("1.05") * Decimal("1.01")


def test_amending_a_new_order_rechecks_its_funds(desk: Desk) -> None:
    account = desk.new_account("amend", 1010)
    order = submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", 1, 500)
    desk.conn.execute("UPDATE trade.orders SET price = 1000 WHERE id = %s", (order,))
    assert free_used(desk, account, "USDT") == (0, 1010)
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        desk.conn.execute("UPDATE trade.orders SET quantity = 2 WHERE id = %s", (order,))
    assert caught.value.diag.column_name == "quantity"
    # A hand-typed reservation is recomputed, never taken as typed.
    desk.conn.execute("UPDATE trade.orders SET reserve_per_unit = 0 WHERE id = %s", (order,))
    assert free_used(desk, account, "USDT") == (0, 1010)


def test_two_concurrent_submits_cannot_both_spend_the_same_funds(db: str, desk: Desk) -> None:
    account = desk.new_account("race", 1010)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        with psycopg.connect(
            db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
        ) as conn:
            barrier.wait(timeout=60)
            try:
                submit_order(conn, account, desk.btc, "BUY", "LIMIT", "0.6", 1000)
                result = "placed"
            except ValidationError as exc:
                result = exc.field
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["placed", "quantity"]
    assert free_used(desk, account, "USDT") == (Decimal("404"), Decimal("606"))


def test_derivatives_reserve_nothing_but_are_held_to_the_risk_limits(desk: Desk) -> None:
    account = limited_account(desk, "perp", 100_000)
    submit_order(desk.conn, account, desk.perp, "BUY", "LIMIT", "0.02", 100_000)  # 2000 = 2%
    assert free_used(desk, account, "USDT") == (100_000, 0)
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, account, desk.perp, "BUY", "LIMIT", "0.021", 100_000)
    assert caught.value.field == "max_risk_per_trade"


# ------------------------------------------------------------------------- risk limits


def test_max_risk_per_trade_is_a_share_of_equity(desk: Desk) -> None:
    account = limited_account(desk, "risk1", 100_000)  # 2% of 100,000 = 2,000
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", "0.0201", 100_000)
    assert caught.value.field == "max_risk_per_trade"
    assert caught.value.value == "2010" and "2.00%" in caught.value.rule
    submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", "0.02", 100_000)


def test_max_total_risk_counts_positions_and_open_orders(desk: Desk) -> None:
    account = limited_account(desk, "risk2", 100_000, max_risk_per_trade=5, max_positions=100)
    desk.set_price(desk.btc, "100")
    bought = submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", 20, 100)
    apply_fill(desk.conn, bought, "tr-1", 20, 100)  # a 2,000 position
    for _ in range(3):
        submit_order(desk.conn, account, desk.eth, "BUY", "LIMIT", 20, 100)  # 3 x 2,000 open
    with pytest.raises(ValidationError) as caught:  # 8,000 + 2,001 > 10,000
        submit_order(desk.conn, account, desk.eth, "BUY", "LIMIT", "20.01", 100)
    assert caught.value.field == "max_total_risk"
    submit_order(desk.conn, account, desk.eth, "BUY", "LIMIT", 20, 100)  # exactly 10,000
    # Reducing a position adds no risk and is always allowed.
    submit_order(desk.conn, account, desk.btc, "SELL", "LIMIT", 20, 100)


def test_max_positions_counts_open_positions_and_pending_new_ones(desk: Desk) -> None:
    account = limited_account(desk, "risk3", 100_000, max_positions=2)
    submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", 1, 100)
    submit_order(desk.conn, account, desk.btc, "BUY", "LIMIT", 1, 100)  # same listing
    submit_order(desk.conn, account, desk.eth, "BUY", "LIMIT", 1, 100)
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, account, desk.perp, "BUY", "LIMIT", "0.01", 100)
    assert caught.value.field == "max_positions" and caught.value.value == "3"


# ------------------------------------------------------------------------------ bounds

BOUNDS_RULE = "must have at most 20 integer digits and 18 decimal places"


@pytest.mark.parametrize(
    "value",
    ["1e30", "1e309", "1" * 5000, "0." + "0" * 18 + "1"],
    ids=["1e30", "1e309", "5000-digits", "19-places"],
)
def test_numbers_outside_the_bounds_are_refused_everywhere(desk: Desk, value: str) -> None:
    before = (desk.count("trade.orders"), desk.count("account.transactions"))
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", value, 100)
    assert caught.value.field == "quantity"
    if not value.startswith("0."):  # a tiny order quantity is truncated to the step first
        assert caught.value.rule == BOUNDS_RULE
        assert len(str(caught.value.value)) < 80
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, value)
    assert caught.value.field == "price"
    with pytest.raises(ValidationError) as caught:
        ledger.deposit(desk.conn, desk.account_id, "USDT", value)
    assert (caught.value.field, caught.value.rule) == ("amount", BOUNDS_RULE)
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    for args, field in (
        ((value, 100), "quantity"),
        ((1, value), "price"),
        ((1, 100, value), "fee"),
    ):
        with pytest.raises(ValidationError) as caught:
            apply_fill(desk.conn, order, "b-1", *args)
        assert caught.value.field == field
    assert (desk.count("trade.orders"), desk.count("account.transactions")) == (
        before[0] + 1,
        before[1],
    )


def test_bounds_hold_for_direct_writes_too(desk: Desk) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        desk.conn.execute(
            "INSERT INTO trade.orders (account_id, exchange_instrument_id, side, order_type, quantity, "
            "price, source) VALUES (%s, %s, 'BUY', 'LIMIT', 1e30, 100, 'EXTERNAL')",
            (desk.account_id, desk.btc),
        )
    assert caught.value.diag.constraint_name == "chk_order_quantity"
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        desk.conn.execute(
            "INSERT INTO account.transactions (account_id, transaction_type, currency, amount) "
            "VALUES (%s, 'DEPOSIT', 'US''DT', 1)",
            (desk.account_id,),
        )
    assert caught.value.diag.constraint_name == "chk_transactions_currency"


@pytest.mark.parametrize("currency", ["US'DT", "U", "TOOLONGCODE1", "US DT"])
def test_currency_codes_have_one_shape(desk: Desk, currency: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ledger.deposit(desk.conn, desk.account_id, currency, 1)
    assert caught.value.field == "currency" and caught.value.value == currency
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    with pytest.raises(ValidationError) as caught:
        apply_fill(desk.conn, order, "c-1", 1, 100, 1, currency)
    assert caught.value.field == "fee_currency"
    assert get_order(desk.conn, order).filled_quantity == 0


def test_currency_codes_of_the_seeds_are_accepted(desk: Desk) -> None:
    for currency in ("KRW", "USDT", "1000SHIB", "btc"):
        ledger.deposit(desk.conn, desk.account_id, currency, 1)
