"""Trading core: fills per second through apply_fill (the whole pipeline: execution,
order, netting position, two hash-chained ledger rows, every integrity check), same
server, same run, 1 and 4 clients, against two anchors:

- the cost of integrity: a pgbench script doing the same logical writes as plain SQL
  (execution insert, order update, position upsert, two ledger inserts, in one statement
  and one round trip like apply_fill, prepared as apply_fill's statements are) into copies of those tables in a scratch schema
  (`bench_plain`: same columns, types, defaults and indexes; no CHECKs, triggers, foreign
  keys or hash chain), same clients;
- pgbench's TPC-B-like transactions per second, a yardstick only: a fill does more
  durable work than a TPC-B transaction. The ratio is expected to stay within 10% of
  0.68x at 1 client and 0.58x at 4.

All three are driven by pgbench, so the client (C) is the same and only the server-side
work differs. They alternate in short slices (ROUNDS of SECONDS each) and the medians are
compared, so a burst of other load on the machine hits every side alike. The fill
workload mirrors TPC-B's contention:
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
# apply_fill / TPC-B ratios the trading core is held to (within EXPECTED_TOLERANCE).
TPCB_EXPECTED = {1: 0.68, 4: 0.58}
SUBMITS = 2000

FILL_SCRIPT = """\
\\set side random(0, 1)
\\set qty random(1, 1000)
\\set px random(99000, 101000)
SELECT apply_fill(:base + (:client_id * 2) + :side, 'f' || nextval('bench_trade_ids'),
                  :qty * 0.001, :px * 0.01, 0.05);
"""


# The same writes as apply_fill, unchecked: the order read for its account and listing,
# then one statement inserting the execution, updating the order, upserting the position
# and inserting the TRADE and FEE ledger rows.
PLAIN_SCRIPT = """\
\\set side random(0, 1)
\\set qty random(1, 1000)
\\set px random(99000, 101000)
WITH f AS (
    SELECT nextval('bench_plain.fill_ids') AS exec_id, o.id AS order_id, o.account_id,
           o.exchange_instrument_id AS listing, o.side, :qty * 0.001 AS qty, :px * 0.01 AS px,
           (1 - 2 * :side) * :qty * 0.001 AS signed_qty, 0.05 AS fee
      FROM bench_plain.orders o WHERE o.id = :base + (:client_id * 2) + :side
), e AS (
    INSERT INTO bench_plain.executions (id, order_id, account_id, exchange_id,
        exchange_instrument_id, exchange_trade_id, side, quantity, price, fee, fee_currency,
        net_amount, executed_at)
    SELECT exec_id, order_id, account_id, :exchange, listing, 'p' || exec_id, side, qty, px,
           fee, 'USDT', -signed_qty * px - fee, now() FROM f
), p AS (
    INSERT INTO bench_plain.positions AS pos (account_id, exchange_instrument_id, quantity,
        avg_entry_price, total_fees, opened_at, last_execution_id, last_executed_at,
        last_exchange_trade_id)
    SELECT account_id, listing, signed_qty, px, fee, now(), exec_id, now(), 'p' || exec_id FROM f
    ON CONFLICT (account_id, exchange_instrument_id) DO UPDATE
       SET quantity = pos.quantity + excluded.quantity,
           avg_entry_price = CASE WHEN pos.quantity + excluded.quantity = 0 THEN 0
                                  ELSE excluded.avg_entry_price END,
           total_fees = pos.total_fees + excluded.total_fees,
           last_execution_id = excluded.last_execution_id,
           last_executed_at = excluded.last_executed_at,
           last_exchange_trade_id = excluded.last_exchange_trade_id,
           updated_at = now()
    RETURNING pos.id
), o AS (
    UPDATE bench_plain.orders ord
       SET filled_quantity = ord.filled_quantity + f.qty,
           total_filled_value = ord.total_filled_value + f.qty * f.px,
           average_fill_price = (ord.total_filled_value + f.qty * f.px)
                                / (ord.filled_quantity + f.qty),
           status = 'PARTIALLY_FILLED', fee = ord.fee + f.fee, fee_currency = 'USDT',
           holding_id = coalesce(ord.holding_id, (SELECT id FROM p)),
           last_execution_id = f.exec_id, updated_at = now()
      FROM f WHERE ord.id = f.order_id
)
INSERT INTO bench_plain.transactions (account_id, transaction_type, currency, amount,
    related_order_id, related_execution_id, related_position_id, description, "timestamp")
SELECT f.account_id, x.kind, 'USDT', x.amount, f.order_id, f.exec_id, p.id, x.description, now()
  FROM f, p, LATERAL (VALUES ('TRADE', -f.signed_qty * f.px, format('%s %s @ %s', f.side, f.qty, f.px)),
                             ('FEE', -f.fee, 'fee')) AS x(kind, amount, description);
"""

# Tables apply_fill writes, copied into bench_plain without what enforces the rules.
PLAIN_TABLES = ("trade.orders", "trade.executions", "trade.positions", "account.transactions")


def _setup_plain(db: str) -> None:
    """bench_plain: the tables apply_fill writes, with their columns, types, defaults,
    generated columns and indexes (LIKE copies no foreign keys or triggers, and CHECKs only
    when asked), and without the ledger's hash-chain columns."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_plain CASCADE")
        conn.execute("CREATE SCHEMA bench_plain")
        conn.execute("CREATE SEQUENCE bench_plain.fill_ids")
        for table in PLAIN_TABLES:
            name = table.split(".")[1]
            conn.execute(
                f"CREATE TABLE bench_plain.{name} (LIKE {table} INCLUDING DEFAULTS "
                "INCLUDING GENERATED INCLUDING IDENTITY INCLUDING INDEXES)"
            )
        conn.execute(
            "ALTER TABLE bench_plain.transactions "
            "DROP COLUMN chain_seq, DROP COLUMN prev_hash, DROP COLUMN row_hash"
        )
        checks, triggers = conn.execute(
            "SELECT (SELECT count(*) FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
            "        JOIN pg_namespace n ON n.oid = r.relnamespace "
            "        WHERE n.nspname = 'bench_plain' AND c.contype IN ('c', 'f', 't')), "
            "(SELECT count(*) FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid "
            " JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = 'bench_plain')"
        ).fetchone()
        assert (checks, triggers) == (0, 0), (checks, triggers)


def _copy_orders_to_plain(db: str, base: int, clients: int) -> int:
    """The run's orders, same ids, into bench_plain.orders; returns their exchange's id."""
    with psycopg.connect(db, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
            "WHERE attrelid = 'trade.orders'::regclass AND attnum > 0 AND NOT attisdropped "
            "AND attgenerated = ''"
        ).fetchone()[0]
        conn.execute(
            f"INSERT INTO bench_plain.orders ({columns}) SELECT {columns} FROM trade.orders "
            "WHERE id BETWEEN %s AND %s",
            (base, base + 2 * clients - 1),
        )
        return conn.execute(
            "SELECT ei.exchange_id FROM trade.orders o "
            "JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id "
            "WHERE o.id = %s",
            (base,),
        ).fetchone()[0]


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
        # Spot orders hold their funds (a BUY the quote, a SELL the base) and are held to the
        # owner's risk limits: fund both sides of every resting order, and let one order be
        # the whole account (the benchmark measures fills, not the limits).
        conn.execute(
            "UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100, "
            "max_positions = 1000 WHERE id = %s",
            (user,),
        )
        conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 1e14)", (account,))
        conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'BASE', 1e11)", (account,))
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


def _compare(
    bench: Bench, trading_db: str, pgbench_db: str, clients: int
) -> tuple[float, float, float]:
    """Median fills/s, median plain-SQL fills/s and median TPC-B tps over alternating
    slices."""
    base = _setup(trading_db, clients)
    exchange = _copy_orders_to_plain(trading_db, base, clients)
    fills, plain, tpcb = [], [], []
    jobs = ["-c", str(clients), "-j", str(clients), "-T", str(SECONDS)]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "fill.sql"
        script.write_text(FILL_SCRIPT)
        plain_script = Path(tmp) / "plain.sql"
        plain_script.write_text(PLAIN_SCRIPT)
        for _ in range(ROUNDS):
            tpcb.append(_tps(bench.pgbench(pgbench_db, "-n", *jobs)))
            plain.append(
                _tps(
                    bench.pgbench(
                        trading_db,
                        "-n",
                        *jobs,
                        # Prepared: planned once, as apply_fill's own statements are.
                        "-M",
                        "prepared",
                        "-f",
                        str(plain_script),
                        "-D",
                        f"base={base}",
                        "-D",
                        f"exchange={exchange}",
                    )
                )
            )
            fills.append(
                _tps(
                    bench.pgbench(trading_db, "-n", *jobs, "-f", str(script), "-D", f"base={base}")
                )
            )
    return statistics.median(fills), statistics.median(plain), statistics.median(tpcb)


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
        plain_fills, plain_ledger = conn.execute(
            "SELECT (SELECT count(*) FROM bench_plain.executions), "
            "(SELECT count(*) FROM bench_plain.transactions)"
        ).fetchone()
    if problems or mismatched:
        raise RuntimeError(
            f"books broken after the benchmark: {problems} ledger problems, "
            f"{mismatched} orders disagree with their fills"
        )
    if not plain_fills or plain_ledger != 2 * plain_fills:
        raise RuntimeError(
            f"the plain-SQL anchor did not do its writes: {plain_fills} executions, "
            f"{plain_ledger} ledger rows"
        )
    return {"fills_recorded": fills, "ledger_verified": True, "plain_fills_recorded": plain_fills}


def run(bench: Bench) -> list[Figure]:
    trading_db = bench.create_database("bench_trading")
    pgbench_db = bench.create_database("bench_tpcb")
    figures: list[Figure] = []
    try:
        migrate.upgrade(trading_db)
        _setup_plain(trading_db)
        bench.pgbench(pgbench_db, "-i", "-q", "-s", "1")
        tpcb: dict[int, float] = {}
        notes = {
            "seconds": SECONDS,
            "rounds": ROUNDS,
            "statistic": "median of alternating slices",
            "driver": "pgbench -f (same client as the anchors)",
        }
        for clients in CLIENTS:
            fills, plain, tpcb[clients] = _compare(bench, trading_db, pgbench_db, clients)
            figures.append(
                Figure(
                    name=f"apply_fill vs plain SQL, {clients} client(s)",
                    value=fills,
                    unit="fills/s",
                    anchor=f"the same writes as plain SQL, {clients} client(s)",
                    anchor_value=plain,
                    notes=dict(notes),
                )
            )
            figures.append(
                Figure(
                    name=f"apply_fill vs TPC-B, {clients} client(s)",
                    value=fills,
                    unit="fills/s",
                    anchor=f"pgbench TPC-B tps, {clients} client(s)",
                    anchor_value=tpcb[clients],
                    expected=TPCB_EXPECTED[clients],
                    notes=dict(notes),
                )
            )
        books = _check_books(trading_db)
        figures[-2].notes.update(books)

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
