"""Daily prices from KRX and US files, the KRX preset (ticks, price limit, sell tax) and
trading calendars."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from tradestore.db.errors import ValidationError, translate
from tradestore.market.daily import ingest_daily_prices, read_daily_rows
from tradestore.market.reference import upsert_exchange, upsert_instrument

KRX_FULL = """일자,종목코드,종가,대비,등락률,시가,고가,저가,거래량,거래대금
2024/01/02,005930,"79,600",1300,1.66,"78,200","79,800","78,200","17,142,847","1,356,958,646,400"
2024/01/03,005930,"77,000",-2600,-3.27,"78,500","78,800","77,000","21,753,644","1,690,000,000,000"
"""
KRX_BARE = """date,ticker,open,high,low,close,volume
2024-01-04,005930,76100,77300,76100,76600,15324439
2024-01-05,005930,76700,77100,76400,76600,11304316
2024-01-08,A005930,76700,77000,76000,76500,11088724
"""
US_FILE = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700
2024-01-03,184.22,185.88,183.43,184.25,183.56,58414500
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def stocks(conn: psycopg.Connection[Any]) -> dict[str, int]:
    samsung = upsert_instrument(
        conn,
        "005930",
        "Samsung Electronics",
        asset_class="EQUITY",
        quote_currency="KRW",
        market_type="KOSPI",
    )
    apple = upsert_instrument(conn, "AAPL", "Apple", asset_class="EQUITY", quote_currency="USD")
    return {"005930": samsung, "AAPL": apple}


def _rows(conn: psycopg.Connection[Any], stock_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT trade_date, close_price, volume, amount, changes FROM market.daily_prices "
        "WHERE stock_id = %s ORDER BY trade_date",
        (stock_id,),
    ).fetchall()


def test_krx_file_with_korean_headers_keeps_its_amount_and_changes(conn, stocks, tmp_path) -> None:
    report = ingest_daily_prices(conn, _write(tmp_path, "krx.csv", KRX_FULL))
    assert (report.staged, report.written, report.rejected) == (2, 2, [])
    rows = _rows(conn, stocks["005930"])
    assert rows[0] == (
        dt.date(2024, 1, 2),
        Decimal("79600"),
        Decimal("17142847"),
        Decimal("1356958646400"),
        Decimal("1.66"),
    )
    assert rows[1][4] == Decimal("-3.27")


def test_missing_changes_and_amount_are_derived(conn, stocks, tmp_path) -> None:
    ingest_daily_prices(conn, _write(tmp_path, "krx.csv", KRX_FULL))
    report = ingest_daily_prices(conn, _write(tmp_path, "bare.csv", KRX_BARE))
    assert report.written == 3 and not report.rejected
    rows = {r[0]: r for r in _rows(conn, stocks["005930"])}
    # 76600 / 77000 - 1 = -0.519 %, from the close stored by the first file
    assert rows[dt.date(2024, 1, 4)][4] == Decimal("-0.52")
    assert rows[dt.date(2024, 1, 5)][4] == Decimal("0.00")
    assert rows[dt.date(2024, 1, 8)][4] == Decimal("-0.13")  # the KRX 'A' code names 005930
    assert rows[dt.date(2024, 1, 4)][3] == Decimal(76600 * 15324439)


def test_us_file_needs_a_ticker_and_derives_changes(conn, stocks, tmp_path) -> None:
    path = _write(tmp_path, "aapl.csv", US_FILE)
    with pytest.raises(ValidationError) as err:
        read_daily_rows(path)
    assert err.value.field == "ticker"
    report = ingest_daily_prices(conn, path, ticker="AAPL")
    assert report.written == 2
    rows = _rows(conn, stocks["AAPL"])
    assert rows[0][4] is None  # no earlier close known
    assert rows[1][4] == Decimal("-0.75")  # 184.25 / 185.64 - 1
    assert rows[1][3] == round(Decimal("184.25") * 58414500)


def test_bad_rows_are_rejected_with_field_and_line(conn, stocks, tmp_path) -> None:
    text = (
        "date,ticker,open,high,low,close,volume\n"
        "2024-01-04,005930,76100,77300,76100,76600,100\n"
        "2024-01-05,999999,1,1,1,1,1\n"
        "2024-01-08,005930,76700,70000,76000,76500,100\n"
        "2024-01-09,005930,1,1,1,-5,100\n"
        "2024-01-04,005930,76100,77300,76100,76600,100\n"
    )
    report = ingest_daily_prices(conn, _write(tmp_path, "bad.csv", text))
    assert report.written == 1
    assert [(r.line, r.field) for r in report.rejected] == [
        (3, "ticker"),
        (4, "high"),
        (5, "close"),
        (6, "trade_date"),
    ]
    # Re-ingesting the same good row changes nothing.
    again = ingest_daily_prices(conn, _write(tmp_path, "one.csv", "\n".join(text.splitlines()[:2])))
    assert again.written == 0


def test_cli_ingest_daily_prices(db, conn, stocks, tmp_path, monkeypatch) -> None:
    from tradestore.cli.market import ingest_app
    from tradestore.config import get_settings

    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")  # no wrapped line, whatever the temp path's length
    get_settings.cache_clear()
    try:
        ok = CliRunner().invoke(
            ingest_app, ["daily-prices", str(_write(tmp_path, "k.csv", KRX_FULL))]
        )
        bad = CliRunner().invoke(
            ingest_app,
            ["daily-prices", str(_write(tmp_path, "u.csv", US_FILE)), "--ticker", "MSFT"],
        )
    finally:
        get_settings.cache_clear()
    assert ok.exit_code == 0, ok.output
    assert "2 written" in ok.output
    assert bad.exit_code == 1
    assert "(value: MSFT)" in bad.output and "line 3" in bad.output


# ------------------------------------------------------------------------- KRX preset
@pytest.fixture
def krx(conn: psycopg.Connection[Any], stocks: dict[str, int]) -> dict[str, int]:
    exchange = upsert_exchange(conn, "krx", "Korea Exchange")
    conn.execute("UPDATE market.exchanges SET timezone = 'Asia/Seoul' WHERE id = %s", (exchange,))
    listing = conn.execute(
        "INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, preset) "
        "VALUES (%s, %s, '005930', 'KRX') RETURNING id",
        (exchange, stocks["005930"]),
    ).fetchone()[0]
    user = conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES ('kim', 'k@x.kr', 'x') RETURNING id"
    ).fetchone()[0]
    account = conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) "
        "VALUES (%s, %s, 'krx', 'KRW') RETURNING id",
        (user, exchange),
    ).fetchone()[0]
    conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'KRW', 100000000)", (account,))
    conn.execute(
        "INSERT INTO market.daily_prices (stock_id, trade_date, close_price, volume) "
        "VALUES (%s, (now() AT TIME ZONE 'Asia/Seoul')::date - 1, 70000, 1)",
        (stocks["005930"],),
    )
    return {"listing": listing, "account": account, "exchange": exchange}


def test_krx_preset_gives_the_tick_table(conn, krx) -> None:
    rules = conn.execute(
        "SELECT trading_rules FROM market.exchange_instruments WHERE id = %s", (krx["listing"],)
    ).fetchone()[0]
    ticks = {
        price: conn.execute(
            "SELECT market.tick_size_at(%s, %s)", (psycopg.types.json.Jsonb(rules), price)
        ).fetchone()[0]
        for price in (1999, 2000, 4999, 19999, 49999, 199999, 499999, 500000)
    }
    assert ticks == {
        1999: 1,
        2000: 5,
        4999: 5,
        19999: 10,
        49999: 50,
        199999: 100,
        499999: 500,
        500000: 1000,
    }
    assert (
        conn.execute("SELECT normalize_price(%s, 71234, 'BUY')", (krx["listing"],)).fetchone()[0]
        == 71200
    )


def test_orders_outside_the_daily_limit_are_refused(conn, krx) -> None:
    limits = conn.execute("SELECT * FROM market.price_limits(%s)", (krx["listing"],)).fetchone()
    assert limits == (Decimal("70000"), Decimal("49000"), Decimal("91000"))
    ok = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 10, 91000)", (krx["account"], krx["listing"])
    ).fetchone()[0]
    assert ok
    for price in (91100, 48900):
        with pytest.raises(psycopg.errors.CheckViolation) as err:
            conn.execute(
                "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 10, %s)",
                (krx["account"], krx["listing"], price),
            )
        refused = translate(err.value)
        assert refused.field == "price" and "daily price limit 49000..91000" in refused.rule


def test_tax_rate_follows_the_trade_date(conn, krx, stocks) -> None:
    rate = "SELECT market.transaction_tax_rate(%s, %s)"
    for day, expected in (
        ("2023-06-01", "0.0020"),
        ("2024-06-01", "0.0018"),
        ("2025-06-01", "0.0015"),
    ):
        assert conn.execute(rate, (stocks["005930"], day)).fetchone()[0] == Decimal(expected)
    assert conn.execute(rate, (stocks["AAPL"], "2024-06-01")).fetchone()[0] is None


def test_a_krx_sell_books_a_tax_row(conn, krx) -> None:
    acct, listing = krx["account"], krx["listing"]
    buy = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 10, 70000)", (acct, listing)
    ).fetchone()[0]
    conn.execute("SELECT apply_fill(%s, 'B1', 10, 70000)", (buy,))
    sell = conn.execute(
        "SELECT submit_order(%s, %s, 'SELL', 'LIMIT', 10, 70000)", (acct, listing)
    ).fetchone()[0]
    conn.execute("SELECT apply_fill(%s, 'S1', 10, 70000)", (sell,))
    row = conn.execute(
        "SELECT amount, currency FROM account.transactions WHERE account_id = %s AND transaction_type = 'TAX'",
        (acct,),
    ).fetchone()
    rate = conn.execute(
        "SELECT market.transaction_tax_rate(i.id, (now() AT TIME ZONE 'Asia/Seoul')::date) "
        "FROM market.instruments i WHERE symbol = '005930'"
    ).fetchone()[0]
    assert row == (-(Decimal(700000) * rate).to_integral_value(rounding="ROUND_DOWN"), "KRW")


# ------------------------------------------------------------------------- calendars
def test_krx_calendar_skips_holidays_and_annualizes_by_its_sessions(conn, krx) -> None:
    from tradestore.market.calendars import listing_calendar, trading_days_between
    from tradestore.strategy.metrics import periods_per_year

    assert listing_calendar(conn, krx["listing"]) == "XKRX"
    # Seollal 2024: Feb 9 and the substitute holiday Feb 12 are closed in Seoul, not in New York.
    assert trading_days_between("XKRX", dt.date(2024, 2, 5), dt.date(2024, 2, 16)) == 8
    assert trading_days_between("XNYS", dt.date(2024, 2, 5), dt.date(2024, 2, 16)) == 10
    assert 240 < periods_per_year("1d", "XKRX") < 250 < periods_per_year("1d", "XNYS") < 253
    assert periods_per_year("1d", "crypto") == 365
