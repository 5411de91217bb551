"""A threaded JSON HTTP server on 127.0.0.1 for the loopback fakes of exchanges: each
request (method, path, raw query, body, headers) goes to a `dispatch` function that
answers (status, JSON payload), or (status, None) to close the connection unanswered."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Dispatch = Callable[[str, str, str, str, Mapping[str, str]], tuple[int, Any]]


def serve_json(dispatch: Dispatch) -> ThreadingHTTPServer:
    """Start serving on a free loopback port, in a daemon thread; `shutdown()` and
    `server_close()` stop it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            status, payload = dispatch(method, split.path, split.query, body, self.headers)
            if payload is None:  # a scripted connection drop
                self.close_connection = True
                self.connection.shutdown(2)
                return
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
