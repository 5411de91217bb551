"""Where the API listens (environment variables / `.env`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings"]


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # Loopback by default: put a TLS reverse proxy in front to take TradingView's webhooks.
    API_HOST: str = "127.0.0.1"
    API_PORT: int = Field(default=8000, ge=0, le=65535)
