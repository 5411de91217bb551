"""Settings of the Telegram worker, read from environment variables (and `.env`).

The bot token is not here: it is `TELEGRAM_BOT_TOKEN` of `tradestore.config.Settings`,
read from the environment only, never from the database (seed 001 §10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradestore.config import SettingsError

__all__ = ["NotifySettings", "load_notify_settings"]

TELEGRAM_API = "https://api.telegram.org"


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # Bot API base URL; tests and benchmarks point it at a loopback server.
    TELEGRAM_API_BASE: str = TELEGRAM_API
    # A LOGIN role for the worker (member of tradestore_notifier). Unset: the worker uses
    # the app's connection and SETs ROLE to NOTIFY_DB_ROLE.
    NOTIFY_DATABASE_URL: str | None = None
    NOTIFY_DB_ROLE: str = "tradestore_notifier"
    # Default: host:pid:random, new for every process.
    NOTIFY_WORKER_ID: str | None = Field(default=None, max_length=200)
    NOTIFY_SET_ROLE: bool = True
    NOTIFY_BATCH_SIZE: int = Field(default=50, ge=1, le=1000)
    # A claim older than this is taken over by another worker (the holder was killed).
    NOTIFY_LEASE_SECONDS: float = Field(default=120.0, gt=0)
    # Fallback poll when no NOTIFY arrives (NOTIFY is not durable).
    NOTIFY_POLL_SECONDS: float = Field(default=30.0, gt=0)
    # Telegram's limits: ~1 message/s per chat, 20/min per group, 30/s overall. 0 = off.
    NOTIFY_CHAT_RATE: float = Field(default=1.0, ge=0)
    NOTIFY_GROUP_RATE: float = Field(default=20 / 60, ge=0)
    NOTIFY_GLOBAL_RATE: float = Field(default=30.0, ge=0)
    NOTIFY_HTTP_TIMEOUT: float = Field(default=10.0, gt=0)
    NOTIFY_MAX_IN_FLIGHT: int = Field(default=16, ge=1, le=512)
    # Seed 001 §6: five failures and the row is FAILED.
    NOTIFY_MAX_FAILURES: int = Field(default=5, ge=1)
    NOTIFY_HEARTBEAT_SECONDS: float = Field(default=15.0, gt=0)
    # Results are written back at least this often during a long batch.
    NOTIFY_FLUSH_SECONDS: float = Field(default=0.5, gt=0)

    @field_validator("TELEGRAM_API_BASE")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


def load_notify_settings(_env_file: str | Path | None = ".env", **overrides: Any) -> NotifySettings:
    """Fresh NotifySettings; keyword overrides beat the environment."""
    try:
        return NotifySettings(_env_file=_env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc'])}={e.get('input')!r}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
