"""A real HTTP server on loopback that speaks the Telegram Bot API's sendMessage.

Tests script its answers per chat (success, 400, 429 with parameters.retry_after, 5xx,
a delay longer than the client's timeout) and read back what it received. The benchmarks
run it in a process of its own: `python -m tests.notify.botapi` prints its port and
serves GET /_stats and GET /_received (arrival times are time.monotonic(), which is one
clock for every process on the machine).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BotApiServer", "Received", "Reply"]

_PATH = re.compile(r"^/bot(?P<token>[^/]+)/sendMessage$")


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    description: str | None = None
    retry_after: int | None = None
    delay: float = 0.0
    raw: bytes | None = None  # a body that is not Bot API JSON (a proxy's error page)

    @classmethod
    def ok(cls) -> Reply:
        return cls()

    @classmethod
    def too_many(cls, retry_after: int) -> Reply:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    @classmethod
    def bad_request(cls, description: str = "Bad Request: chat not found") -> Reply:
        return cls(400, description)

    @classmethod
    def server_error(cls, status: int = 502) -> Reply:
        return cls(status, raw=b"<html>Bad Gateway</html>")

    @classmethod
    def slow(cls, delay: float) -> Reply:
        return cls(delay=delay)


@dataclass(frozen=True)
class Received:
    chat_id: int
    text: str
    token: str
    at: float  # time.monotonic() when the request arrived
    status: int


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many clients connect at once; the default backlog is 5
    daemon_threads = True


class BotApiServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "123456:TEST-token",
        delay: float = 0.0,
    ) -> None:
        self.token = token
        self.delay = delay
        self.received: list[Received] = []
        self._scripts: dict[int, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real API

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle's algorithm
                # and delayed ACKs stall every keep-alive response by ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/_stats":
                    with server._lock:
                        body = {
                            "received": len(server.received),
                            "ok": sum(1 for r in server.received if r.status == 200),
                        }
                    self._send(200, json.dumps(body).encode())
                elif self.path == "/_received":
                    with server._lock:
                        rows = [
                            {"chat_id": r.chat_id, "text": r.text, "at": r.at, "status": r.status}
                            for r in server.received
                        ]
                    self._send(200, json.dumps(rows).encode())
                else:
                    self._send(404, b'{"ok":false,"error_code":404,"description":"Not Found"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                match = _PATH.match(self.path)
                if not match:
                    self._send(404, b'{"ok":false,"error_code":404,"description":"Not Found"}')
                    return
                try:
                    payload = json.loads(data)
                    chat_id, text = int(payload["chat_id"]), str(payload["text"])
                except (ValueError, KeyError, TypeError):
                    self._send(
                        400, b'{"ok":false,"error_code":400,"description":"Bad Request: bad body"}'
                    )
                    return
                if match["token"] != server.token:
                    reply = Reply(401, "Unauthorized")
                elif not text.strip() or len(text.encode("utf-16-le")) // 2 > 4096:
                    reply = Reply.bad_request("Bad Request: message text is empty or too long")
                else:
                    reply = server._next(chat_id)
                with server._lock:
                    server.received.append(
                        Received(chat_id, text, match["token"], time.monotonic(), reply.status)
                    )
                if reply.delay or server.delay:
                    time.sleep(reply.delay or server.delay)
                self._send(reply.status, server._body(reply, chat_id, text))

            def _send(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)

        self._httpd = _Server((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._message_id = 0

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, chat_id: int, *replies: Reply) -> None:
        """Answer the next sends to chat_id with these replies, then succeed."""
        with self._lock:
            self._scripts[chat_id].extend(replies)

    def _next(self, chat_id: int) -> Reply:
        with self._lock:
            queue = self._scripts.get(chat_id)
            return queue.popleft() if queue else Reply.ok()

    def _body(self, reply: Reply, chat_id: int, text: str) -> bytes:
        if reply.raw is not None:
            return reply.raw
        if reply.status == 200:
            with self._lock:
                self._message_id += 1
                message_id = self._message_id
            return json.dumps(
                {
                    "ok": True,
                    "result": {
                        "message_id": message_id,
                        "chat": {"id": chat_id},
                        "date": int(time.time()),
                        "text": text,
                    },
                }
            ).encode()
        body: dict[str, Any] = {
            "ok": False,
            "error_code": reply.status,
            "description": reply.description or "error",
        }
        if reply.retry_after is not None:
            body["parameters"] = {"retry_after": reply.retry_after}
        return json.dumps(body).encode()

    def delivered(self, chat_id: int | None = None) -> list[Received]:
        """Requests answered 200, in arrival order."""
        with self._lock:
            return [
                r
                for r in self.received
                if r.status == 200 and (chat_id is None or r.chat_id == chat_id)
            ]

    def start(self) -> BotApiServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name="botapi"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> BotApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="loopback Telegram Bot API (sendMessage)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="123456:TEST-token")
    args = parser.parse_args()
    server = BotApiServer(port=args.port, token=args.token)
    print(server.port, flush=True)
    server._httpd.serve_forever()


if __name__ == "__main__":
    main()
