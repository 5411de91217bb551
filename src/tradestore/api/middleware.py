"""ASGI middleware shared by every route."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradestore.api.errors import error_response
from tradestore.ops.context import request_id_var

__all__ = [
    "DASHBOARD_CSP",
    "INT64_MAX",
    "INT64_MIN",
    "REQUEST_ID_HEADER",
    "BodyLimitMiddleware",
    "MalformedInputMiddleware",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
]

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,50}$")


class RequestIdMiddleware:
    """Give each request an id (the caller's X-Request-ID when it is sane, else a new
    one), expose it to logging through request_id_var (system.logs.request_id), and
    echo it in the response. Plain ASGI, so the context variable reaches the endpoint
    and its background tasks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` under `prefix` with 413 (OWASP API4).

    The body is read (at most max_bytes + one chunk) before the app sees it and replayed
    to it, so a chunked upload without Content-Length is bounded too. The webhooks route
    has its own, smaller limit and is not under the prefix."""

    def __init__(self, app: ASGIApp, max_bytes: int, prefix: str = "/api/") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if not _declares_body(scope):  # no Content-Length, no Transfer-Encoding: no body
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replaying(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": f"the request body may be at most {self.max_bytes} bytes",
                    "field": "body",
                    "rule": f"at most {self.max_bytes} bytes",
                    "value": None,
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# The dashboard loads only its own files: no inline script, nothing from other origins.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """Headers every response carries (nosniff, no referrer, no framing), plus a strict
    Content-Security-Policy on the dashboard's pages and files. /docs is left without
    the CSP: Swagger UI loads its assets from a CDN."""

    def __init__(self, app: ASGIApp, dashboard_paths: tuple[str, ...] = ("/static/",)) -> None:
        self.app = app
        self.dashboard_paths = dashboard_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        dashboard = path == "/" or path.startswith(self.dashboard_paths)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                if dashboard:
                    headers.setdefault("Content-Security-Policy", DASHBOARD_CSP)
                if path.startswith("/api/"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"^\s*([+-]?)0*([0-9]+)\s*$")
_SURROGATE = re.compile("[\ud800-\udfff]")
# what a path must hold for a parameter to break a rule: 19 digits or a surrogate
_PATH_SUSPECT = re.compile("[0-9]{19}|[\ud800-\udfff]")
RULE_INT64 = f"must be an integer from {INT64_MIN} to {INT64_MAX}"
RULE_UNICODE = "must be valid Unicode text (no lone UTF-16 surrogate)"
RULE_FINITE = "must be a finite number"


def _out_of_int64(text: str) -> bool:
    """True for an integer literal (as pydantic would read it) beyond bigint."""
    m = _INTEGER.match(text)
    if m is None:
        return False
    digits = m.group(2)
    if len(digits) > 19:  # checked before int(): a huge literal costs nothing
        return True
    value = int(digits) * (-1 if m.group(1) == "-" else 1)
    return not INT64_MIN <= value <= INT64_MAX


def _printable(text: str) -> str:
    """Text with lone surrogates written as \\udXXX, so an error can echo it as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _problems_in_text(field: str, text: str) -> tuple[str, str, str] | None:
    if _SURROGATE.search(text):
        return field, RULE_UNICODE, _printable(text)
    if _out_of_int64(text):
        return field, RULE_INT64, text
    return None


def _walk_json(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    field = ".".join(path) or "body"
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            yield field, RULE_INT64, str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield field, RULE_FINITE, str(value)
    elif isinstance(value, str):
        if _SURROGATE.search(value):
            yield field, RULE_UNICODE, _printable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                yield ".".join((*path, _printable(key))), RULE_UNICODE, _printable(key)
            else:
                yield from _walk_json(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk_json(item, (*path, str(i)))


class MalformedInputMiddleware:
    """Refuse, with 422 naming the field, input no route can use and the layers below
    would fail on: an integer beyond bigint (2^63 - 1) in the path, the query or a JSON
    body; a lone UTF-16 surrogate in any string (JSON "\\ud800" escapes decode to one,
    and it cannot be encoded as UTF-8 for PostgreSQL or a response); NaN or Infinity in
    a JSON body. Every id is a bigint and money travels as decimal strings, so no valid
    request carries such a value. One check for every route, before routing and parsing.

    Path parameters are named from the app's path templates; the body is read (the body
    limit outside this middleware bounds it) and replayed to the app."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        problem = self._in_url(scope)
        if problem is not None:
            await self._refuse(problem, scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") and not _declares_body(scope):
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        problem = self._in_body(scope, body)
        if problem is not None:
            await self._refuse(problem, scope, receive, send)
            return
        await self.app(scope, _replaying(body, more), send)

    @staticmethod
    def _in_url(scope: Scope) -> tuple[str, str, str] | None:
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):
            problem = _problems_in_text(name, value) or (
                (_printable(name), RULE_UNICODE, _printable(name))
                if _SURROGATE.search(name)
                else None
            )
            if problem is not None:
                return problem
        path = scope["path"]
        if not _PATH_SUSPECT.search(path):
            return None  # no integer long enough to pass bigint, no surrogate: nothing to name
        for pattern in _path_patterns(scope.get("app")):
            match = pattern.match(path)
            if match is not None:
                for name, value in match.groupdict().items():
                    problem = _problems_in_text(name, value)
                    if problem is not None:
                        return problem
        return None

    @staticmethod
    def _in_body(scope: Scope, body: bytes) -> tuple[str, str, str] | None:
        if not body:
            return None
        content_type = next(
            (v.decode("latin-1").lower() for k, v in scope["headers"] if k == b"content-type"),
            "",
        )
        if content_type and "json" not in content_type:
            return None
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None  # not JSON: the route's own parsing answers 422
        return next(_walk_json(data, ()), None)

    @staticmethod
    async def _refuse(
        problem: tuple[str, str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        field, rule, value = problem
        response = error_response(422, f"{field}: {rule}", field=field, rule=rule, value=value)
        await response(scope, receive, send)


def _path_patterns(app: Any) -> list[re.Pattern[str]]:
    """The app's path templates with parameters ("/api/v1/orders/{order_id}"), compiled
    once per app from its OpenAPI description (public, unlike the router's internals)."""
    if app is None or not hasattr(app, "openapi"):
        return []
    patterns = getattr(app.state, "path_patterns", None)
    if patterns is None:
        templates = [t for t in app.openapi().get("paths", {}) if "{" in t]
        patterns = app.state.path_patterns = [compile_path(t)[0] for t in templates]
    return patterns


def _declares_body(scope: Scope) -> bool:
    return any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already-read body once, as one message, then defers to
    `receive` (for the disconnect the app may wait for)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), receive
