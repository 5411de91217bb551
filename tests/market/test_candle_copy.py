"""Candle ingest's fast path (tradestore.market.candle_copy): a plainly good batch is
binary-COPYed straight into market.candles with exactly the numbers its text says; any
batch the database might refuse goes through the staged merge, with the same result."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg
import pytest

from tests.market.helpers import bars, make_listing, stored
from tradestore.market import ingest
from tradestore.market.candle_copy import plain_batch
from tradestore.market.ingest import ingest_candles
from tradestore.market.readers import read_batch

MINUTE_US = 60_000_000

# Texts the encoder must carry exactly: display scale, long fractions, large integers,
# leading and trailing zeros, every digit-group boundary.
EXACT = [
    "0.10",
    "100",
    "0.00000001",
    "1234.5678",
    "12345.6789",
    "9999.9999",
    "10000.0001",
    "007.500",
    "0.000000000000001",
    "5",
    ".5",
    "1.",
    "+2.50",
    "999999999999.999",
]


def _bar(i: int, price: str, **extra: str) -> dict[str, Any]:
    t = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
    return {"time": t.isoformat(), "open": price, "high": price, "low": price, "close": price,
            "volume": price, **extra}  # fmt: skip


def _texts(conn: psycopg.Connection, listing: int) -> list[tuple[str, ...]]:
    return conn.execute(
        """SELECT open::text, high::text, low::text, close::text, volume::text,
                  vwap::text, trade_count::text
             FROM market.candles WHERE exchange_instrument_id = %s ORDER BY "time" """,
        (listing,),
    ).fetchall()


def test_fast_path_stores_the_exact_decimal_of_every_text(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    report = ingest_candles(conn, [_bar(i, p) for i, p in enumerate(EXACT)], listing_id=listing)
    assert report.method == "copy"
    assert (report.inserted, report.rejected) == (len(EXACT), [])
    # Exactly what PostgreSQL's own parser makes of the text (value and display scale).
    want = [
        conn.execute("SELECT %s::numeric::text", (p,)).fetchone()[0]  # type: ignore[index]
        for p in EXACT
    ]
    assert [row[0] for row in _texts(conn, listing)] == want
    assert [row[4] for row in _texts(conn, listing)] == want


def test_fast_path_and_staged_merge_store_identical_rows(conn: psycopg.Connection) -> None:
    rows = bars(500)
    for i, row in enumerate(rows):
        row["vwap"] = row["close"]
        row["trade_count"] = str(i * 7)
    fast, slow = make_listing(conn, "AAA/USD"), make_listing(conn, "BBB/USD")
    a = ingest_candles(conn, rows, listing_id=fast)
    # An exponent is not a plain decimal: the same bars, one written as 1.5e2, go staged.
    original = rows[0]["volume"]
    rows[0]["volume"] = "1.5e2"
    b = ingest_candles(conn, rows, listing_id=slow)
    assert (a.method, b.method) == ("copy", "merge")
    assert (a.inserted, b.inserted) == (500, 500)
    got, want = _texts(conn, fast), _texts(conn, slow)
    assert got[1:] == want[1:]
    assert (got[0][4], want[0][4]) == (str(Decimal(original)), "150")
    assert (got[0][:4], got[0][5:]) == (want[0][:4], want[0][5:])
    series = conn.execute(
        "SELECT exchange_instrument_id, first_time, last_time FROM market.candle_series "
        "WHERE exchange_instrument_id IN (%s, %s) ORDER BY 1",
        (fast, slow),
    ).fetchall()
    assert series[0][1:] == series[1][1:]


def test_a_refused_copy_is_undone_and_the_batch_merged_instead(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session may write bars into the span between the check and the COPY. Here
    the check is made to miss the stored bars: the COPY hits the primary key, the
    savepoint undoes it, and the staged merge counts the stored bars as unchanged."""
    listing = make_listing(conn)
    rows = bars(10)
    assert ingest_candles(conn, rows[:4], listing_id=listing).method == "copy"
    monkeypatch.setattr(ingest, "span_has_bars", lambda *args: False)
    report = ingest_candles(conn, rows, listing_id=listing)
    assert (report.method, report.inserted, report.unchanged, report.rejected) == (
        "merge",
        6,
        4,
        [],
    )
    assert len(stored(conn, listing)) == 10


def test_float_comparisons_are_exact_on_the_fast_paths_domain() -> None:
    """Decimals whose digits form an integer below 2**50 keep their order as doubles, so
    the comparisons that route a batch cannot misjudge a near-tie there; longer texts go
    staged, where PostgreSQL compares NUMERICs."""
    rows = [_bar(i, "1000000") for i in range(3)]
    rows[1].update(open="1000000.00000002", high="1000000.00000001")  # 15 digits, high < open
    assert plain_batch(read_batch(rows, "candles").frame, MINUTE_US) is None
    rows[1].update(open="1000000.000000002", high="1000000.000000001")  # 16, below 2**50
    assert plain_batch(read_batch(rows, "candles").frame, MINUTE_US) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"open": "-1"}, "a sign"),
        ({"open": " 1"}, "a space"),
        ({"volume": "NaN"}, "not a number"),
        ({"volume": "1.5e2"}, "an exponent"),
        ({"volume": "-0.5"}, "a negative volume"),
        ({"high": "Infinity"}, "not finite"),
        ({"close": "1.0000000000000001"}, "more fraction digits than kept exact"),
        ({"close": "12345678901234567"}, "more digits than kept exact"),
        ({"low": "0"}, "a price that is not positive"),
        ({"high": "0.5"}, "high below open"),
        ({"vwap": "1"}, "vwap in some rows only"),
        ({"time": "2024-01-01T00:00:30+00:00"}, "off the 1m grid"),
    ],
)
def test_batches_that_might_break_a_rule_take_the_staged_path(
    conn: psycopg.Connection, change: dict[str, str], why: str
) -> None:
    rows = [_bar(i, "1") for i in range(3)]
    rows[1].update(change)
    frame = read_batch(rows, "candles").frame
    assert plain_batch(frame, MINUTE_US) is None, why


def test_duplicate_times_take_the_staged_path_and_are_reported(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    rows = [_bar(0, "1"), _bar(1, "2"), _bar(1, "3")]
    report = ingest_candles(conn, rows, listing_id=listing)
    assert report.method == "merge"
    assert [(r.line, r.field) for r in report.rejected] == [(2, "time"), (3, "time")]


def test_stored_bars_in_the_span_take_the_staged_path(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    rows = bars(10)
    assert ingest_candles(conn, rows[:5], listing_id=listing).method == "copy"
    again = ingest_candles(conn, rows[3:], listing_id=listing)  # overlaps bars 3 and 4
    assert (again.method, again.inserted, again.unchanged) == ("merge", 5, 2)
    assert ingest_candles(conn, bars(3, start=dt.datetime(2024, 2, 1, tzinfo=dt.UTC)),
                          listing_id=listing).method == "copy"  # fmt: skip


def test_an_unknown_listing_still_gets_the_named_error(conn: psycopg.Connection) -> None:
    from tradestore.db.errors import ValidationError

    with pytest.raises(ValidationError, match="exchange_instrument_id"):
        ingest_candles(conn, bars(3), listing_id=987_654)
    assert stored(conn, 987_654) == []


def test_a_bad_timeframe_is_refused_for_every_client(conn: psycopg.Connection) -> None:
    """The rule that was CHECK chk_candles_timeframe now runs once per series in the
    statement trigger; a psql INSERT is held to it all the same."""
    listing = make_listing(conn)
    conn.execute(
        "SELECT market.ensure_partitions_for('market.candles', ARRAY['2024-01-01'::timestamptz])"
    )
    with (
        pytest.raises(psycopg.errors.CheckViolation, match="timeframe: must be a count") as err,
        conn.transaction(),
    ):
        conn.execute(
            "INSERT INTO market.candles (exchange_instrument_id, timeframe, time, open, high, "
            "low, close, volume) VALUES (%s, '1minute', '2024-01-01', 1, 1, 1, 1, 1)",
            (listing,),
        )
    assert err.value.diag.column_name == "timeframe"
    assert stored(conn, listing) == []


def test_polars_frame_with_counts_and_vwap(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    frame = pl.DataFrame(
        {
            "time": [dt.datetime(2024, 1, 1, 0, m, tzinfo=dt.UTC) for m in range(3)],
            "open": ["10", "11", "12"],
            "high": ["12", "13", "14"],
            "low": ["9", "10", "11"],
            "close": ["11", "12", "13"],
            "volume": ["1.5", "2.5", "0"],
            "vwap": ["10.5", "11.5", "12.5"],
            "trade_count": ["3", "0", "2147483647"[:9]],
        }
    )
    report = ingest_candles(conn, frame, listing_id=listing)
    assert report.method == "copy"
    assert _texts(conn, listing) == [
        ("10", "12", "9", "11", "1.5", "10.5", "3"),
        ("11", "13", "10", "12", "2.5", "11.5", "0"),
        ("12", "14", "11", "13", "0", "12.5", "214748364"),
    ]
    assert stored(conn, listing)[0][1] == Decimal("10")


def test_a_bad_row_in_a_later_slice_abandons_the_copy_for_the_merge(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slices are checked while the COPY runs: the first slices are already sent when a
    later one turns out to need the merge. The savepoint drops them; the merge writes the
    good rows once and reports the bad one."""
    from tradestore.market import candle_copy

    monkeypatch.setattr(candle_copy, "_SLICE", 10)
    listing = make_listing(conn)
    rows = bars(35)
    rows[25]["low"] = "-1"
    seen: list[tuple[int, int]] = []
    report = ingest_candles(conn, rows, listing_id=listing, progress=lambda *p: seen.append(p))
    assert (report.method, report.inserted) == ("merge", 34)
    [bad] = report.rejected
    assert (bad.line, bad.field) == (26, "low")
    assert len(stored(conn, listing)) == 34
    assert seen[:2] == [(10, 35), (20, 35)] and seen[-1] == (35, 35)
