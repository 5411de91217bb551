"""A loopback OpenAI-compatible chat server (and an OTLP/HTTP collector) for tests.

Answers POST /v1/chat/completions with the next scripted reply: plain JSON, or
server-sent events when the request asks to stream (the first content chunk is what
time-to-first-token measures). A reply may instead be an HTTP error, or a hang that
lasts until the test releases it (the client's timeout fires first).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 5
    status: int = 200
    hang: bool = False
    finish_reason: str = "stop"


@dataclass
class FakeLLM:
    url: str
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    counter: int = 0

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            fake.requests.append(body)
            fake.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = fake.replies.popleft() if fake.replies else Reply()
            fake.counter += 1
            rid = f"chatcmpl-{fake.counter}"
            model = f"{body.get('model', 'fake')}-served"
            if reply.hang:
                fake.release.wait(30)
                self.close_connection = True
                return
            if reply.status != 200:
                payload = json.dumps(
                    {"error": {"message": "upstream broke", "type": "server_error"}}
                )
                self._send(reply.status, "application/json", payload.encode())
                return
            usage = {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            }
            if not body.get("stream"):
                payload = {
                    "id": rid,
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply.text},
                            "finish_reason": reply.finish_reason,
                        }
                    ],
                    "usage": usage,
                }
                self._send(200, "application/json", json.dumps(payload).encode())
                return
            events = []
            half = max(1, len(reply.text) // 2)
            for i, part in enumerate((reply.text[:half], reply.text[half:])):
                delta = {"content": part} if i else {"role": "assistant", "content": part}
                events.append(self._chunk(rid, model, delta, None))
            events.append(self._chunk(rid, model, {}, reply.finish_reason))
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append(
                    {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            data = (
                b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
                + b"data: [DONE]\n\n"
            )
            self._send(200, "text/event-stream", data)

        @staticmethod
        def _chunk(
            rid: str, model: str, delta: dict[str, Any], finish: str | None
        ) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        def _send(self, status: int, ctype: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
