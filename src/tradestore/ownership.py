"""Process ownership of the embedded servers (PostgreSQL, Redis): an exclusive
inter-process lock, re-entrant within its owner, and the owner record.

Both servers serialize start and stop with the lock, so two tradestore processes never
both start a server on one data directory; the owner record says which process stops it.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil


class ReentrantFileLock:
    """`with lock:` holds an exclusive flock on `path`; nested `with` in the same
    instance just counts. Closing the file descriptor releases the flock, so a process
    that dies holding it releases it too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> ReentrantFileLock:
        if self._depth == 0:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)
            self._fd = None


# Who owns a running embedded server: the process that started it records itself (pid
# and start time, so a reused pid is not mistaken for it), a token that tells instances
# within one process apart, and the server's pid.


def write_owner(path: Path, token: str, server_pid: int) -> int:
    """Record this process as the owner of the server `server_pid`; returns our pid."""
    me = psutil.Process()
    record = {
        "pid": me.pid,
        "create_time": me.create_time(),
        "token": token,
        "server_pid": server_pid,
    }
    tmp = path.with_suffix(f".tmp{me.pid}")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)  # atomic: a reader never sees half a record
    return me.pid


def read_owner(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def owner_alive(record: dict[str, Any]) -> bool:
    """Whether the process in an owner record still runs (same pid *and* start time)."""
    try:
        proc = psutil.Process(int(record["pid"]))
        return abs(proc.create_time() - float(record["create_time"])) < 0.01
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False
