"""Keep secrets out of logs: a logging filter that redacts exchange credentials,
passwords, tokens and password hashes from every record.

Two nets: the exact values tradestore has handled (every API key and secret stored,
rotated or decrypted is registered here), and patterns (`password=...`, `"api_secret":
"..."`, `Bearer ...`, argon2 hashes, access tokens). `install()` puts the filter in the
log record factory, so it covers every logger and handler, including ones added later.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["REDACTED", "SecretsFilter", "install", "redact", "register_secret", "uninstall"]

REDACTED = "[REDACTED]"
_MIN_SECRET = 6
_MAX_REMEMBERED = 10_000

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # before key=value, which would otherwise take "Bearer" for the value
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # key=value, key: value, "key": "value" for names that hold secrets
    (
        re.compile(
            r"(?i)\b((?:api[_-]?)?secret(?:[_-]?key)?|api[_-]?key|passw(?:or)?d|pwd|"
            r"(?:access[_-]?|refresh[_-]?|session[_-]?)?token|authorization|ciphertext|"
            r"private[_-]?key)([\"']?\s*[:=]\s*[\"']?)([^\s\"',;}&]+)"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"\$argon2(?:id|i|d)\$[^\s\"']+"), REDACTED),
    # access tokens: <session id>.<43 url-safe characters>
    (re.compile(r"\b\d{1,18}\.[A-Za-z0-9_-]{43}\b"), REDACTED),
]

_secrets: OrderedDict[str, None] = OrderedDict()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact this exact value from now on (the newest 10,000 values are remembered)."""
    if not value or len(value) < _MIN_SECRET:
        return
    with _lock:
        _secrets[value] = None
        _secrets.move_to_end(value)
        while len(_secrets) > _MAX_REMEMBERED:
            _secrets.popitem(last=False)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = list(_secrets)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redacted_arg(arg: Any, redacted_message: str) -> Any:
    """`arg` with its secrets removed: strings that survived redaction whole stay as they
    are, strings that lost something are redacted on their own (or replaced outright).
    Other types keep their type, so `%d` and friends still format."""
    if not isinstance(arg, str) or not arg or arg in redacted_message:
        return arg
    alone = redact(arg)
    return alone if alone != arg else REDACTED


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to logging's own error report
        return
    redacted = redact(message)
    if redacted != message:
        _scrub_message(record, message, redacted)
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _scrub_message(record: logging.LogRecord, message: str, redacted: str) -> None:
    """Remove the secrets from msg and args while keeping args' shape: formatters such as
    uvicorn's access formatter unpack `record.args` themselves and fail on anything else."""
    args = record.args
    msg = redact(record.msg) if isinstance(record.msg, str) else record.msg
    if isinstance(args, tuple):
        new_args: Any = tuple(_redacted_arg(a, redacted) for a in args)
    elif isinstance(args, dict):
        new_args = {k: _redacted_arg(v, redacted) for k, v in args.items()}
    else:
        new_args = args
    try:
        rebuilt = str(msg) % new_args if new_args else str(msg)
    except Exception:
        rebuilt = None
    if rebuilt is not None and redact(rebuilt) == rebuilt:
        record.msg, record.args = msg, new_args
    else:  # the secret straddles the template and an argument: keep the text only
        record.msg, record.args = redacted, None


class SecretsFilter(logging.Filter):
    """Attach to a handler (or logger) to redact what passes through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


_previous_factory: Any = None


def install() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    global _previous_factory
    with _lock:
        if _previous_factory is not None:
            return
        previous = _previous_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub(record)
        return record

    logging.setLogRecordFactory(factory)


def uninstall() -> None:
    """Undo install() (tests)."""
    global _previous_factory
    with _lock:
        if _previous_factory is None:
            return
        logging.setLogRecordFactory(_previous_factory)
        _previous_factory = None
