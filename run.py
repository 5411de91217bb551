#!/usr/bin/env python3
"""Bootstrap tradestore on a machine that has only Python 3.11+, then run it.

    python3 run.py up        # set up .venv (core only), start the embedded database, migrate, run
    python3 run.py test      # set up .venv with the test extras, lint, and run the whole test suite

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
# Each install target records the pyproject it installed, so `test` after `up` adds the
# extras `up` left out, and neither reinstalls until pyproject.toml changes.
TARGETS = {"core": str(ROOT), "test": f"{ROOT}[test]"}
# A target counts as installed when it or a target that includes it is.
INCLUDED_BY = {"core": ("core", "test"), "test": ("test",)}


def _say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def _install_hash() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def _stamp(target: str) -> Path:
    return VENV / f".tradestore-install-{target}"


def _installed(target: str) -> bool:
    current = _install_hash()
    return any(_stamp(t).exists() and _stamp(t).read_text() == current for t in INCLUDED_BY[target])


def ensure_venv(target: str) -> None:
    """Create .venv and install tradestore for `target` (core: what `up` uses; test: the
    extras and test tools too), once per pyproject change."""
    if sys.version_info < (3, 11):  # noqa: UP036  (run.py may be started by an older python3)
        sys.exit(f"tradestore needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if _installed(target):
        return
    if not (BIN / "python").exists():
        _say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    _say(f"installing tradestore ({target}) and its dependencies")
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", TARGETS[target]], check=True)
    _stamp(target).write_text(_install_hash())


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


def static_checks() -> list[tuple[str, list[str]]]:
    """What runs before the suite, in order; the first failure stops `test`."""
    paths = ["src", "tests", "benchmarks", "run.py"]
    ruff = str(BIN / "ruff")
    return [
        ("ruff check", [ruff, "check", *paths]),
        ("ruff format --check", [ruff, "format", "--check", *paths]),
        # Settings in pyproject.toml [tool.mypy]: strict over src/tradestore.
        ("mypy", [str(BIN / "mypy")]),
    ]


def run_tests(args: list[str]) -> int:
    external = "--external" in args or os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if external:
        ensure_chromium()
    args = [a for a in args if a != "--external"]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    for name, command in static_checks():
        _say(name)
        if subprocess.call(command, cwd=ROOT):
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
    command = [str(BIN / "python"), "-u", "-m", "pytest", f"--basetemp={basetemp}", *args]
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
    command, rest = argv[0], argv[1:]
    # The tests and the benchmarks compare against the extras' libraries; the rest is `up`.
    ensure_venv("test" if command in ("test", "bench") else "core")
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
