#!/usr/bin/env python3
"""Bootstrap tradestore on a machine that has only Python 3.11+, then run it.

    python3 run.py up        # set up .venv, start the embedded database, migrate, run
    python3 run.py test      # set up .venv, lint, and run the whole test suite

`test` also runs the suite a second time against a separately started PostgreSQL reached
over TCP with password authentication when CI is set (or with --external). Any other
arguments are passed on: `python3 run.py tradestore db status`, `python3 run.py bench`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".tradestore-install-stamp"


def _say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def _install_hash() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Create .venv and install tradestore with its test extras, once per pyproject change."""
    if sys.version_info < (3, 11):  # noqa: UP036  (run.py may be started by an older python3)
        sys.exit(f"tradestore needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if STAMP.exists() and STAMP.read_text() == _install_hash():
        return
    if not (BIN / "python").exists():
        _say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    _say("installing tradestore and its dependencies (first run only)")
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(_install_hash())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_chromium() -> None:
    """CI only: Debian's chromium for the dashboard's browser test. Without it that test
    skips, so a failure here is reported, not fatal."""
    if Path("/usr/bin/chromium").exists() or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    _say("installing Debian's chromium for the browser test")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    ok = (
        subprocess.call(["apt-get", "update", "-qq"], env=env) == 0
        and subprocess.call(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env
        )
        == 0
    )
    if not ok:
        _say("could not install chromium; the browser test will be skipped")


def run_tests(args: list[str]) -> int:
    external = "--external" in args or os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if external:
        ensure_chromium()
    args = [a for a in args if a != "--external"]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    _say("ruff check")
    lint = [str(BIN / "ruff"), "check", "src", "tests", "benchmarks", "run.py"]
    if subprocess.call(lint, cwd=ROOT):
        return 1
    # A private temp root: pytest prunes all but the newest three of its shared
    # /tmp/pytest-of-<user>/ runs, which would delete a concurrent run's live data dirs.
    basetemp = Path(tempfile.mkdtemp(prefix="tradestore-pytest-"))
    try:
        _say("test suite against the embedded PostgreSQL")
        code = _pytest(args, env, basetemp / "embedded")
        if code or not external:
            return code
        _say("test suite against an external PostgreSQL over TCP with password authentication")
        return _against_external_server(args, env, basetemp / "external")
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


def _pytest(args: list[str], env: dict[str, str], basetemp: Path) -> int:
    command = [str(BIN / "python"), "-m", "pytest", f"--basetemp={basetemp}", *args]
    return subprocess.call(command, cwd=ROOT, env=env)


def _against_external_server(args: list[str], env: dict[str, str], basetemp: Path) -> int:
    data = Path(tempfile.mkdtemp(prefix="tradestore-external-pg-"))
    port, password = _free_port(), secrets.token_urlsafe(16)
    helper = [str(BIN / "python"), "-m", "tests.support.external_pg"]
    start = [
        *helper,
        "start",
        "--dir",
        str(data),
        "--port",
        str(port),
        "--user",
        "ci",
        "--password",
        password,
    ]
    started = subprocess.run(start, cwd=ROOT, check=True, capture_output=True, text=True)
    url = started.stdout.strip().splitlines()[-1]
    try:
        return _pytest(args, {**env, "DATABASE_URL": url}, basetemp)
    finally:
        subprocess.call([*helper, "stop", "--dir", str(data)], cwd=ROOT)
        shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "test":
        return run_tests(rest)
    if command == "bench":
        return subprocess.call([str(BIN / "python"), "-m", "benchmarks.run", *rest], cwd=ROOT)
    if command == "tradestore":
        command, rest = rest[0] if rest else "--help", rest[1:]
    os.execv(str(BIN / "tradestore"), [str(BIN / "tradestore"), command, *rest])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
