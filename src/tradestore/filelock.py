"""An exclusive inter-process lock on a file, re-entrant within its owner.

The embedded PostgreSQL and Redis servers serialize start and stop with it, so two
tradestore processes never both start a server on one data directory.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


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
