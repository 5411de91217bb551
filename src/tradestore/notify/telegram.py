"""Telegram Bot API: message formatting and splitting, and sendMessage over httpx.

Messages go out as plain text (no parse_mode), so any title or message text is valid and
a split can never break an HTML or Markdown entity. Telegram caps a message at 4096
characters, counted in UTF-16 code units (an emoji outside the BMP counts twice).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "SendResult",
    "TelegramClient",
    "format_message",
    "redact",
    "split_message",
    "utf16_len",
]

MAX_MESSAGE_LENGTH = 4096
# Responses that will not succeed on a retry: bad request (chat not found, text
# rejected), bot blocked or kicked, unknown chat.
PERMANENT_STATUSES = frozenset({400, 403, 404})
DEFAULT_RETRY_AFTER = 5.0
MAX_RETRY_AFTER = 3600.0
_ICONS = {"INFO": "ℹ️", "WARN": "⚠️", "CRITICAL": "🚨"}


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def format_message(severity: str, title: str, message: str) -> str:
    """The text sent for an outbox row: severity icon and title, a blank line, the message."""
    icon = _ICONS.get(str(severity), "")
    head = f"{icon} {title}".strip()
    return f"{head}\n\n{message}" if message else head


def _prefix_within(text: str, limit: int) -> int:
    """The largest index i such that text[:i] is at most `limit` UTF-16 units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def split_message(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Split `text` into parts of at most `limit` UTF-16 units, in order.

    A cut prefers the last line break, then the last space, in the second half of the
    window; otherwise it cuts hard (never inside a character). Parts that would be only
    whitespace are dropped (Telegram refuses an empty text), so joining the parts gives
    back `text` minus such whitespace runs.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = _prefix_within(rest, limit)
        for sep in ("\n", " "):
            at = rest.rfind(sep, 0, cut)
            if at >= cut // 2:
                cut = at + 1
                break
        parts.append(rest[:cut])
        rest = rest[cut:]
    parts.append(rest)
    kept = [p for p in parts if p.strip()]
    return kept or [text[: _prefix_within(text, limit)]]


def redact(text: str, secret: str | None) -> str:
    """`text` with the bot token replaced (httpx errors and URLs contain it)."""
    if secret and secret in text:
        return text.replace(secret, "<token>")
    return text


@dataclass(frozen=True)
class SendResult:
    """What became of one sendMessage call.

    ok: delivered. retry_after: Telegram said 429 (seconds to wait; not a failure of
    the message). permanent: will not succeed on a retry. error: a short description.
    """

    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False


class TelegramClient:
    """sendMessage over a shared httpx.AsyncClient (connection reuse, HTTP keep-alive)."""

    def __init__(
        self, http: httpx.AsyncClient, token: str, base_url: str = "https://api.telegram.org"
    ) -> None:
        self._http = http
        self._token = token
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"

    async def send_message(self, chat_id: int, text: str) -> SendResult:
        payload = {"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": True}}
        try:
            response = await self._http.post(self._url, json=payload)
        except httpx.TimeoutException as exc:
            # The message may have been delivered anyway: delivery is at-least-once.
            return SendResult(False, error=redact(f"timeout: {type(exc).__name__}", self._token))
        except httpx.HTTPError as exc:
            return SendResult(False, error=redact(f"{type(exc).__name__}: {exc}", self._token))
        return self._result(response)

    def _result(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {}
        if not isinstance(body, dict):
            body = {}
        if status == 200 and body.get("ok") is True:
            return SendResult(True, status)
        description = str(body.get("description") or response.reason_phrase or "error")[:500]
        description = description.replace("\x00", "")  # stored in jsonb/text, which refuse NUL
        error = redact(f"HTTP {status}: {description}", self._token)
        raw = body.get("parameters")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if status == 429:
            return SendResult(False, status, error, retry_after=_retry_after(params, response))
        if status in PERMANENT_STATUSES:
            if params.get("migrate_to_chat_id"):
                error += (
                    f" (group moved to chat {params['migrate_to_chat_id']}: update telegram_chats)"
                )
            return SendResult(False, status, error, permanent=True)
        return SendResult(False, status, error)


def _retry_after(params: dict[str, Any], response: httpx.Response) -> float:
    for value in (params.get("retry_after"), response.headers.get("retry-after")):
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER)
    return DEFAULT_RETRY_AFTER
