"""Foundation figures.

- migrate: time to take an empty database to the full schema with every available Plus
  module through Alembic, against replaying the same schema with psql from a
  `pg_dump --schema-only` of the result (the floor: the same DDL without Alembic).
- pgbench: the built-in TPC-B-like run on the same embedded server, 1 and 4 clients; it is
  the anchor of the trading-core benchmark.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from benchmarks.harness import Bench, Figure, timed
from tradestore.db import migrate

MODULES = [m for m in migrate.MODULES if m != "timeseries"]
ROUNDS = 5
PGBENCH_SECONDS = 10


def _migrate_once(bench: Bench) -> tuple[float, str]:
    db = bench.create_database("bench_migrate")
    seconds = timed(lambda: (migrate.upgrade(db), migrate.enable_modules(db, MODULES)))
    return seconds, db


def _psql_replay(bench: Bench, dump: Path) -> float:
    db = bench.create_database("bench_replay")
    params = conninfo_to_dict(db)
    cmd = [
        str(bench.server.bin("psql")),
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(params["host"]),
        "-U",
        str(params.get("user", "postgres")),
        "-d",
        str(params["dbname"]),
        "-f",
        str(dump),
    ]
    if params.get("port"):
        cmd[1:1] = ["-p", str(params["port"])]
    try:
        return timed(lambda: subprocess.run(cmd, check=True, capture_output=True))
    finally:
        bench.drop_database(db)


def run(bench: Bench) -> list[Figure]:
    migrate_times, replay_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "schema.sql"
        for _ in range(ROUNDS):
            seconds, db = _migrate_once(bench)
            migrate_times.append(seconds)
            if not dump.exists():
                params = conninfo_to_dict(db)
                cmd = [
                    str(bench.server.bin("pg_dump")),
                    "--schema-only",
                    "-h",
                    str(params["host"]),
                    "-U",
                    str(params.get("user", "postgres")),
                    "-f",
                    str(dump),
                    str(params["dbname"]),
                ]
                if params.get("port"):
                    cmd[1:1] = ["-p", str(params["port"])]
                subprocess.run(cmd, check=True, capture_output=True)
            bench.drop_database(db)
            replay_times.append(_psql_replay(bench, dump))
    figures = [
        Figure(
            "migrate_empty_to_full_schema",
            statistics.median(migrate_times) * 1000,
            "ms",
            anchor="psql replay of the pg_dump schema",
            anchor_value=statistics.median(replay_times) * 1000,
            higher_is_better=False,
            notes={"rounds": ROUNDS, "modules": MODULES},
        ),
    ]
    pg = bench.create_database("bench_pgbench")
    try:
        for clients in (1, 4):
            tps = bench.pgbench_tps(pg, clients=clients, seconds=PGBENCH_SECONDS)
            figures.append(
                Figure(
                    f"pgbench_tpcb_c{clients}",
                    tps,
                    "tps",
                    notes={"clients": clients, "seconds": PGBENCH_SECONDS, "scale": 1},
                )
            )
    finally:
        bench.drop_database(pg)
    return figures
