"""A loopback OpenAI-compatible chat server (and an OTLP/HTTP collector) for tests.

Answers POST /v1/chat/completions with the next scripted reply: plain JSON, or
server-sent events when the request asks to stream (the first content chunk is what
time-to-first-token measures). A reply may instead be an HTTP error, or a hang that
lasts until the test releases it (the client's timeout fires first).

Answers POST /v1/embeddings with a deterministic bag-of-words vector per input of
`embedding_dims` dimensions (each word hashed to a dimension), so texts sharing words are
near; as float lists or, when asked (the openai client asks by default), base64 float32.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
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
    embedding_dims: int = 64
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)


def bag_of_words(text: str, dims: int) -> list[float]:
    """The fake's embedding: word counts hashed into `dims` buckets, L2-normalised."""
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dims] += 1.0
    if not any(vector):
        vector[0] = 1.0
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            if self.path.rstrip("/").endswith("/embeddings"):
                self._embeddings(body)
                return
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

        def _embeddings(self, body: dict[str, Any]) -> None:
            fake.embedding_requests.append(body)
            fake.headers.append({k.lower(): v for k, v in self.headers.items()})
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = []
            for i, text in enumerate(texts):
                vector = bag_of_words(text, fake.embedding_dims)
                encoded: Any = vector
                if body.get("encoding_format") == "base64":
                    raw = struct.pack(f"<{len(vector)}f", *vector)
                    encoded = base64.b64encode(raw).decode()
                data.append({"object": "embedding", "index": i, "embedding": encoded})
            tokens = sum(len(t.split()) for t in texts)
            payload = {
                "object": "list",
                "data": data,
                "model": body.get("model", "fake"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
            self._send(200, "application/json", json.dumps(payload).encode())

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
