"""Settings of the TradingView webhook (environment variables / `.env`).

The shared secret lives in the environment only (seed 001 §10: no secrets in the
database); TradingView puts it inside the alert's JSON body, since it signs nothing.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradestore.config import SettingsError

__all__ = ["TRADINGVIEW_WEBHOOK_IPS", "WebhookSettings", "load_webhook_settings"]

# The addresses TradingView publishes for its webhook requests
# (https://www.tradingview.com/support/solutions/43000529348/).
TRADINGVIEW_WEBHOOK_IPS = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # Unset: the webhook answers 503 (it refuses to take orders from anyone).
    TRADINGVIEW_WEBHOOK_SECRET: SecretStr | None = None
    # Comma-separated addresses or networks; `tradingview` stands for TradingView's
    # published addresses. Empty: any source (the secret still applies).
    WEBHOOK_IP_ALLOWLIST: str = ""
    # Larger bodies are answered 413; their first WEBHOOK_MAX_BODY_BYTES bytes are kept.
    WEBHOOK_MAX_BODY_BYTES: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)

    @field_validator("WEBHOOK_IP_ALLOWLIST")
    @classmethod
    def _check_allowlist(cls, value: str) -> str:
        _networks(value)
        return value

    @property
    def allowlist(self) -> tuple[Network, ...]:
        return _networks(self.WEBHOOK_IP_ALLOWLIST)

    def secret(self) -> str | None:
        value = self.TRADINGVIEW_WEBHOOK_SECRET
        return value.get_secret_value() if value is not None and value.get_secret_value() else None


def _networks(spec: str) -> tuple[Network, ...]:
    networks: list[Network] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item.lower() == "tradingview":
            networks.extend(ipaddress.ip_network(ip) for ip in TRADINGVIEW_WEBHOOK_IPS)
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


def load_webhook_settings(
    _env_file: str | Path | None = ".env", **overrides: Any
) -> WebhookSettings:
    try:
        return WebhookSettings(_env_file=_env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"])
            shown = "'**********'" if "SECRET" in field else repr(e.get("input"))
            lines.append(f"{field}={shown}: {e['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
