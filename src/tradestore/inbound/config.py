"""Settings of the TradingView webhook (environment variables / `.env`).

Requests authenticate with a per-user webhook credential (tradestore.inbound.credentials),
which TradingView puts inside the alert's JSON body, since it signs nothing. The old
global TRADINGVIEW_WEBHOOK_SECRET is kept only as a legacy credential of one explicitly
named user (TRADINGVIEW_WEBHOOK_USER); without that user it is ignored.
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

    # Legacy: one shared secret acting for TRADINGVIEW_WEBHOOK_USER (a username) only.
    # Ignored unless both are set; prefer per-user credentials (`tradestore webhooks`).
    TRADINGVIEW_WEBHOOK_SECRET: SecretStr | None = None
    TRADINGVIEW_WEBHOOK_USER: str | None = None
    # Comma-separated addresses or networks; `tradingview` stands for TradingView's
    # published addresses. Empty: any source (the secret still applies).
    WEBHOOK_IP_ALLOWLIST: str = ""
    # Larger bodies are answered 413 (reading stops there).
    WEBHOOK_MAX_BODY_BYTES: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    # Oversized bodies, and bodies of requests that did not authenticate, are stored only
    # up to this many bytes (raw_truncated = true), so strangers cannot fill the disk.
    WEBHOOK_STORED_BODY_BYTES: int = Field(default=2048, ge=256, le=1024 * 1024)
    # Requests per source address per minute, counted before the body is read or stored
    # (429 beyond). TradingView sends every user's alerts from the same few addresses.
    WEBHOOK_RATE_LIMIT_PER_IP: int = Field(default=120, ge=1)
    # Alerts stored but not judged (the server stopped) are judged again by the sweep
    # when younger than this many seconds; older ones become EXPIRED, never acted on.
    WEBHOOK_REJUDGE_WINDOW_SECONDS: int = Field(default=300, ge=0)

    @field_validator("WEBHOOK_IP_ALLOWLIST")
    @classmethod
    def _check_allowlist(cls, value: str) -> str:
        _networks(value)
        return value

    @property
    def allowlist(self) -> tuple[Network, ...]:
        return _networks(self.WEBHOOK_IP_ALLOWLIST)

    def secret(self) -> str | None:
        """The legacy shared secret, when it is configured together with its user."""
        value = self.TRADINGVIEW_WEBHOOK_SECRET
        if value is None or not value.get_secret_value() or not self.TRADINGVIEW_WEBHOOK_USER:
            return None
        return value.get_secret_value()


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
