"""Settlement module: funding payments, mark prices, FX valuation and schedule fees, on
real PostgreSQL; generated data always, the real XRP/USDT:USDT files when present."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk
from tradestore.db.errors import ValidationError
from tradestore.trading import apply_fill, import_fills, settlement, verify
from tradestore.trading.settlement import funding_amount

DATA = Path("/work/shared/data")
UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)


def fill(
    desk: Desk, account: int, side: str, qty: str, price: str, at: dt.datetime, tid: str
) -> None:
    desk.conn.execute(
        "SELECT trade.record_external_fill(%s, %s, %s, %s, %s, %s, 0, NULL, %s, NULL)",
        (account, desk.perp, side, tid, Decimal(qty), Decimal(price), at),
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def funding_rows(desk: Desk, account: int) -> list[tuple[Decimal, dt.datetime, int | None]]:
    return desk.conn.execute(
        'SELECT amount, "timestamp", related_position_id FROM account.transactions '
        "WHERE account_id = %s AND transaction_type = 'FUNDING_FEE' ORDER BY \"timestamp\"",
        (account,),
    ).fetchall()


def test_funding_books_each_open_position_once_with_sign_by_side(
    desk: Desk, tmp_path: Path
) -> None:
    long_acct, short_acct = desk.new_account("long"), desk.new_account("short")
    fill(desk, long_acct, "BUY", "2", "100", T0, "L1")
    fill(desk, short_acct, "SELL", "3", "100", T0, "S1")
    # The long closes between the two funding times: it pays the first only.
    fill(desk, long_acct, "SELL", "2", "100", T0 + dt.timedelta(hours=9), "L2")
    rates = write(
        tmp_path / "f.csv",
        "funding_time,funding_rate\n"
        "2024-03-01T08:00:00.017Z,0.0001\n"
        "2024-03-01T16:00:00.000Z,-0.0003\n",
    )
    marks = write(
        tmp_path / "m.csv",
        "time,open,high,low,close,volume\n"
        "2024-03-01T08:00:00Z,101.5,102,101,101.7,\n"
        "2024-03-01T16:00:00Z,99.25,99.5,99,99.1,\n",
    )
    assert settlement.ingest_funding_rates(desk.conn, desk.perp, rates).inserted == 2
    assert settlement.ingest_mark_prices(desk.conn, desk.perp, marks).inserted == 2

    done = settlement.settle_due_funding(desk.conn, T0 + dt.timedelta(days=1))
    assert [(s.status, s.payments) for s in done] == [("SETTLED", 2), ("SETTLED", 1)]
    position = desk.conn.execute(
        "SELECT id FROM trade.positions WHERE account_id = %s", (long_acct,)
    ).fetchone()[0]
    # long 2 x mark 101.5 x 0.0001 = 0.0203 paid
    assert funding_rows(desk, long_acct) == [
        (Decimal("-0.0203"), dt.datetime(2024, 3, 1, 8, 0, 0, 17000, tzinfo=UTC), position)
    ]
    # short -3 x 101.5 x 0.0001 received; then -3 x 99.25 x -0.0003 paid
    assert [r[0] for r in funding_rows(desk, short_acct)] == [
        Decimal("0.03045"),
        Decimal("-0.089325"),
    ]
    collected = desk.conn.execute(
        "SELECT bool_and(collected) FROM market.funding_rates"
    ).fetchone()[0]
    assert collected is True

    # Exactly once: settling again, directly or through the due list, books nothing.
    ids = [s.funding_rate_id for s in done]
    assert [
        desk.conn.execute("SELECT market.settle_funding(%s)", (i,)).fetchone()[0] for i in ids
    ] == [0, 0]
    assert settlement.settle_due_funding(desk.conn, T0 + dt.timedelta(days=1)) == []
    assert len(funding_rows(desk, short_acct)) == 2
    assert desk.count("trade.funding_payments") == 3
    assert settlement.ingest_funding_rates(desk.conn, desk.perp, rates).duplicates == 2
    assert desk.conn.execute("SELECT count(*) FROM account.verify_ledger()").fetchone()[0] == 0


def test_funding_without_mark_price_waits_and_bad_input_is_refused(
    desk: Desk, tmp_path: Path
) -> None:
    acct = desk.new_account("a")
    fill(desk, acct, "BUY", "1", "100", T0, "A1")
    settlement.ingest_funding_rates(
        desk.conn,
        desk.perp,
        write(tmp_path / "f.csv", "funding_time,funding_rate\n2024-03-01T08:00:00Z,0.0001\n"),
    )
    done = settlement.settle_due_funding(desk.conn, T0 + dt.timedelta(days=1))
    assert [(s.status, s.payments) for s in done] == [("NO_MARK_PRICE", 0)]
    assert funding_rows(desk, acct) == []
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        desk.conn.execute("SELECT market.settle_funding(%s)", (done[0].funding_rate_id,))
    assert err.value.diag.column_name == "mark_price"
    # A mark bar older than an hour does not price the funding time.
    settlement.ingest_mark_prices(
        desk.conn, desk.perp, write(tmp_path / "m.csv", "time,open\n2024-03-01T06:59:59Z,100\n")
    )
    assert (
        settlement.settle_due_funding(desk.conn, T0 + dt.timedelta(days=1))[0].status
        == "NO_MARK_PRICE"
    )
    with pytest.raises(ValidationError) as bad:
        settlement.ingest_funding_rates(
            desk.conn,
            desk.perp,
            write(tmp_path / "g.csv", "funding_time,funding_rate\n2024-03-01T16:00:00Z,abc\n"),
        )
    assert bad.value.field == "line 2: funding_rate"
    with pytest.raises(ValidationError) as changed:
        settlement.ingest_funding_rates(
            desk.conn,
            desk.perp,
            write(tmp_path / "h.csv", "funding_time,funding_rate\n2024-03-01T08:00:00Z,0.0002\n"),
        )
    assert changed.value.field == "funding_rate"
    with pytest.raises(ValidationError) as naive:
        settlement.ingest_mark_prices(
            desk.conn, desk.perp, write(tmp_path / "n.csv", "time,open\n2024-03-01T08:00:00,1\n")
        )
    assert naive.value.rule == "must carry a time zone"
    # Funding is for perpetuals only.
    desk.conn.execute(
        "INSERT INTO market.funding_rates (exchange_instrument_id, funding_time, funding_rate) VALUES (%s, %s, 0.001)",
        (desk.btc, T0),
    )
    spot_rate = desk.conn.execute(
        "SELECT id FROM market.funding_rates WHERE exchange_instrument_id = %s", (desk.btc,)
    ).fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation) as spot:
        desk.conn.execute("SELECT market.settle_funding(%s)", (spot_rate,))
    assert spot.value.diag.column_name == "exchange_instrument_id"


def test_python_mirror_matches_sql_funding_amount(conn: psycopg.Connection[Any]) -> None:
    rng = random.Random(7)
    cases = [(Decimal("2"), Decimal("101.5"), Decimal("0.0001"), Decimal(1))]
    for _ in range(300):
        qty = Decimal(rng.randint(-(10**7), 10**7)).scaleb(-rng.randint(0, 6))
        mark = Decimal(rng.randint(1, 10**9)).scaleb(-rng.randint(0, 8))
        rate = Decimal(rng.randint(-(10**5), 10**5)).scaleb(-rng.randint(4, 9))
        size = Decimal(rng.choice(["1", "0.001", "10", "0.1"]))
        cases.append((qty, mark, rate, size))
    # Exact halves at the 8th decimal round away from zero on both sides.
    cases += [(Decimal("1"), Decimal("0.000000005"), Decimal("-1"), Decimal(1)),
              (Decimal("-1"), Decimal("0.000000005"), Decimal("-1"), Decimal(1))]  # fmt: skip
    for qty, mark, rate, size in cases:
        sql = conn.execute(
            "SELECT market.funding_amount(%s, %s, %s, %s)", (qty, mark, rate, size)
        ).fetchone()[0]
        assert funding_amount(qty, mark, rate, size) == sql, (qty, mark, rate, size)
    assert funding_amount(Decimal("1"), Decimal("0.000000005"), Decimal("-1")) == Decimal(
        "0.00000001"
    )


@pytest.mark.skipif(
    not (DATA / "binance_XRP_USDT_USDT-8h-funding_rate.csv").exists(), reason="shared data absent"
)
def test_real_xrp_funding_and_mark_prices(desk: Desk) -> None:
    acct = desk.new_account("xrp")
    fill(desk, acct, "BUY", "1000", "1.08", dt.datetime(2021, 11, 17, 12, tzinfo=UTC), "X1")
    rates = settlement.ingest_funding_rates(
        desk.conn, desk.perp, DATA / "binance_XRP_USDT_USDT-8h-funding_rate.csv"
    )
    marks = settlement.ingest_mark_prices(
        desk.conn, desk.perp, DATA / "binance_XRP_USDT_USDT-1h-mark.csv"
    )
    assert (rates.inserted, marks.inserted) == (91, 100)
    done = settlement.settle_due_funding(desk.conn, dt.datetime(2022, 1, 1, tzinfo=UTC))
    settled = [s for s in done if s.status == "SETTLED"]
    # The mark series (15-19 Nov) covers five funding times; the rest wait for marks.
    assert len(settled) == 5 and len(done) == 91
    first = desk.conn.execute(
        "SELECT amount FROM account.transactions WHERE account_id = %s AND transaction_type = 'FUNDING_FEE' "
        'ORDER BY "timestamp" LIMIT 1',
        (acct,),
    ).fetchone()[0]
    mark = desk.conn.execute(
        "SELECT open FROM market.mark_prices WHERE \"time\" = '2021-11-18T00:00:00Z'"
    ).fetchone()[0]
    assert first == funding_amount(Decimal(1000), mark, Decimal("0.0001"))


def test_fx_valuation_through_snapshots_and_unvalued_currencies(desk: Desk, tmp_path: Path) -> None:
    conn = desk.conn
    krw = conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) VALUES (%s, %s, 'krw', 'KRW') "
        "RETURNING id",
        (desk.user_id, desk.exchange_id),
    ).fetchone()[0]
    for ccy, amount in (("KRW", "1000000"), ("USD", "100"), ("USDT", "50"), ("JPY", "1000")):
        conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', %s, %s)", (krw, ccy, Decimal(amount)))
    fx = write(
        tmp_path / "fx.csv",
        "ts,base_ccy,quote_ccy,rate\n"
        "2024-03-01T00:00:00Z,USD,KRW,1300\n"
        "2024-03-02T00:00:00Z,USD,KRW,1350\n"
        "2024-03-02T00:00:00Z,USDT,USD,0.999\n",
    )
    assert settlement.ingest_fx_rates(conn, fx).inserted == 3
    assert settlement.ingest_fx_rates(conn, fx).duplicates == 3
    row = conn.execute(
        "SELECT total_value, other_value, unvalued_currencies FROM account.account_valuation(%s)",
        (krw,),
    ).fetchone()
    # USD at the newest snapshot (1350); USDT through USD (0.999 x 1350); JPY has no rate.
    assert row[1] == Decimal("100") * 1350 + Decimal("50") * Decimal("0.999") * 1350
    assert row[0] == Decimal("1000000") + row[1]
    assert row[2] == ["JPY"]
    # The USDT desk account values KRW through the inverse of the cross.
    conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'KRW', 1348650)", (desk.account_id,))
    rate = conn.execute("SELECT account.conversion_rate('KRW', 'USDT')").fetchone()[0]
    assert abs(rate * Decimal("1348.65") - 1) < Decimal("1e-15")


def _fee_schedule(desk: Desk) -> None:
    """Maker 0.02 %, taker 0.05 %, and a taker override of 0.07 % for ETHUSDT, from 2020."""
    desk.conn.execute(
        "INSERT INTO market.exchange_fee_schedules (exchange_id, effective_from, fee_schema) "
        'VALUES (%s, \'2020-01-01\', \'{"maker": 0.0002, "taker": 0.0005, "symbols": {"ETHUSDT": {"taker": 0.0007}}}\')',
        (desk.exchange_id,),
    )


def test_schedule_fee_maker_or_taker_by_order_type_and_fill(desk: Desk) -> None:
    conn = desk.conn
    _fee_schedule(desk)
    limit_id = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 1, 100)", (desk.account_id, desk.btc)
    ).fetchone()[0]
    desk.set_price(desk.eth, "100")  # a spot BUY at market reserves at the latest price
    market_id = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'MARKET', 1)", (desk.account_id, desk.eth)
    ).fetchone()[0]
    created = conn.execute(
        "SELECT created_at FROM trade.orders WHERE id = %s", (limit_id,)
    ).fetchone()[0]
    later = created + dt.timedelta(minutes=5)
    one, hundred = Decimal(1), Decimal(100)
    assert settlement.schedule_fee(conn, limit_id, one, hundred, later) == Decimal(
        "0.02"
    )  # rested: maker
    assert settlement.schedule_fee(conn, limit_id, one, hundred, created) == Decimal(
        "0.05"
    )  # crossed: taker
    assert settlement.schedule_fee(conn, market_id, one, hundred, later) == Decimal(
        "0.07"
    )  # override
    assert settlement.schedule_fee(conn, limit_id, one, hundred, later, "TAKER") == Decimal("0.05")
    early = dt.datetime(2019, 1, 1, tzinfo=UTC)
    assert settlement.schedule_fee(conn, limit_id, one, hundred, early) is None
    with pytest.raises(ValidationError) as err:
        settlement.schedule_fee(conn, limit_id, one, hundred, later, "BOTH")
    assert err.value.field == "liquidity"


def test_fill_reported_without_a_fee_is_charged_the_schedule_fee(desk: Desk) -> None:
    conn = desk.conn
    _fee_schedule(desk)
    limit_id = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 1, 100)", (desk.account_id, desk.btc)
    ).fetchone()[0]
    created = conn.execute(
        "SELECT created_at FROM trade.orders WHERE id = %s", (limit_id,)
    ).fetchone()[0]
    later = created + dt.timedelta(seconds=1)

    def execution(trade_id: str) -> tuple[Any, ...]:
        return conn.execute(
            "SELECT fee, fee_currency, net_amount FROM trade.executions WHERE exchange_trade_id = %s",
            (trade_id,),
        ).fetchone()

    def fee_rows() -> list[Decimal]:
        return [
            r[0]
            for r in conn.execute(
                "SELECT amount FROM account.transactions WHERE transaction_type = 'FEE' ORDER BY id"
            ).fetchall()
        ]

    # Rested LIMIT order, no fee reported: maker 0.0002 x 0.4 x 100 = 0.008, in USDT,
    # through the execution's cash effect, the order, the position and the ledger.
    apply_fill(conn, limit_id, "S1", "0.4", "100", fee=None, fee_currency="BNB", executed_at=later)
    assert execution("S1") == (Decimal("0.008"), "USDT", Decimal("-40.008"))
    assert fee_rows() == [Decimal("-0.008")]
    # A reported fee, zero included, is kept as reported.
    apply_fill(conn, limit_id, "S2", "0.1", "100", fee="0", executed_at=later)
    apply_fill(conn, limit_id, "S3", "0.1", "100", fee="0.03", executed_at=later)
    assert execution("S2")[0] == 0 and execution("S3")[0] == Decimal("0.03")
    # No schedule in force at the fill's time: nothing to price it by, the fee is 0.
    apply_fill(
        conn,
        limit_id,
        "S4",
        "0.1",
        "100",
        fee=None,
        executed_at=dt.datetime(2019, 1, 1, tzinfo=UTC),
    )
    assert execution("S4") == (Decimal(0), "USDT", Decimal(-10))
    assert fee_rows() == [Decimal("-0.008"), Decimal("-0.03")]
    order_fee, position_fees = conn.execute(
        "SELECT o.fee, p.total_fees FROM trade.orders o JOIN trade.positions p ON p.id = o.holding_id "
        "WHERE o.id = %s",
        (limit_id,),
    ).fetchone()
    assert order_fee == position_fees == Decimal("0.038")

    # The SQL path of fills found by reconciliation or sync: an EXTERNAL MARKET order takes
    # (the listing's override 0.0007 x 2 x 100 = 0.14).
    conn.execute(
        "SELECT trade.record_external_fill(%s, %s, 'BUY', 'S5', 2, 100, NULL, NULL, %s, NULL)",
        (desk.account_id, desk.eth, later),
    )
    assert execution("S5") == (Decimal("0.14"), "USDT", Decimal("-200.14"))
    # A feed line without a fee is priced the same way.
    sell_id = conn.execute(
        "SELECT submit_order(%s, %s, 'SELL', 'MARKET', 1)", (desk.account_id, desk.eth)
    ).fetchone()[0]
    line = json.dumps(
        {"order_id": sell_id, "id": "S6", "amount": "1", "price": "110",
         "datetime": later.isoformat()}
    )  # fmt: skip
    assert import_fills(conn, [line]).applied == 1
    assert execution("S6") == (Decimal("0.077"), "USDT", Decimal("109.923"))
    assert verify(conn).ok


def test_funding_payments_are_account_data(desk: Desk) -> None:
    """A funding payment names an account's position and amount: it lives with the books
    (trade), under their grants, not in the market schema every user may read."""
    conn = desk.conn
    assert conn.execute("SELECT to_regclass('trade.funding_payments') IS NOT NULL").fetchone()[0]
    assert not conn.execute(
        "SELECT has_table_privilege('tradestore_readonly', 'trade.funding_payments', 'SELECT')"
    ).fetchone()[0]
    # Public market data references nothing of an account's books.
    outward = conn.execute(
        """SELECT c.conrelid::regclass::text || ' -> ' || c.confrelid::regclass::text
             FROM pg_constraint c
             JOIN pg_class child ON child.oid = c.conrelid
             JOIN pg_namespace cn ON cn.oid = child.relnamespace
             JOIN pg_class parent ON parent.oid = c.confrelid
             JOIN pg_namespace pn ON pn.oid = parent.relnamespace
            WHERE c.contype = 'f' AND cn.nspname = 'market' AND pn.nspname <> 'market'"""
    ).fetchall()
    assert outward == []
