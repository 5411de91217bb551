"""Request-scoped context carried into log records (system.logs.request_id, user_id).

The API sets request_id for each request (X-Request-ID); asyncio tasks and threads
started with contextvars.copy_context() inherit it.
"""

from __future__ import annotations

import contextvars

__all__ = ["request_id_var", "user_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
user_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)
