"""Child process for tests/db/test_server.py: owns or attaches to an embedded server.

    python -m tests.support.server_child HOME [--go FILE] [--signals]

Prints one JSON line {"pid", "owned", "postmaster", "conninfo"} once started, then waits for
EOF on stdin and stops the server (if it owns it) on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tradestore.db.server import EmbeddedPostgres, install_signal_handlers


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("--go", type=Path, help="wait for this file before starting")
    parser.add_argument("--signals", action="store_true", help="install_signal_handlers()")
    args = parser.parse_args()
    server = EmbeddedPostgres(args.home)
    if args.signals:
        install_signal_handlers(server)
    while args.go and not args.go.exists():
        time.sleep(0.005)
    conninfo = server.start()
    info = {
        "pid": os.getpid(),
        "owned": server.owned,
        "postmaster": server.status().pid,
        "conninfo": conninfo,
    }
    try:  # the test may signal as soon as it reads the line: be inside the try by then
        print(json.dumps(info), flush=True)
        sys.stdin.read()
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
