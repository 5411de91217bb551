"""JSON for jsonb columns: Decimals as exact JSON numbers (jsonb keeps numbers as numeric),
non-finite floats as null, times as ISO-8601 UTC."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = ["dumps", "plain"]


def plain(value: Any) -> Any:
    """The value as JSON-friendly Python (Decimal kept for `dumps` to write exactly)."""
    if value is None or isinstance(value, bool | str | int | Decimal):
        return value
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]")) + "Z"
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    return str(value)


def dumps(value: Any) -> str:
    return _dump(plain(value))


def _dump(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "null"
        text = format(value, "f")
        return text if text not in ("-0",) else "0"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    return json.dumps(value)
