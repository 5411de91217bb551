"""Keep secrets out of stored webhook bodies, by the parsed key, not by the bytes.

A JSON member whose name *decodes* to a secret-bearing key ("secret", "\\u0073ecret",
"s\\u0065cret" ...) has its value replaced by "[redacted]" in place, so the rest of the
raw body stays byte for byte. The result is parsed again and checked: if any such
member is left unredacted (its value is an object or array, say), the whole body is
withheld instead. Bodies that are not JSON get the same member-by-member treatment as a
best effort.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tradestore.db.errors import TradestoreError

__all__ = ["REDACTED", "SECRET_KEYS", "WITHHELD", "redact_body", "redact_value"]

REDACTED = "[redacted]"
SECRET_KEYS = frozenset({"secret", "passphrase", "password"})
WITHHELD = b'{"withheld": "a secret-bearing member could not be redacted in place"}'

_STRING = r'"(?:[^"\\]|\\.)*"'
_SCALAR = r"-?[0-9][0-9eE+.\-]*|true|false|null"
# A string token, optionally followed by `: value` (then it is a member name).
_MEMBER = re.compile(
    rf"(?P<key>{_STRING})(?P<sep>\s*:\s*)(?P<value>{_STRING}|{_SCALAR})?|{_STRING}", re.S
)


def _is_secret_name(token: str) -> bool:
    try:
        name = json.loads(token)
    except ValueError:
        name = token[1:-1]
    return isinstance(name, str) and name.strip().casefold() in SECRET_KEYS


def _substitute(match: re.Match[str]) -> str:
    if match.group("key") is None or match.group("value") is None:
        return match.group(0)
    if not _is_secret_name(match.group("key")):
        return match.group(0)
    return f'{match.group("key")}{match.group("sep")}"{REDACTED}"'


def _leaks(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            (k.strip().casefold() in SECRET_KEYS and v != REDACTED) or _leaks(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_leaks(v) for v in value)
    return False


def _pairs_leak(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # object_pairs_hook: sees duplicate members, which a dict would fold into one
    for k, v in pairs:
        if k.strip().casefold() in SECRET_KEYS and v != REDACTED:
            raise _Leak
    return dict(pairs)


class _Leak(TradestoreError):
    pass


def redact_body(body: bytes) -> bytes:
    """`body` with the value of every secret-bearing JSON member replaced by "[redacted]"."""
    text = body.decode("utf-8", "surrogateescape")
    redacted = _MEMBER.sub(_substitute, text)
    try:
        json.loads(redacted, object_pairs_hook=_pairs_leak)
    except _Leak:
        return WITHHELD
    except (ValueError, RecursionError):
        pass  # not JSON: the member-by-member pass is all that can be done
    return redacted.encode("utf-8", "surrogateescape")


def redact_value(value: Any) -> Any:
    """A parsed JSON value with secret-bearing members' values replaced."""
    if isinstance(value, dict):
        return {
            k: REDACTED if k.strip().casefold() in SECRET_KEYS else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value


def leaks(value: Any) -> bool:
    """True when a parsed value still holds a secret-bearing member's value."""
    return _leaks(value)
