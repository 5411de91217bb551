"""The one parser of times typed on the command line (and in query strings).

Accepted: a date (`2017-01-01`), a date and time with minutes, seconds or fractions
(`2017-01-01T00:00`, `2017-01-01 00:00:00.5`), with or without a zone (`Z`, `+09:00`);
no zone means UTC. Every command that takes a time uses this, so `--from 2017-01-01`
means the same thing everywhere.
"""

from __future__ import annotations

import datetime as dt

from tradestore.db.errors import ValidationError

__all__ = ["TIME_RULE", "parse_optional_time", "parse_time"]

TIME_RULE = "must be a date or date and time, e.g. 2017-01-01 or 2017-01-01T00:00[Z|+09:00]"


def parse_time(text: str, field: str = "time", *, end: bool = False) -> dt.datetime:
    """`text` as an aware datetime (UTC when it names no zone). With `end`, a bare date
    means the whole day: up to 23:59:59.999999 of it."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(field, TIME_RULE, text)
    clean = text.strip()
    if clean[-1:] in ("z", "Z"):
        clean = clean[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(clean)
    except ValueError:
        raise ValidationError(field, TIME_RULE, text) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if end and len(clean) == 10:
        value += dt.timedelta(days=1, microseconds=-1)
    return value


def parse_optional_time(text: str | None, field: str = "time") -> dt.datetime | None:
    """parse_time, with None for an absent option."""
    return None if text is None else parse_time(text, field)
