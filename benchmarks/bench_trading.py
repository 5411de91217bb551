"""Trading core: fills per second through apply_fill (the whole pipeline: execution,
order, netting position, two hash-chained ledger rows, every integrity check) against
pgbench's TPC-B-like transactions per second, same server, same run, 1 and 4 clients.

Both are driven by pgbench, so the client (C, one round trip per transaction) is the
same and only the server-side work differs. The two alternate in short slices (ROUNDS of
SECONDS each) and the medians are compared, so a burst of other load on the machine hits
both sides alike. The fill workload mirrors TPC-B's contention:
all clients book into one account (one ledger chain, like TPC-B's single branch at scale
1), each client into its own listing and orders, half buys and half sells, so positions
keep crossing between adding and reducing.

Also: submit_order latency p50 / p99 from Python (psycopg, one round trip per call),
against pgbench's TPC-B average latency with 1 client.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from benchmarks.harness import Bench, Figure
from tradestore.db import migrate
from tradestore.db.connect import SEARCH_PATH

SECONDS = 4
ROUNDS = 3
CLIENTS = (1, 4)
SUBMITS = 2000

FILL_SCRIPT = """\
\\set side random(0, 1)
\\set qty random(1, 1000)
\\set px random(99000, 101000)
SELECT apply_fill(:base + (:client_id * 2) + :side, 'f' || nextval('bench_trade_ids'),
                  :qty * 0.001, :px * 0.01, 0.05);
"""


def _setup(db: str, clients: int) -> int:
    """One account, one listing per client, a BUY and a SELL order per client big enough
    never to fill. Returns the id the order ids of client 0 start from."""
    with psycopg.connect(
        db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
    ) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS public.bench_trade_ids")
        user = conn.execute(
            "INSERT INTO account.users (username, email, password_hash) VALUES ('bench', 'b@example.com', 'x') "
            "ON CONFLICT (username) DO UPDATE SET email = EXCLUDED.email RETURNING id"
        ).fetchone()[0]
        exchange = conn.execute(
            "INSERT INTO market.exchanges (code, name) VALUES ('bench', 'Bench') "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id"
        ).fetchone()[0]
        account = conn.execute(
            "INSERT INTO account.accounts (user_id, exchange_id, name) VALUES (%s, %s, %s) RETURNING id",
            (user, exchange, f"bench-{clients}-{time.time_ns()}"),
        ).fetchone()[0]
        conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 1000000000)", (account,))
        first_order = None
        for client in range(clients):
            symbol = f"B{client}-{time.time_ns() % 10**9}/USDT"
            instrument = conn.execute(
                "INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency) "
                "VALUES (%s, %s, 'CRYPTO', 'BASE', 'USDT') RETURNING id",
                (symbol, symbol),
            ).fetchone()[0]
            listing = conn.execute(
                "INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules) "
                'VALUES (%s, %s, %s, \'{"tick_size": "0.01", "step_size": "0.001", "min_notional": "5"}\') '
                "RETURNING id",
                (exchange, instrument, symbol),
            ).fetchone()[0]
            for side in ("BUY", "SELL"):
                order = conn.execute(
                    "SELECT submit_order(%s, %s, %s, 'LIMIT', 1000000000, 1000)",
                    (account, listing, side),
                ).fetchone()[0]
                first_order = first_order or order
        # pgbench's client_id counts from 0: client c uses orders base + 2c (BUY), base + 2c + 1 (SELL).
        return int(first_order)


def _tps(out: str) -> float:
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not match:
        raise RuntimeError(f"could not read tps from pgbench output:\n{out}")
    return float(match.group(1))


def _compare(bench: Bench, trading_db: str, pgbench_db: str, clients: int) -> tuple[float, float]:
    """Median fills/s and median TPC-B tps over alternating slices."""
    base = _setup(trading_db, clients)
    fills, tpcb = [], []
    jobs = ["-c", str(clients), "-j", str(clients), "-T", str(SECONDS)]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "fill.sql"
        script.write_text(FILL_SCRIPT)
        for _ in range(ROUNDS):
            tpcb.append(_tps(bench.pgbench(pgbench_db, "-n", *jobs)))
            fills.append(
                _tps(
                    bench.pgbench(trading_db, "-n", *jobs, "-f", str(script), "-D", f"base={base}")
                )
            )
    return statistics.median(fills), statistics.median(tpcb)


def _submit_latencies(db: str, count: int) -> list[float]:
    base = _setup(db, 1)
    with psycopg.connect(
        db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
    ) as conn:
        listing, account = conn.execute(
            "SELECT exchange_instrument_id, account_id FROM trade.orders WHERE id = %s", (base,)
        ).fetchone()
        timings = []
        for i in range(count):
            start = time.perf_counter()
            conn.execute(
                "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 0.5, 100.005, %s)",
                (account, listing, f"lat-{i}"),
            )
            timings.append((time.perf_counter() - start) * 1000)
    return timings


def _check_books(db: str) -> dict[str, object]:
    """The run's books must be intact: a benchmark that broke them would prove nothing."""
    with psycopg.connect(db) as conn:
        problems = conn.execute("SELECT count(*) FROM account.verify_ledger()").fetchone()[0]
        fills = conn.execute("SELECT count(*) FROM trade.executions").fetchone()[0]
        mismatched = conn.execute(
            "SELECT count(*) FROM trade.orders o WHERE filled_quantity <> "
            "coalesce((SELECT sum(quantity) FROM trade.executions e WHERE e.order_id = o.id), 0)"
        ).fetchone()[0]
    if problems or mismatched:
        raise RuntimeError(
            f"books broken after the benchmark: {problems} ledger problems, "
            f"{mismatched} orders disagree with their fills"
        )
    return {"fills_recorded": fills, "ledger_verified": True}


def run(bench: Bench) -> list[Figure]:
    trading_db = bench.create_database("bench_trading")
    pgbench_db = bench.create_database("bench_tpcb")
    figures: list[Figure] = []
    try:
        migrate.upgrade(trading_db)
        bench.pgbench(pgbench_db, "-i", "-q", "-s", "1")
        tpcb: dict[int, float] = {}
        for clients in CLIENTS:
            fills, tpcb[clients] = _compare(bench, trading_db, pgbench_db, clients)
            figures.append(
                Figure(
                    name=f"apply_fill, {clients} client(s)",
                    value=fills,
                    unit="fills/s",
                    anchor=f"pgbench TPC-B tps, {clients} client(s)",
                    anchor_value=tpcb[clients],
                    goal=1.0,
                    notes={
                        "seconds": SECONDS,
                        "rounds": ROUNDS,
                        "statistic": "median of alternating slices",
                        "driver": "pgbench -f (same client as the anchor)",
                    },
                )
            )
        notes = _check_books(trading_db)
        figures[-1].notes.update(notes)

        latencies = sorted(_submit_latencies(trading_db, SUBMITS))
        tpcb_latency_ms = 1000 / tpcb[1]
        quantiles = statistics.quantiles(latencies, n=100)
        for label, value in (("p50", quantiles[49]), ("p99", quantiles[98])):
            figures.append(
                Figure(
                    name=f"submit_order latency {label}",
                    value=value,
                    unit="ms",
                    anchor="pgbench TPC-B mean latency, 1 client",
                    anchor_value=tpcb_latency_ms,
                    higher_is_better=False,
                    notes={"calls": SUBMITS, "driver": "psycopg, one round trip per call"},
                )
            )
    finally:
        bench.drop_database(trading_db)
        bench.drop_database(pgbench_db)
    return figures
