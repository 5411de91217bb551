"""Portfolio valuation: seed 003's bithumb.portfolios/positions, seed 004's
account.portfolio/holdings and the Python API read one state and agree."""

from __future__ import annotations

from decimal import Decimal

from tests.trading.desk import Desk
from tradestore.trading import apply_fill, asset_balances, portfolio_valuation, submit_order


def test_valuation_is_consistent_across_seed_views_and_api(desk: Desk) -> None:
    conn, account = desk.conn, desk.account_id
    buy = submit_order(conn, account, desk.btc, "BUY", "LIMIT", 2, 50000)
    apply_fill(conn, buy, "b1", 2, 50000, "0.002", "BTC")  # fee in the base asset
    eth = submit_order(conn, account, desk.eth, "BUY", "LIMIT", 10, 3000)
    # 6 ETH still open: 18000 + the 1% worst-case fee = 18180 reserved
    apply_fill(conn, eth, "e1", 4, 3000, 12)
    perp = submit_order(conn, account, desk.perp, "SELL", "LIMIT", 1, 40000)
    apply_fill(conn, perp, "p1", 1, 40000, 4)
    desk.set_price(desk.btc, "55000")
    desk.set_price(desk.eth, "2900")
    desk.set_price(desk.perp, "39000")

    v = portfolio_valuation(conn, account)
    cash = Decimal(1_000_000) - 100_000 - 12000 - 12 - 4
    assert v.cash_balance == cash
    assert v.reserved_balance == 6 * 3000 * Decimal("1.01")
    assert v.available_balance == cash - 18180
    assert v.invested_balance == 100_000 + 12000
    # Spot at market (2 x 55000 + 4 x 2900) plus the short perpetual's unrealized +1000.
    assert v.positions_value == 110_000 + 11600 + 1000
    # The BTC fee (a BTC ledger balance of -0.002) is valued at the BTC/USDT price.
    assert v.other_value == Decimal("-0.002") * 55000
    assert v.total_value == v.cash_balance + v.positions_value + v.other_value
    assert v.unrealized_pnl == 10_000 - 400 + 1000 and v.unvalued_currencies == []

    seed3 = conn.execute(
        "SELECT total_balance, available_balance, invested_balance FROM bithumb.portfolios WHERE id = %s",
        (account,),
    ).fetchone()
    seed4 = conn.execute(
        "SELECT current_value FROM account.portfolio WHERE portfolio_id = %s", (account,)
    ).fetchone()
    assert seed3 == (v.total_value, v.available_balance, v.invested_balance)
    assert seed4 == (v.total_value,)

    # Seed 003 positions and seed 004 holdings are the same position rows.
    positions = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT symbol, side, quantity, entry_price, unrealized_pnl FROM bithumb.positions WHERE user_id = %s",
            (desk.user_id,),
        )
    }
    assert positions["BTCUSDT"] == ("long", 2, 50000, 10000)
    assert positions["BTCUSDT_PERP"] == ("short", 1, 40000, 1000)
    holdings = conn.execute(
        "SELECT quantity, avg_purchase_price, current_value, unrealized_pnl, unrealized_pnl_rate "
        "FROM account.holdings WHERE portfolio_id = %s ORDER BY stock_id",
        (account,),
    ).fetchall()
    assert holdings == [
        (2, 50000, 110000, 10000, Decimal("10.00")),
        (4, 3000, 11600, -400, Decimal("-3.33")),
    ]

    held = {b.currency: (b.free, b.used, b.total) for b in asset_balances(conn, account)}
    assert held["BTC"] == (Decimal("1.998"), 0, Decimal("1.998"))
    assert held["ETH"] == (4, 0, 4)
    assert held["USDT"] == (cash - 18180, 18180, cash)


def test_positions_without_a_price_are_valued_at_cost(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    apply_fill(desk.conn, order, "t", 1, 100, "0.001", "BTC")
    v = portfolio_valuation(desk.conn, desk.account_id)
    assert v.positions_value == 100 and v.total_value == 1_000_000
    assert v.unvalued_currencies == ["BTC"]  # the BTC fee has no price to convert it
