"""A logging handler that writes application logs to system.logs (seed 004) in batches.

`emit` never waits for the database: it turns the record into a row in the caller's
thread (so the request_id in effect is the caller's) and puts it on a bounded queue. A
background thread drains the queue with COPY, one batch per `batch_size` rows or
`flush_interval` seconds. When the queue is full the record is dropped and counted, and
the count is logged once the writer catches up: a slow or absent database slows nothing
down. While the database is unreachable the writer retries with a backoff, keeping up to
`max_queue` rows.

    handler = install_database_logging(conninfo)      # on the root logger
    log.info("order placed", extra={"request_id": "abc"})   # or set request_id_var
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import sys
import threading
import time
import traceback
from typing import Any

import psycopg
from psycopg import errors

from tradestore.config import Settings
from tradestore.db.connect import connect
from tradestore.ops.context import request_id_var, user_id_var

__all__ = ["DatabaseLogHandler", "install_database_logging", "level_name"]

_COLUMNS = "(log_level, logger, message, stack_trace, request_id, user_id, created_at)"
_COPY = f"COPY system.logs {_COLUMNS} FROM STDIN"
Row = tuple[str, str, str, str | None, str | None, str | None, dt.datetime]


def level_name(levelno: int) -> str:
    """Python level -> system.logs.log_level (DEBUG, INFO, WARN, ERROR, FATAL)."""
    if levelno >= logging.CRITICAL:
        return "FATAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def _clean(text: str | None, limit: int | None = None) -> str | None:
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
    return text[:limit] if limit else text


class _Flush:
    """A marker on the queue: set once every row queued before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class DatabaseLogHandler(logging.Handler):
    def __init__(
        self,
        conninfo: str,
        settings: Settings | None = None,
        *,
        level: int = logging.INFO,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
    ) -> None:
        super().__init__(level)
        self.conninfo = conninfo
        self.settings = settings
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.dropped = 0  # since the writer last logged a "records dropped" warning
        self.dropped_total = 0  # since the handler started (dropped is reset as it is reported)
        self.written = 0
        self._queue: queue.Queue[Row | _Flush | None] = queue.Queue(max_queue)
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tradestore-dblog", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side
    def emit(self, record: logging.LogRecord) -> None:
        if self._closed or threading.current_thread() is self._thread:
            return  # the writer's own logging (psycopg) would feed back into itself
        try:
            row = self._row(record)
        except Exception:
            self.handleError(record)
            return
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            self.dropped_total += 1

    def _row(self, record: logging.LogRecord) -> Row:
        stack = None
        if record.exc_info:
            stack = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            stack = record.exc_text
        if record.stack_info:
            stack = f"{stack}\n{record.stack_info}" if stack else record.stack_info
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        user_id = getattr(record, "user_id", None) or user_id_var.get()
        return (
            level_name(record.levelno),
            _clean(record.name, 100) or "",
            _clean(record.getMessage()) or "",
            _clean(stack),
            _clean(None if request_id is None else str(request_id), 50),
            _clean(None if user_id is None else str(user_id), 50),
            dt.datetime.fromtimestamp(record.created, dt.UTC),
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record emitted so far is written (True) or timeout (False)."""
        if self._closed or not self._thread.is_alive():
            return self._queue.empty()
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (waiting up to `timeout`), then stop the writer."""
        if not self._closed:
            self.flush(timeout)
            self._closed = True
            self._stop.set()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout)
        super().close()

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        pending: list[Row] = []
        markers: list[_Flush] = []
        backoff = 0.5
        stopping = False
        while not (stopping and not pending):
            deadline = time.monotonic() + self.flush_interval
            stopping = stopping or self._stop.is_set()
            while len(pending) < self.batch_size and not stopping and not markers:
                try:
                    item = self._queue.get(
                        timeout=max(deadline - time.monotonic(), 0.001)
                        if pending
                        else self.flush_interval
                    )
                except queue.Empty:
                    if pending:
                        break
                    continue
                if item is None:
                    stopping = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    pending.append(item)
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                pending.append(
                    (
                        "WARN",
                        __name__,
                        f"{dropped} log record(s) dropped: the log queue was full",
                        None,
                        None,
                        None,
                        dt.datetime.now(dt.UTC),
                    )
                )
            if pending:
                try:
                    self._write(pending)
                    self.written += len(pending)
                    pending = []
                    backoff = 0.5
                except psycopg.Error as exc:
                    self._disconnect()
                    print(
                        f"tradestore: cannot write logs to the database ({exc}); retrying",
                        file=sys.stderr,
                    )
                    if stopping:
                        break
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    # Keep the newest rows within the queue's bound.
                    pending = pending[-self._queue.maxsize :]
                    if markers:
                        continue
            for marker in markers:
                marker.done.set()
            markers = []
        for marker in markers:
            marker.done.set()
        self._disconnect()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.conninfo, self.settings, application_name="tradestore-log", autocommit=True
            )
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _write(self, rows: list[Row]) -> None:
        conn = self._connection()
        try:
            self._copy(conn, rows)
        except errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            # A record from a day with no partition yet (the logs table is partitioned
            # by day and has no DEFAULT partition): make the partitions and write again.
            times = [r[6] for r in rows]
            conn.execute(
                "SELECT system.ensure_partitions('system.logs'::regclass, %s, %s)",
                (min(times), max(times) + dt.timedelta(days=1)),
            )
            self._copy(conn, rows)

    def _copy(self, conn: psycopg.Connection[Any], rows: list[Row]) -> None:
        with conn.cursor() as cur, cur.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)


def install_database_logging(
    conninfo: str,
    settings: Settings | None = None,
    logger: logging.Logger | None = None,
    level: int = logging.INFO,
    **kw: Any,
) -> DatabaseLogHandler:
    """Attach a DatabaseLogHandler to `logger` (the root logger by default)."""
    handler = DatabaseLogHandler(conninfo, settings, level=level, **kw)
    target = logger or logging.getLogger()
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    return handler
