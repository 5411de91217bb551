"""Backtests of perpetuals pay funding exactly as the books do: the backtest's final equity
equals the books after its fills are replayed through apply_fill and the same funding
times are settled through market.settle_due_funding."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.strategy.market import DATA_DIR, listing, load, random_walk, user, utc
from tradestore.db.errors import ValidationError
from tradestore.strategy.data import load_market_data, resolve_instruments
from tradestore.strategy.engine import run_event
from tradestore.strategy.fast import run_fast
from tradestore.strategy.model import BacktestConfig, MarketData, SignalMatrix, SimResult
from tradestore.trading import settlement

D = Decimal
PERP_RULES = {"tick_size": "0.01", "step_size": "0.1", "contract_size": "0.01"}
CAPITAL = D(10000)


def _needs_settlement(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT to_regprocedure('market.settle_due_funding(timestamptz,bigint)')")
    if row.fetchone()[0] is None:
        pytest.skip("the settlement module is not installed in the test database")


def _perp(conn: psycopg.Connection[Any], symbol: str, rules: dict[str, str]) -> int:
    """A PERPETUAL listing settled in USDT (funding is booked in the quote currency)."""
    lid = listing(conn, symbol, rules, asset_class="PERPETUAL")
    conn.execute(
        "UPDATE market.instruments SET base_currency = %s, quote_currency = 'USDT' "
        "WHERE id = (SELECT instrument_id FROM market.exchange_instruments WHERE id = %s)",
        (symbol.split("/")[0], lid),
    )
    return lid


def _signals(n: int, **bars: list[int]) -> SignalMatrix:
    sig = SignalMatrix.empty(n, 1)
    for name, rows in bars.items():
        getattr(sig, name)[rows, 0] = True
    return sig


def _books_equity(
    conn: psycopg.Connection[Any], lid: int, data: MarketData, result: SimResult
) -> tuple[Decimal, Decimal, list[Decimal]]:
    """Replay the backtest's fills through the SQL API (each at its bar's time), settle
    funding up to the last bar, and return (equity, ledger cash, funding amounts)."""
    uid = user(conn, f"carry{lid}")
    account = conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) "
        "SELECT %s, exchange_id, 'carry', 'USDT' FROM market.exchange_instruments WHERE id = %s "
        "RETURNING id",
        (uid, lid),
    ).fetchone()[0]
    first = data.time_at(0)
    conn.execute(
        "SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', %s, 'capital', %s)",
        (account, CAPITAL, first - dt.timedelta(days=1)),
    )
    fills = result.fills
    for i in range(len(fills)):
        qty, price, fee, _ = fills.decimal(i)
        side = "BUY" if fills.side[i] > 0 else "SELL"
        order = conn.execute(
            "SELECT trade.place_order(%s, %s, %s, 'MARKET', %s, p_source => 'EXTERNAL')",
            (account, lid, side, qty),
        ).fetchone()[0]
        conn.execute(
            "SELECT apply_fill(%s, %s, %s, %s, %s, NULL, %s)",
            (order, f"B{i}", qty, price, fee, data.time_at(int(fills.t[i]))),
        )
    done = settlement.settle_due_funding(conn, data.time_at(data.n_bars - 1), lid)
    assert all(s.status == "SETTLED" for s in done)
    cash = conn.execute(
        "SELECT sum(amount) FROM account.transactions WHERE account_id = %s", (account,)
    ).fetchone()[0]
    amounts = [
        r[0]
        for r in conn.execute(
            "SELECT amount FROM account.transactions WHERE account_id = %s "
            "AND transaction_type = 'FUNDING_FEE' ORDER BY \"timestamp\"",
            (account,),
        ).fetchall()
    ]
    qty, avg = conn.execute(
        "SELECT quantity, avg_entry_price FROM trade.positions "
        "WHERE account_id = %s AND exchange_instrument_id = %s",
        (account, lid),
    ).fetchone()
    last_close = D(repr(float(data.close[-1, 0])))
    mult = data.instruments[0].multiplier
    return cash + qty * (last_close - avg) * mult, cash, amounts


def _generated_perp(conn: psycopg.Connection[Any]) -> tuple[int, dict[str, np.ndarray]]:
    lid = _perp(conn, "ETH/USDT:USDT", PERP_RULES)
    bars = random_walk(96, seed=11, minutes=60)  # four days of 1h bars
    load(conn, lid, bars, "1h")
    # Funding every 8 h, positive and negative rates; Binance's few-ms offsets and one
    # exactly on the hour (a fill at that bar's open counts: executed at the funding time).
    rates = ["0.0001", "0.00035", "-0.0002", "0.000125", "0.0003", "-0.00041", "0.0001",
             "0.00077", "-0.0001", "0.0002", "0.0005", "0.00013"]  # fmt: skip
    for k, rate in enumerate(rates):
        at = utc("2024-01-01") + dt.timedelta(hours=8 * k, milliseconds=0 if k == 1 else 17)
        conn.execute(
            "INSERT INTO market.funding_rates (exchange_instrument_id, funding_time, funding_rate) "
            "VALUES (%s, %s, %s)",
            (lid, at, D(rate)),
        )
    # Mark prices: hourly bars a little off the traded price (mark is not last price).
    for i, t in enumerate(bars["times"]):
        mark = D(repr(float(bars["open"][i]))) + D("0.037") * (i % 3 - 1)
        conn.execute(
            'INSERT INTO market.mark_prices (exchange_instrument_id, "time", open) '
            "VALUES (%s, %s, %s)",
            (lid, f"{t}Z", mark),
        )
    return lid, bars


def test_funded_carry_backtest_equals_the_books(conn: psycopg.Connection[Any]) -> None:
    _needs_settlement(conn)
    lid, bars = _generated_perp(conn)
    instruments = resolve_instruments(conn, ["ETHUSDT:USDT"], at=utc("2024-01-01"))
    data, _ = load_market_data(conn, instruments, "1h", utc("2024-01-01"),
                               utc("2024-01-04T23:00"), fee_rate=D("0.0004"))  # fmt: skip
    assert instruments[0].perpetual and len(data.funding[0]) == 12
    # Short from the 08:00 open (signal at the 07:00 close) over several funding times,
    # reverse to long at 2024-01-03 06:00, still long at the end.
    sig = _signals(len(bars["times"]), short_entries=[7], entries=[53])
    config = BacktestConfig(initial_capital=CAPITAL, allow_short=True, position_size_pct=D(50))
    result = run_event(data, sig, config)
    assert [int(t) for t in result.fills.t] == [8, 54, 54]
    equity, _, amounts = _books_equity(conn, lid, data, result)
    # From 08:00 (its fill is at that funding time) to the end: 11 funding times held.
    assert result.funding_payments == len(amounts) == 11
    assert result.funding_paid == sum(amounts) != 0
    assert any(a > 0 for a in amounts) and any(a < 0 for a in amounts)
    assert result.final_value == equity
    # The equity curve is float64 (for the metrics); it carries the funding too.
    assert result.equity[-1] == pytest.approx(float(equity), rel=1e-12)


def test_fast_path_refuses_funded_perpetuals(conn: psycopg.Connection[Any]) -> None:
    _needs_settlement(conn)
    _generated_perp(conn)
    instruments = resolve_instruments(conn, ["ETHUSDT:USDT"], at=utc("2024-01-01"))
    data, _ = load_market_data(conn, instruments, "1h", utc("2024-01-01"),
                               utc("2024-01-04T23:00"))  # fmt: skip
    with pytest.raises(ValidationError) as err:
        run_fast(data, _signals(data.n_bars, short_entries=[7]), BacktestConfig(allow_short=True))
    assert err.value.field == "engine" and "event engine" in err.value.rule
    assert "ETHUSDT:USDT" in str(err.value.value)


def test_funding_time_without_a_mark_price_is_refused(conn: psycopg.Connection[Any]) -> None:
    _needs_settlement(conn)
    lid, _ = _generated_perp(conn)
    conn.execute(
        'DELETE FROM market.mark_prices WHERE exchange_instrument_id = %s AND "time" '
        "BETWEEN '2024-01-02T15:00Z' AND '2024-01-02T16:00Z'",
        (lid,),
    )
    instruments = resolve_instruments(conn, ["ETHUSDT:USDT"], at=utc("2024-01-01"))
    with pytest.raises(ValidationError) as err:
        load_market_data(conn, instruments, "1h", utc("2024-01-01"), utc("2024-01-04T23:00"))
    assert err.value.field == "mark_price"
    assert "2024-01-02T16:00:00.017" in str(err.value.value)


def _rows(name: str) -> list[dict[str, str]]:
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"{path} is not here (real market data is only on developer machines)")
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_real_xrp_short_carry_equals_the_books(conn: psycopg.Connection[Any]) -> None:
    """Binance XRP/USDT:USDT: 1h futures candles, 1h mark prices, 8h funding rates."""
    _needs_settlement(conn)
    futures = _rows("binance_XRP_USDT_USDT-1h-futures.csv")
    marks = _rows("binance_XRP_USDT_USDT-1h-mark.csv")
    rates = DATA_DIR / "binance_XRP_USDT_USDT-8h-funding_rate.csv"
    if not rates.exists():
        pytest.skip(f"{rates} is not here")
    lid = _perp(conn, "XRP/USDT:USDT", {"tick_size": "0.0001", "step_size": "0.1"})
    bars = {
        "times": np.array([r["time"].rstrip("Z") for r in futures], dtype="datetime64[m]"),
        **{k: np.array([float(r[k]) for r in futures]) for k in ("open", "high", "low", "close")},
        "volume": np.array([float(r["volume"] or 0) for r in futures]),
    }
    load(conn, lid, bars, "1h")
    settlement.ingest_funding_rates(conn, lid, rates)
    settlement.ingest_mark_prices(conn, lid, DATA_DIR / "binance_XRP_USDT_USDT-1h-mark.csv")
    # The range ends where the mark prices end (a later funding time could not be priced).
    start = utc(futures[0]["time"].rstrip("Z"))
    end = min(utc(marks[-1]["time"].rstrip("Z")), utc(futures[-1]["time"].rstrip("Z")))
    instruments = resolve_instruments(conn, ["XRPUSDT:USDT"], at=start)
    data, _ = load_market_data(conn, instruments, "1h", start, end, fee_rate=D("0.0004"))
    if not data.funding[0]:
        pytest.skip("the real files have no funding time inside the candles' range")
    sig = _signals(data.n_bars, short_entries=[0])
    result = run_event(data, sig, BacktestConfig(initial_capital=CAPITAL, allow_short=True))
    equity, _, amounts = _books_equity(conn, lid, data, result)
    assert result.funding_payments == len(amounts) > 0
    assert result.funding_paid == sum(amounts)
    assert result.final_value == equity
