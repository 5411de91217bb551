"""Where the API listens and how much it accepts (environment variables / `.env`)."""

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
    # Requests per window (seconds) under /api/, per client address and per logged-in user
    # (seed 002's rate_limit:{ip}, one minute).
    API_RATE_LIMIT_PER_IP: int = Field(default=600, ge=1)
    API_RATE_LIMIT_PER_USER: int = Field(default=1200, ge=1)
    API_RATE_LIMIT_WINDOW: int = Field(default=60, ge=1)
    # Request bodies under /api/ larger than this are refused with 413 (an order is < 1 KiB).
    API_MAX_BODY_BYTES: int = Field(default=64 * 1024, ge=1024)
