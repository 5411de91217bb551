"""Roles and row-level security, proved through SQL: a trader reads and changes only
their own rows (tables and seed views alike), readonly writes nothing, nobody but an
admin sets a role, and an identity cannot be claimed by setting the GUC by hand."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tradestore.db.connect import SEARCH_PATH
from tradestore.db.errors import ValidationError
from tradestore.identity import users
from tradestore.identity.errors import AuthError, Forbidden
from tradestore.identity.rls import Role, as_role, as_user, as_user_async, current_identity
from tradestore.ops import monitoring

ALICE, BOB, RITA, ANN, ADAM = 1, 2, 3, 4, 5

WORLD = """
INSERT INTO market.exchanges (code, name) VALUES ('binance', 'Binance');
INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT');
INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules)
VALUES (1, 1, 'BTCUSDT', '{"tick_size": "0.01", "step_size": "0.00001", "min_notional": "5"}');
INSERT INTO account.users (id, username, email, password_hash, role) OVERRIDING SYSTEM VALUE VALUES
  (1, 'alice', 'alice@example.com', 'x', 'trader'), (2, 'bob', 'bob@example.com', 'x', 'trader'),
  (3, 'rita', 'rita@example.com', 'x', 'readonly'), (4, 'ann', 'ann@example.com', 'x', 'analyst'),
  (5, 'adam', 'adam@example.com', 'x', 'admin');
SELECT setval(pg_get_serial_sequence('account.users', 'id'), 5);
UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100, max_positions = 1000;
INSERT INTO account.user_profiles (user_id) SELECT id FROM account.users;
"""

PER_TRADER = """
INSERT INTO account.accounts (user_id, exchange_id, name, initial_capital)
VALUES (%(u)s, 1, 'main', 10000) RETURNING id
"""


def _trader_rows(conn: psycopg.Connection[Any], user_id: int) -> dict[str, int]:
    acct = conn.execute(PER_TRADER, {"u": user_id}).fetchone()[0]
    conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 10000)", (acct,))
    filled = conn.execute(
        "SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 0.1, 40000)", (acct,)
    ).fetchone()[0]
    conn.execute("SELECT apply_fill(%s, %s, 0.1, 40000, 1, 'USDT')", (filled, f"T-{user_id}"))
    open_order = conn.execute(
        "SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 0.1, 39000)", (acct,)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO account.equity_snapshots (account_id, ts, total_value, cash_balance, invested_value) "
        "VALUES (%s, now(), 10000, 6000, 4000)",
        (acct,),
    )
    conn.execute(
        "INSERT INTO account.api_keys (user_id, exchange_id, api_key_ciphertext, api_secret_ciphertext, key_hint) "
        "VALUES (%s, 1, '\\x01', '\\x02', %s)",
        (user_id, f"{user_id:04d}"),
    )
    conn.execute(
        "INSERT INTO account.user_sessions (user_id, session_token_hash, expires_at) "
        "VALUES (%s, %s, now() + interval '1 day')",
        (user_id, uuid.uuid4().bytes),
    )
    strategy = conn.execute(
        "INSERT INTO analytics.strategies (user_id, name, strategy_type) "
        "VALUES (%s, 'sma', 'swing_trading') RETURNING id",
        (user_id,),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO analytics.strategy_executions (strategy_id, user_id, execution_type) "
        "VALUES (%s, %s, 'signal')",
        (strategy, user_id),
    )
    sweep = conn.execute(
        "INSERT INTO analytics.backtest_sweeps (user_id, strategy_name, grid) "
        "VALUES (%s, 'sma', '{}') RETURNING id",
        (user_id,),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO analytics.backtest_runs (sweep_id, user_id, strategy_id, strategy_name, start_date, "
        "end_date, symbols, initial_capital, status, total_return) "
        "VALUES (%s, %s, %s, 'sma', '2024-01-01', '2024-02-01', ARRAY['BTCUSDT'], 10000, 'COMPLETED', 0.05)",
        (sweep, user_id, strategy),
    )
    conn.execute(
        "INSERT INTO system.alerts (alert_type, severity, message, user_id) VALUES ('INFO', 'LOW', %s, %s)",
        (f"for {user_id}", user_id),
    )
    conn.execute(
        "INSERT INTO system.telegram_chats (user_id, chat_id) VALUES (%s, %s)",
        (user_id, 1000 + user_id),
    )
    conn.execute(
        "INSERT INTO brain.decision_logs (account_id, strategy_id, order_id, decision) "
        "VALUES (%s, %s, %s, 'BUY')",
        (acct, strategy, filled),
    )
    conn.execute("INSERT INTO trade.account_limits (account_id, max_open_orders) VALUES (%s, 5)",
                 (acct,))  # fmt: skip
    conn.execute(
        "INSERT INTO analytics.strategy_runners (strategy_id, account_id, listing_ids, timeframe, "
        "mode) VALUES (%s, %s, ARRAY[1]::bigint[], '1m', 'simulated')",
        (strategy, acct),
    )
    return {"account": acct, "filled": filled, "open": open_order, "strategy": strategy}


@pytest.fixture(scope="module")
def world(module_schema_db: str) -> Iterator[dict[str, Any]]:
    with psycopg.connect(module_schema_db, autocommit=True) as conn:
        conn.execute(WORLD)
        rows = {ALICE: _trader_rows(conn, ALICE), BOB: _trader_rows(conn, BOB)}
        # A row of nobody: a system alert (admins only; a backtest always has an owner).
        conn.execute("INSERT INTO system.alerts (message) VALUES ('for admins')")
    yield {"db": module_schema_db, **rows}


@pytest.fixture
def conn(world: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        world["db"], autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
    ) as c:
        yield c


# How each table's rows belong to a user (as the superuser sees them).
OWNERSHIP = {
    "account.users": "id = %(u)s",
    "account.user_profiles": "user_id = %(u)s",
    "account.user_sessions": "user_id = %(u)s",
    "account.api_keys": "user_id = %(u)s",
    "account.accounts": "user_id = %(u)s",
    "account.transactions": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
    "account.equity_snapshots": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
    "trade.orders": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
    "trade.executions": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
    "trade.positions": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
    "trade.account_limits": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
    "analytics.strategy_runners": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
    "analytics.strategies": "user_id = %(u)s",
    "analytics.strategy_executions": "user_id = %(u)s",
    "analytics.backtest_sweeps": "user_id = %(u)s",
    "analytics.backtest_runs": "user_id = %(u)s",
    "system.alerts": "user_id = %(u)s",  # system alerts (no user) are for admins only
    "system.telegram_chats": "user_id = %(u)s",
    "brain.decision_logs": "account_id IN (SELECT id FROM account.accounts WHERE user_id = %(u)s)",
}


# Column(s) naming a row (users may not read ctid or every column of every table).
ROW_KEY = {"account.user_profiles": "user_id", "account.equity_snapshots": "account_id, ts",
           "system.alerts": "alert_id", "trade.account_limits": "account_id"}  # fmt: skip


def _rows(
    conn: psycopg.Connection[Any], table: str, where: str = "true", **params: Any
) -> set[str]:
    key = ROW_KEY.get(table, "id")
    return {str(r) for r in conn.execute(f"SELECT {key} FROM {table} WHERE {where}", params)}


@pytest.mark.parametrize("table", sorted(OWNERSHIP))
def test_a_trader_reads_exactly_their_own_rows(conn: psycopg.Connection[Any], table: str) -> None:
    own = _rows(conn, table, OWNERSHIP[table], u=ALICE)
    others = _rows(conn, table) - own
    assert own and others  # both users have rows here
    with as_user(conn, ALICE) as c:
        assert _rows(c, table) == own


# Seed views and their owner column: (view, SQL giving the owner ids visible).
VIEWS = {
    "christmas.orders": "SELECT DISTINCT user_id FROM christmas.orders",
    "christmas.trades": "SELECT DISTINCT user_id FROM christmas.trades",
    "bithumb.orders": "SELECT DISTINCT user_id FROM bithumb.orders",
    "bithumb.trades": "SELECT DISTINCT user_id FROM bithumb.trades",
    "bithumb.positions": "SELECT DISTINCT user_id FROM bithumb.positions",
    "bithumb.portfolios": "SELECT DISTINCT user_id FROM bithumb.portfolios",
    "bithumb.user_sessions": "SELECT DISTINCT user_id FROM bithumb.user_sessions",
    "account.portfolio": "SELECT DISTINCT user_id FROM account.portfolio",
    "account.holdings": "SELECT DISTINCT a.user_id FROM account.holdings h "
    "JOIN account.accounts a ON a.id = h.portfolio_id",
    "analytics.backtest_results": "SELECT DISTINCT user_id FROM analytics.backtest_results "
    "WHERE user_id IS NOT NULL",
    "trade.position_valuations": "SELECT DISTINCT a.user_id FROM trade.position_valuations v "
    "JOIN account.accounts a ON a.id = v.account_id",
    "account.balances": "SELECT DISTINCT a.user_id FROM account.balances b "
    "JOIN account.accounts a ON a.id = b.account_id",
}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_seed_views_do_not_leak_other_users_rows(conn: psycopg.Connection[Any], view: str) -> None:
    query = VIEWS[view]
    assert {r[0] for r in conn.execute(query)} == {ALICE, BOB}  # the superuser sees both
    with as_user(conn, ALICE) as c:
        assert {r[0] for r in c.execute(query)} == {ALICE}
    with as_user(conn, RITA) as c:  # readonly, no data of its own
        assert c.execute(query).fetchall() == []


def test_another_traders_rows_cannot_be_changed(
    conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    bob = world[BOB]
    with as_user(conn, ALICE) as c:
        for statement, params in [
            ("UPDATE trade.orders SET notes = 'x' WHERE id = %s", (bob["open"],)),
            ("UPDATE account.accounts SET name = 'x' WHERE id = %s", (bob["account"],)),
            ("UPDATE account.users SET email = 'x@x.x' WHERE id = %s", (BOB,)),
            ("UPDATE account.user_profiles SET first_name = 'x' WHERE user_id = %s", (BOB,)),
            ("UPDATE account.user_sessions SET revoked_at = now() WHERE user_id = %s", (BOB,)),
            ("DELETE FROM account.api_keys WHERE user_id = %s", (BOB,)),
            ("DELETE FROM analytics.strategies WHERE id = %s", (bob["strategy"],)),
            ("UPDATE system.alerts SET is_acknowledged = true WHERE user_id = %s", (BOB,)),
            ("UPDATE system.alerts SET is_acknowledged = true WHERE user_id IS NULL", ()),
        ]:
            assert c.execute(statement, params).rowcount == 0, statement
    # An id of another user's object is "not found", as if it did not exist.
    with (
        pytest.raises(ValidationError, match="must name an existing order"),
        as_user(conn, ALICE) as c,
    ):
        c.execute("SELECT cancel_order(%s)", (bob["open"],))
    with (
        pytest.raises(ValidationError, match="must name an existing account"),
        as_user(conn, ALICE) as c,
    ):
        c.execute("SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 0.1, 100)", (bob["account"],))
    with pytest.raises(Forbidden, match="row-level security"), as_user(conn, ALICE) as c:
        c.execute(
            "INSERT INTO trade.orders (account_id, exchange_instrument_id, side, order_type, quantity, price) "
            "VALUES (%s, 1, 'BUY', 'LIMIT', 0.1, 100)",
            (bob["account"],),
        )
    assert conn.execute(
        "SELECT status, notes FROM trade.orders WHERE id = %s", (bob["open"],)
    ).fetchone() == ("NEW", None)


def test_a_trader_trades_their_own_account_but_never_writes_the_books(
    conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    mine = world[ALICE]
    with as_user(conn, ALICE) as c:
        order = c.execute(
            "SELECT submit_order(%s, 1, 'SELL', 'LIMIT', 0.05, 41000)", (mine["account"],)
        ).fetchone()[0]
        c.execute("SELECT cancel_order(%s)", (order,))
        assert c.execute(
            "SELECT created_by FROM trade.orders WHERE id = %s", (order,)
        ).fetchone() == ("tradestore_trader",)
        # `tradestore orders submit` records its orders as the CLI's.
        from_cli = c.execute(
            "SELECT trade.place_order(%s, 1, 'SELL', 'LIMIT', 0.05, 41000, p_source => 'cli')",
            (mine["account"],),
        ).fetchone()[0]
        assert c.execute(
            "SELECT source FROM trade.orders WHERE id = %s", (from_cli,)
        ).fetchone() == ("CLI",)
        c.execute("SELECT cancel_order(%s)", (from_cli,))
    for statement in [
        # Balances come from the ledger: no deposits of one's own making.
        "SELECT post_ledger_entry(%(a)s, 'DEPOSIT', 'USDT', 1000000)",
        "INSERT INTO account.transactions (account_id, transaction_type, currency, amount) "
        "VALUES (%(a)s, 'ADJUSTMENT', 'USDT', 1000000)",
        "UPDATE trade.positions SET quantity = 100 WHERE account_id = %(a)s",
        "SELECT apply_fill(%(o)s, 'FAKE-1', 0.1, 1, 0, 'USDT')",
        # Fills and exchange records are the engine's.
        "UPDATE trade.orders SET filled_quantity = 0.1 WHERE id = %(o)s",
        "SELECT trade.place_order(%(a)s, 1, 'BUY', 'MARKET', 1, 10, p_source => 'EXTERNAL')",
        "SELECT account.lock_ledger(%(a)s)",
        "UPDATE analytics.strategies SET total_pnl = 1e9 WHERE user_id = 1",
    ]:
        with pytest.raises(Forbidden), as_user(conn, ALICE) as c:
            c.execute(statement, {"a": mine["account"], "o": mine["open"]})


def test_readonly_writes_nothing(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    for statement in [
        "INSERT INTO account.accounts (user_id, exchange_id, name) VALUES (3, 1, 'mine')",
        "UPDATE account.users SET email = 'r@example.com' WHERE id = 3",
        "UPDATE account.user_profiles SET first_name = 'Rita' WHERE user_id = 3",
        "INSERT INTO analytics.strategies (user_id, name, strategy_type) VALUES (3, 's', 'scalping')",
        "UPDATE system.alerts SET is_acknowledged = true",
        "DELETE FROM account.api_keys",
        "INSERT INTO market.exchanges (code, name) VALUES ('x', 'x')",
        "UPDATE account.user_sessions SET revoked_at = now()",
    ]:
        with pytest.raises(Forbidden), as_user(conn, RITA) as c:
            c.execute(statement)
    # Narrowed to readonly, a trader cannot write either.
    with pytest.raises(Forbidden), as_user(conn, ALICE, Role.READONLY) as c:
        c.execute(
            "SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 0.1, 100)", (world[ALICE]["account"],)
        )


def test_nobody_but_an_admin_sets_a_role(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(Forbidden), as_user(conn, ALICE) as c:  # no column privilege on role
        c.execute("UPDATE account.users SET role = 'admin' WHERE id = 1")
    with (
        pytest.raises(ValidationError) as err,
        as_user(conn, ALICE) as c,
    ):  # mass assignment refused whole
        users.update_settings(c, ALICE, {"email": "a2@example.com", "role": "admin"})
    assert err.value.field == "role"
    # Even the application's service role, which may update users, is stopped by the trigger.
    for statement in [
        "UPDATE account.users SET role = 'admin' WHERE id = 1",
        "INSERT INTO account.users (username, email, password_hash, role) VALUES ('eve', 'e@x.io', 'x', 'admin')",
    ]:
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="only an admin"),
            conn.transaction(),
        ):
            conn.execute("SET LOCAL ROLE tradestore_app")
            conn.execute(statement)
    # A role cannot be widened when acting as a user.
    with pytest.raises(Forbidden, match="narrow"), as_user(conn, ALICE, Role.ADMIN):
        pass
    assert users.get_user(conn, ALICE).role is Role.TRADER
    # An admin can.
    with as_user(conn, ADAM) as c:
        c.execute("UPDATE account.users SET role = 'analyst' WHERE id = 1")
    assert users.set_role(conn, ALICE, "trader").role is Role.TRADER


def test_own_settings_and_profile_can_be_changed(conn: psycopg.Connection[Any]) -> None:
    with as_user(conn, ALICE) as c:
        updated = users.update_settings(
            c, ALICE, {"max_positions": 7, "max_risk_per_trade": Decimal("1.5")}
        )
        assert updated.max_positions == 7
        profile = users.update_profile(
            c, ALICE, {"first_name": "Alice", "preferences": {"theme": "dark"}}
        )
        assert profile.preferences == {"theme": "dark"}
    with pytest.raises(ValidationError), as_user(conn, ALICE) as c:
        users.update_profile(c, ALICE, {"user_id": BOB})


def test_admin_and_the_service_role_see_every_row(conn: psycopg.Connection[Any]) -> None:
    total = conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0]
    with as_user(conn, ADAM) as c:
        assert c.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == total
    with as_role(conn, Role.ADMIN) as c:
        assert c.execute("SELECT count(*) FROM account.api_keys").fetchone()[0] == 2
    with conn.transaction():
        conn.execute("SET LOCAL ROLE tradestore_app")
        assert conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == total
    # An analyst sees research and shared data but no other user's trading or backtests.
    with as_user(conn, ANN) as c:
        assert c.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM analytics.backtest_runs").fetchone()[0] == 0
        c.execute("INSERT INTO brain.llm_prompts (name, template) VALUES ('p', 't')")


def test_the_identity_setting_cannot_be_claimed_by_hand(
    conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    # A database login granted the trader role directly (not the application): setting
    # tradestore.user_id by hand gives it nobody's rows.
    name = f"mallory_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE tradestore_trader")
    try:
        with psycopg.connect(
            make_conninfo(world["db"], user=name, password=password), autocommit=True
        ) as mallory:
            mallory.execute("SET ROLE tradestore_trader")
            mallory.execute("SELECT set_config('tradestore.user_id', '1', false)")
            assert mallory.execute("SELECT system.app_user_id()").fetchone()[0] is None
            assert mallory.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == 0
            assert mallory.execute("SELECT count(*) FROM account.accounts").fetchone()[0] == 0
    finally:
        conn.execute(f"DROP ROLE {name}")


def test_acting_as_a_user_checks_the_user_and_the_session(conn: psycopg.Connection[Any]) -> None:
    session = conn.execute(
        "SELECT id FROM account.user_sessions WHERE user_id = %s", (ALICE,)
    ).fetchone()[0]
    with as_user(conn, ALICE, session_id=session) as c:
        assert current_identity(c) == ("tradestore_trader", ALICE)
    assert current_identity(conn) == (conn.info.user, None)  # over with the transaction
    with pytest.raises(AuthError), as_user(conn, ALICE, session_id=session + 1000):
        pass
    with pytest.raises(AuthError), as_user(conn, 999):
        pass
    conn.execute("UPDATE account.users SET is_active = false WHERE id = %s", (RITA,))
    try:
        with pytest.raises(AuthError), as_user(conn, RITA):
            pass
    finally:
        conn.execute("UPDATE account.users SET is_active = true WHERE id = %s", (RITA,))
    # Acting as alice, the session cannot switch itself to bob.
    with pytest.raises(Forbidden), as_user(conn, ALICE) as c:
        c.execute("SELECT system.act_as(%s)", (BOB,))
    with (
        conn.transaction(),
        pytest.raises(RuntimeError, match="not in a transaction"),
        as_user(conn, ALICE),
    ):
        pass


def test_a_non_superuser_application_login_works_as_in_production(
    conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    # The production set-up: the application logs in as its own role, a member of
    # tradestore_app, and acts as users through as_user.
    name = f"app_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE tradestore_app")
    try:
        with psycopg.connect(
            make_conninfo(world["db"], user=name, password=password),
            autocommit=True,
            options=f"-c search_path={SEARCH_PATH.replace(' ', '')}",
        ) as app:
            everyone = app.execute("SELECT count(*) FROM trade.orders").fetchone()[0]
            with as_user(app, ALICE) as c:
                assert current_identity(c) == ("tradestore_trader", ALICE)
                accounts = c.execute("SELECT count(DISTINCT account_id) FROM trade.orders")
                assert accounts.fetchone()[0] == 1
                assert 0 < c.execute("SELECT count(*) FROM trade.orders").fetchone()[0] < everyone
            with as_role(app, Role.ADMIN) as c:
                assert c.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == everyone
            # The service role itself cannot change roles: only tradestore_admin can.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("UPDATE account.users SET role = 'admin' WHERE id = 1")
    finally:
        conn.execute(f"DROP ROLE {name}")


def test_async_connections_act_as_users_too(world: dict[str, Any]) -> None:
    async def main() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(world["db"], autocommit=True) as aconn:
            everyone = (
                await (await aconn.execute("SELECT count(*) FROM trade.orders")).fetchone()
            )[0]
            async with as_user_async(aconn, ALICE) as c:
                cur = await c.execute("SELECT count(DISTINCT account_id) FROM trade.orders")
                return everyone, (await cur.fetchone())[0]

    everyone, accounts = asyncio.run(main())
    assert accounts == 1 and everyone > 1


def _production_login(conn: psycopg.Connection[Any], world: dict[str, Any]) -> tuple[str, str]:
    name = f"app_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE tradestore_app")
    return name, make_conninfo(
        world["db"],
        user=name,
        password=password,
        options=f"-c search_path={SEARCH_PATH.replace(' ', '')}",
    )


@pytest.mark.parametrize("superuser", [True, False], ids=["superuser", "app_login"])
def test_the_acting_identity_cannot_be_switched_with_set_config(
    conn: psycopg.Connection[Any], world: dict[str, Any], superuser: bool
) -> None:
    name, conninfo = _production_login(conn, world)
    try:
        with (
            contextlib.nullcontext(conn)
            if superuser
            else psycopg.connect(conninfo, autocommit=True)
        ) as app:
            with as_user(app, ALICE) as c:
                mine = c.execute("SELECT count(*) FROM trade.orders").fetchone()[0]
                assert mine > 0
            bobs = conn.execute(
                "SELECT count(*) FROM trade.orders o JOIN account.accounts a "
                "ON a.id = o.account_id WHERE a.user_id = %s",
                (BOB,),
            ).fetchone()[0]
            assert bobs > 0
            # Switching the id (alone, or with alice's seal copied along) is refused, never
            # read as bob.
            for forge in (
                "SELECT set_config('tradestore.user_id', '2', true)",
                "SELECT set_config('tradestore.user_id', '2', true), "
                "set_config('tradestore.user_seal', current_setting('tradestore.user_seal'), true)",
                "SET LOCAL tradestore.user_id = '2'",
            ):
                with pytest.raises(Forbidden) as refused, as_user(app, ALICE) as c:
                    c.execute(forge)
                    c.execute("SELECT count(*) FROM trade.orders").fetchone()
                assert refused.value.field == "tradestore.user_id"
            # The trader role can neither seal another id nor act as someone else.
            for call in ("SELECT system.identity_seal(2)", "SELECT system.act_as(2)"):
                with pytest.raises(Forbidden), as_user(app, ALICE) as c:
                    c.execute(call)
            # A seal from an earlier transaction does not verify in a later one.
            with as_user(app, BOB) as c:
                seal = c.execute("SELECT current_setting('tradestore.user_seal')").fetchone()[0]
            with pytest.raises(Forbidden), as_user(app, ALICE) as c:
                c.execute(
                    "SELECT set_config('tradestore.user_id', '2', true), "
                    "set_config('tradestore.user_seal', %s, true)",
                    (seal,),
                )
                c.execute("SELECT count(*) FROM trade.orders").fetchone()
            # Setting the id back to the acting user's own is harmless.
            with as_user(app, ALICE) as c:
                c.execute("SELECT set_config('tradestore.user_id', '1', true)")
                assert c.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == mine
    finally:
        conn.execute(f"DROP ROLE {name}")


def test_the_seal_secret_is_unreadable_to_every_tradestore_role(
    conn: psycopg.Connection[Any],
) -> None:
    for role in ("readonly", "trader", "analyst", "admin", "app"):
        assert not conn.execute(
            "SELECT has_table_privilege(%s, 'system.identity_key', 'SELECT')",
            (f"tradestore_{role}",),
        ).fetchone()[0], role
    with pytest.raises(Forbidden), as_role(conn, Role.ADMIN) as c:
        c.execute("SELECT secret FROM system.identity_key")


def test_pg_stat_statements_is_for_admins_only(
    conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    for user in (ALICE, RITA, ANN):
        for query in (
            "SELECT count(*) FROM pg_stat_statements",
            "SELECT count(*) FROM pg_stat_statements(true)",
        ):
            with pytest.raises(Forbidden), as_user(conn, user) as c:
                c.execute(query)
    for role in ("readonly", "trader", "analyst"):
        assert not conn.execute(
            "SELECT has_table_privilege(%s, 'pg_stat_statements', 'SELECT')",
            (f"tradestore_{role}",),
        ).fetchone()[0]
    with as_user(conn, ADAM) as c:
        assert c.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone()[0]
    # ops slow-queries works for a login that holds tradestore_admin (not a superuser).
    name = f"ops_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE tradestore_admin")
    try:
        rows = monitoring.slow_queries(make_conninfo(world["db"], user=name, password=password), 5)
        assert isinstance(rows, list)
    finally:
        conn.execute(f"DROP ROLE {name}")


def test_runners_and_limits_are_the_owners_and_feeds_are_shared_read_only(
    conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    """A trader reads their own runners and limits (the parametrized test above) but
    changes none, theirs or another's: the engine and admins do. Everyone reads the
    collectors' feeds; only admins change them."""
    conn.execute("INSERT INTO market.collector_feeds (exchange, symbols, kinds) "
                 "VALUES ('binance', ARRAY['BTC/USDT'], ARRAY['trades'])")  # fmt: skip
    bob = world[BOB]
    with as_user(conn, ALICE) as c:
        assert c.execute("SELECT count(*) FROM market.collector_feeds").fetchone()[0] >= 1
    for statement, params in (
        ("UPDATE trade.account_limits SET max_open_orders = NULL", ()),
        ("UPDATE analytics.strategy_runners SET state = 'RUNNING'", ()),
        ("DELETE FROM analytics.strategy_runners WHERE account_id = %s", (bob["account"],)),
        ("INSERT INTO trade.account_limits (account_id) VALUES (%s)", (bob["account"],)),
        ("DELETE FROM market.collector_feeds", ()),
    ):
        with pytest.raises(Forbidden), as_user(conn, ALICE) as c:
            c.execute(statement, params)
    with as_user(conn, ADAM) as c:
        assert c.execute("UPDATE market.collector_feeds SET enabled = false").rowcount >= 1
