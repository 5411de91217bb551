"""The system.logs handler: batched, non-blocking, carries request_id."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator

import psycopg
import pytest

from tradestore.ops.context import request_id_var
from tradestore.ops.log_handler import DatabaseLogHandler, install_database_logging, level_name


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"tradestore.test.{threading.get_ident()}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_records_land_in_system_logs_with_request_id(
    db: str, conn: psycopg.Connection, logger: logging.Logger
) -> None:
    handler = install_database_logging(db, logger=logger, level=logging.DEBUG, flush_interval=0.05)
    token = request_id_var.set("req-from-context")
    try:
        logger.info("hello %s", "world")
    finally:
        request_id_var.reset(token)
    logger.warning("explicit", extra={"request_id": "req-explicit", "user_id": 7})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    logger.debug("quiet")
    assert handler.flush()
    rows = conn.execute(
        "SELECT log_level, logger, message, request_id, user_id, stack_trace FROM system.logs ORDER BY log_id"
    ).fetchall()
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("INFO", "hello world", "req-from-context", None),
        ("WARN", "explicit", "req-explicit", "7"),
        ("ERROR", "it failed", None, None),
        ("DEBUG", "quiet", None, None),
    ]
    assert {r[1] for r in rows} == {logger.name}
    assert "ValueError: boom" in rows[2][5]
    # seed 001's name for the table serves the same rows
    assert conn.execute("SELECT count(*) FROM system.system_logs").fetchone()[0] == 4


def test_many_records_are_written_in_batches(
    db: str, conn: psycopg.Connection, logger: logging.Logger
) -> None:
    handler = DatabaseLogHandler(db, batch_size=100, flush_interval=0.05, max_queue=100_000)
    logger.addHandler(handler)
    for i in range(2500):
        logger.info("line %d", i)
    assert handler.flush(timeout=60)
    assert conn.execute("SELECT count(*), count(DISTINCT message) FROM system.logs").fetchone() == (
        2500,
        2500,
    )
    assert handler.written == 2500 and handler.dropped_total == 0


def test_emit_never_waits_for_an_unreachable_database(logger: logging.Logger, tmp_path) -> None:
    # Nothing listens on this socket directory: every write attempt fails.
    handler = DatabaseLogHandler(
        f"host={tmp_path} port=1 dbname=none connect_timeout=1", max_queue=50, flush_interval=0.01
    )
    logger.addHandler(handler)
    for i in range(1000):
        logger.error("record %d", i)  # returns at once: queued or dropped, never blocked
    # dropped_total: the writer thread resets `dropped` whenever it reports the drops.
    assert handler.dropped_total > 0
    assert not handler.flush(timeout=0.2)
    logger.removeHandler(handler)
    handler.close(timeout=0.5)  # gives up on the unwritable rows instead of hanging


def test_a_day_without_a_partition_is_created_on_demand(
    db: str, conn: psycopg.Connection, logger: logging.Logger
) -> None:
    handler = DatabaseLogHandler(db, flush_interval=0.05)
    logger.addHandler(handler)
    old = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "from last year", (), None)
    old.created = (dt.datetime.now(dt.UTC) - dt.timedelta(days=400)).timestamp()
    logger.handle(old)
    assert handler.flush()
    assert conn.execute("SELECT message FROM system.logs").fetchall() == [("from last year",)]


def test_nul_characters_are_stored(
    db: str, conn: psycopg.Connection, logger: logging.Logger
) -> None:
    handler = DatabaseLogHandler(db, flush_interval=0.05)
    logger.addHandler(handler)
    logger.info("a\x00b")
    assert handler.flush()
    assert conn.execute("SELECT message FROM system.logs").fetchone() == ("a\ufffdb",)


@pytest.mark.parametrize(
    ("levelno", "name"),
    [
        (5, "DEBUG"),
        (10, "DEBUG"),
        (20, "INFO"),
        (25, "INFO"),
        (30, "WARN"),
        (40, "ERROR"),
        (50, "FATAL"),
    ],
)
def test_level_names(levelno: int, name: str) -> None:
    assert level_name(levelno) == name
