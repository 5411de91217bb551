"""Application settings, read from environment variables and an optional `.env` file.

Field names are the environment variable names on purpose: validation errors then
name exactly the variable the operator has to fix.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_dir
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradestore.db.errors import TradestoreError

__all__ = ["Settings", "SettingsError", "get_settings", "load_settings", "parse_duration_ms"]

# Units accepted by PostgreSQL for time GUCs, expressed in milliseconds.
_UNIT_MS: dict[str, float] = {
    "us": 0.001,
    "ms": 1,
    "s": 1000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_duration_ms(value: Any) -> int:
    """Parse `30000`, `"30000"`, `"30s"`, `"500ms"`, `"1.5min"` ... into whole milliseconds.

    A bare number means milliseconds, like PostgreSQL's `statement_timeout`.
    """
    if isinstance(value, bool):  # bool is an int subclass; `True` is surely a mistake
        raise ValueError("expected milliseconds or a duration such as '30s', not a boolean")
    if isinstance(value, int):
        number, unit = float(value), "ms"
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError("expected milliseconds or a duration such as '30s' or '500ms'")
        number, unit = float(match.group(1)), (match.group(2).lower() or "ms")
    if unit not in _UNIT_MS:
        raise ValueError(f"unknown unit {unit!r}; use one of {', '.join(_UNIT_MS)}")
    if number < 0:
        raise ValueError("must not be negative")
    return round(number * _UNIT_MS[unit])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # `.env` is shared with other tools (docker compose, ...)
        env_ignore_empty=True,  # `DATABASE_URL=` means "unset", not "empty URL"
        validate_default=True,
    )

    # libpq URL or key=value conninfo; unset means "use the embedded server".
    DATABASE_URL: str | None = None
    REDIS_URL: str | None = None
    TRADESTORE_HOME: Path = Field(default_factory=lambda: Path(user_data_dir("tradestore")))
    TELEGRAM_BOT_TOKEN: SecretStr | None = None
    APP_ENV: Literal["local", "staging", "prod"] = "local"
    DB_POOL_SIZE: int = Field(default=10, ge=1)
    DB_MAX_OVERFLOW: int = Field(default=20, ge=0)
    # Milliseconds; 0 disables the timeout (PostgreSQL semantics).
    DB_STATEMENT_TIMEOUT: int = 30_000
    TRADESTORE_SECRET_KEY: SecretStr | None = None
    # 0 = unix socket only; >0 additionally listen on 127.0.0.1:<port>.
    TRADESTORE_PG_PORT: int = Field(default=0, ge=0, le=65535)
    # Archive WAL under TRADESTORE_HOME/backups/wal_archive for point-in-time recovery
    # (embedded server only; configure archiving on your own server yourself).
    TRADESTORE_WAL_ARCHIVE: bool = True
    # Plus modules `tradestore up` enables (comma-separated, e.g. "dedupe,kpi"); the Lite
    # core is always installed.
    TRADESTORE_MODULES: str = ""
    # Offsite copies of the backups: s3://bucket/prefix, and the endpoint of a store other
    # than AWS S3. Credentials come from boto3's own sources (AWS_ACCESS_KEY_ID, ...).
    TRADESTORE_OFFSITE_URL: str | None = None
    TRADESTORE_OFFSITE_ENDPOINT: str | None = None

    @field_validator("DB_STATEMENT_TIMEOUT", mode="before")
    @classmethod
    def _parse_timeout(cls, value: Any) -> int:
        return parse_duration_ms(value)

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # SQLAlchemy-style `postgresql+psycopg://` is common in .env files; libpq wants
        # the plain scheme.
        value = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", value.strip())
        try:
            conninfo_to_dict(value)
        except Exception as exc:  # psycopg raises ProgrammingError with libpq's message
            raise ValueError(f"not a valid libpq connection string: {exc}") from None
        return value

    @field_validator("TRADESTORE_HOME")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("TRADESTORE_MODULES")
    @classmethod
    def _check_modules(cls, value: str) -> str:
        from tradestore.db.migrate import MODULES  # late: migrate imports alembic

        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in MODULES]
        if unknown:
            raise ValueError(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
        return ",".join(names)

    @property
    def modules(self) -> list[str]:
        """The Plus modules named by TRADESTORE_MODULES."""
        return [n for n in self.TRADESTORE_MODULES.split(",") if n]

    @property
    def backup_root(self) -> Path:
        """Where `tradestore backup` writes (seed 004 §6.1 layout)."""
        return self.TRADESTORE_HOME / "backups"

    @property
    def db_pool_max_size(self) -> int:
        """Upper bound of connections per pool: the base size plus the overflow."""
        return self.DB_POOL_SIZE + self.DB_MAX_OVERFLOW


class SettingsError(TradestoreError, ValueError):
    """Invalid configuration; the message lists every bad variable with its value."""


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        value = err.get("input")
        shown = "'**********'" if "SECRET" in field or "TOKEN" in field else repr(value)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{field}={shown}: {msg}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(_env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build a fresh, uncached `Settings`.

    Tests use `load_settings(None, DB_POOL_SIZE=2)` to ignore any `.env` file.
    Keyword overrides take precedence over the environment.
    """
    try:
        return Settings(_env_file=_env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. `get_settings.cache_clear()` forces a re-read."""
    return load_settings()
