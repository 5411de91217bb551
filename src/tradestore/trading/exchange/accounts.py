"""Which accounts route orders to their exchange, and the connector each one uses.

An account routes when its `trading_mode` is 'paper' (the exchange's testnet) or 'live'
('sim' is tradestore's own paper exchange: nothing is routed) and it names one of its user's API keys for its exchange (account.accounts.api_key_id;
the database checks both). Credentials are decrypted from the API-key store only here,
when a connector is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import dicts, translated
from tradestore.identity import apikeys
from tradestore.identity.secretbox import SecretBox
from tradestore.trading.exchange.connector import Connector, build_exchange, profile_for

MODES = ("off", "sim", "paper", "live")
# Modes whose orders go to the exchange through the router ('sim': tradestore's own paper
# exchange, tradestore.trading.exchange.paper, fills them).
ROUTED_MODES = ("paper", "live")


@dataclass(frozen=True)
class RoutingAccount:
    account_id: int
    user_id: int
    exchange: str
    trading_mode: str
    api_key_id: int


def set_routing(
    conn: psycopg.Connection[Any], account_id: int, mode: str, api_key_id: int | None = None
) -> None:
    """Set an account's trading mode (off, sim, paper, live) and the API key it trades with."""
    mode = mode.strip().lower()
    if mode not in MODES:
        raise ValidationError("trading_mode", "must be one of off, sim, paper, live", mode)
    if mode in ROUTED_MODES:
        profile_for(_exchange_code(conn, account_id))
    with translated():
        cur = conn.execute(
            "UPDATE account.accounts SET trading_mode = %s, "
            "api_key_id = coalesce(%s, api_key_id) WHERE id = %s",
            (mode, api_key_id, account_id),
        )
    if cur.rowcount == 0:
        raise NotFound("account", account_id)


def _exchange_code(conn: psycopg.Connection[Any], account_id: int) -> str:
    rows = dicts(
        conn,
        "SELECT x.code FROM account.accounts a LEFT JOIN market.exchanges x ON x.id = a.exchange_id "
        "WHERE a.id = %s",
        (account_id,),
    )
    if not rows:
        raise NotFound("account", account_id)
    if rows[0]["code"] is None:
        raise ValidationError("account_id", "the account has no exchange", account_id)
    return str(rows[0]["code"])


def routing_accounts(
    conn: psycopg.Connection[Any], account_id: int | None = None
) -> list[RoutingAccount]:
    rows = dicts(
        conn,
        "SELECT a.id AS account_id, a.user_id, x.code AS exchange, a.trading_mode, a.api_key_id "
        "FROM account.accounts a JOIN market.exchanges x ON x.id = a.exchange_id "
        "WHERE a.trading_mode IN ('paper', 'live') AND a.is_active "
        "AND (%(id)s::bigint IS NULL OR a.id = %(id)s) ORDER BY a.id",
        {"id": account_id},
    )
    return [RoutingAccount(**r) for r in rows]


@dataclass
class ConnectorFactory:
    """Builds (once per account) the connector of each routing account. base_urls points
    an exchange's REST APIs elsewhere (a loopback fake exchange in tests), ws_urls its
    websockets."""

    box: SecretBox
    base_urls: Mapping[str, str] = field(default_factory=dict)
    connector_options: Mapping[str, Any] = field(default_factory=dict)
    ws_urls: Mapping[str, str] = field(default_factory=dict)
    _built: dict[int, Connector] = field(default_factory=dict)

    def for_account(self, conn: psycopg.Connection[Any], account: RoutingAccount) -> Connector:
        if account.account_id not in self._built:
            creds = apikeys.decrypt(conn, self.box, account.api_key_id)
            profile = profile_for(account.exchange)
            exchange = build_exchange(
                profile,
                creds.api_key.get_secret_value(),
                creds.api_secret.get_secret_value(),
                sandbox=account.trading_mode == "paper",
                base_url=self.base_urls.get(account.exchange),
            )
            self._built[account.account_id] = Connector(
                exchange, profile, **dict(self.connector_options)
            )
        return self._built[account.account_id]

    def stream_for_account(self, conn: psycopg.Connection[Any], account: RoutingAccount) -> Any:
        """A ccxt.pro (websocket) exchange with the account's credentials, for its user
        stream; a new one per call (its connections belong to whoever runs it)."""
        creds = apikeys.decrypt(conn, self.box, account.api_key_id)
        return build_exchange(
            profile_for(account.exchange),
            creds.api_key.get_secret_value(),
            creds.api_secret.get_secret_value(),
            sandbox=account.trading_mode == "paper",
            base_url=self.base_urls.get(account.exchange),
            stream=True,
            ws_url=self.ws_urls.get(account.exchange),
        )

    def forget(self, account_id: int) -> None:
        self._built.pop(account_id, None)
