"""The order router: sends the outbox (trade.order_routes) to the exchanges.

One pass (`Router.run_once`):

1. claim due rows (`trade.claim_order_routes`: FOR UPDATE SKIP LOCKED, so several
   routers share the work) and COMMIT, so the rows say SENDING / CANCELING before any
   exchange is called;
2. for a send that may have reached the exchange before (`resume`: an earlier attempt
   failed or its router died), look the order up by its client order id, and record it
   as SENT if the exchange has it; otherwise send it with that client order id;
3. record the outcome, each in its own transaction: SENT (with the exchange's order id),
   REJECTED (the order is REJECTED with the exchange's reason), CANCELED, or a retry
   after a backoff on network errors (429s included). Authentication errors raise an
   alert and stop routing for that account until the router is restarted.

A crash anywhere leaves rows SENDING with a lease; once the lease ends another (or the
restarted) router claims them with `resume` set, so an order is never sent twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ccxt
import psycopg
from psycopg.rows import dict_row

from tradestore.db.errors import TradestoreError
from tradestore.trading.exchange.accounts import ConnectorFactory, RoutingAccount, routing_accounts
from tradestore.trading.exchange.connector import Connector, scrub

log = logging.getLogger("tradestore.exchange.router")
# NOTIFY channel of trade.trg_orders_route_enqueue / trg_orders_route_cancel.
CHANNEL = "tradestore_routes"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class RouterPass:
    """What one pass did, by order id."""

    sent: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)  # resumed: the exchange already had it
    rejected: list[int] = field(default_factory=list)
    canceled: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    halted_accounts: list[int] = field(default_factory=list)

    @property
    def worked(self) -> int:
        return sum(
            len(x)
            for x in (
                self.sent,
                self.found,
                self.rejected,
                self.canceled,
                self.retried,
                self.failed,
            )
        )


@dataclass
class Router:
    """Routes the outbox of every routing account (or of `account_ids`)."""

    conn: psycopg.Connection[Any]  # autocommit
    connectors: ConnectorFactory
    account_ids: list[int] | None = None
    lease: dt.timedelta = dt.timedelta(seconds=30)
    batch: int = 20
    max_attempts: int = 10
    backoff: dt.timedelta = dt.timedelta(seconds=1)
    max_backoff: dt.timedelta = dt.timedelta(minutes=5)
    clock: Callable[[], dt.datetime] = _utcnow
    halted: dict[int, str] = field(default_factory=dict)

    def _accounts(self) -> dict[int, RoutingAccount]:
        found = {a.account_id: a for a in routing_accounts(self.conn)}
        if self.account_ids is not None:
            found = {k: v for k, v in found.items() if k in self.account_ids}
        return {k: v for k, v in found.items() if k not in self.halted}

    def run_once(self) -> RouterPass:
        result = RouterPass()
        accounts = self._accounts()
        if not accounts:
            return result
        now = self.clock()
        with self.conn.cursor(row_factory=dict_row) as cur:
            claims = cur.execute(
                "SELECT r.*, ei.exchange_symbol, i.symbol, o.side, o.order_type, o.quantity, o.price "
                "FROM trade.claim_order_routes(%s, %s, %s, %s) r "
                "JOIN trade.orders o ON o.id = r.order_id "
                "JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id "
                "JOIN market.instruments i ON i.id = ei.instrument_id",
                (self.batch, self.lease, now, list(accounts)),
            ).fetchall()
        # Autocommit: the claim is committed here, before any exchange call.
        for claim in claims:
            account = accounts[claim["account_id"]]
            if account.account_id in self.halted:
                self._release(claim, "routing halted for this account", now, result)
                continue
            try:
                connector = self.connectors.for_account(self.conn, account)
                if claim["action"] == "SEND":
                    self._send(connector, claim, result)
                else:
                    self._cancel(connector, claim, result)
            except ccxt.AuthenticationError as exc:
                self._halt(account, claim, scrub(exc), now, result)
            except TradestoreError as exc:  # key disabled or undecryptable, no testnet
                self._halt(account, claim, scrub(exc), now, result)
            except ccxt.NetworkError as exc:
                self._retry(claim, scrub(exc), now, result)
        return result

    # ------------------------------------------------------------------ sends
    def _send(self, connector: Connector, claim: dict[str, Any], result: RouterPass) -> None:
        order_id, cid, symbol = claim["order_id"], claim["client_order_id"], claim["symbol"]
        if claim["resume"]:
            existing = connector.find_order(symbol, cid)
            if existing is not None:
                self._record("SELECT trade.route_sent(%s, %s)", (order_id, str(existing["id"])))
                result.found.append(order_id)
                log.info("order %s: found on %s by client id, not resent", order_id, connector.id)
                return
        try:
            placed = connector.create_order(
                symbol,
                claim["side"],
                claim["order_type"],
                Decimal(claim["quantity"]),
                claim["price"],
                cid,
            )
        except (ccxt.AuthenticationError, ccxt.NetworkError):
            raise
        except ccxt.ExchangeError as exc:
            reason = connector.scrub(exc)
            self._record("SELECT trade.route_rejected(%s, %s)", (order_id, reason))
            result.rejected.append(order_id)
            log.info("order %s: rejected by %s: %s", order_id, connector.id, reason)
            return
        self._record("SELECT trade.route_sent(%s, %s)", (order_id, str(placed["id"])))
        result.sent.append(order_id)

    # ------------------------------------------------------------------ cancels
    def _cancel(self, connector: Connector, claim: dict[str, Any], result: RouterPass) -> None:
        order_id = claim["order_id"]
        try:
            connector.cancel_order(claim["exchange_order_id"], claim["symbol"])
            note = None
        except ccxt.OrderNotFound as exc:
            # Filled or canceled there already: its fills come through fill sync.
            note = f"not open on the exchange: {connector.scrub(exc)}"
        self._record("SELECT trade.route_canceled(%s, %s)", (order_id, note))
        result.canceled.append(order_id)

    # ------------------------------------------------------------------ outcomes
    def _record(self, query: str, params: tuple[Any, ...]) -> None:
        with self.conn.transaction():
            self.conn.execute(query, params)

    def _retry(
        self, claim: dict[str, Any], error: str, now: dt.datetime, result: RouterPass
    ) -> None:
        order_id = claim["order_id"]
        if claim["attempts"] >= self.max_attempts:
            self._record(
                "SELECT trade.route_failed(%s, %s)",
                (order_id, f"{claim['attempts']} attempts, last: {error}"),
            )
            result.failed.append(order_id)
            return
        delay = min(self.backoff * 2 ** (claim["attempts"] - 1), self.max_backoff)
        self._record("SELECT trade.route_retry(%s, %s, %s)", (order_id, error, now + delay))
        result.retried.append(order_id)
        log.warning("order %s: %s; retry in %s", order_id, error, delay)

    def _release(
        self, claim: dict[str, Any], error: str, now: dt.datetime, result: RouterPass
    ) -> None:
        self._record("SELECT trade.route_retry(%s, %s, %s)", (claim["order_id"], error, now))

    def _halt(
        self,
        account: RoutingAccount,
        claim: dict[str, Any],
        error: str,
        now: dt.datetime,
        result: RouterPass,
    ) -> None:
        """The exchange refused the key: stop this account, tell a person."""
        self.halted[account.account_id] = error
        self.connectors.forget(account.account_id)
        self._release(claim, f"authentication failed: {error}", now, result)
        result.halted_accounts.append(account.account_id)
        self._record(
            "INSERT INTO system.alerts (alert_type, severity, module, message, data, user_id, "
            "dedupe_key) VALUES ('ERROR', 'CRITICAL', 'exchange', %s, %s, %s, %s)",
            (
                f"account {account.account_id}: {account.exchange} refused the API key; "
                f"routing stopped for this account: {error}",
                psycopg.types.json.Jsonb(
                    {
                        "kind": "EXCHANGE_AUTH_FAILED",
                        "account_id": account.account_id,
                        "api_key_id": account.api_key_id,
                    }
                ),
                account.user_id,
                f"exchange-auth:{account.account_id}",
            ),
        )
        log.error("account %s: authentication failed, routing stopped", account.account_id)

    def run_forever(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        """Pass after pass until stop is set. With nothing to do it waits for a NOTIFY on
        CHANNEL (sent when an order is queued or a cancel requested, at its commit) or
        idle_s at most (retries that come due, expired leases), so a new order is sent as
        soon as it is committed rather than at the next poll."""
        # psycopg keeps notifications that arrive during a pass (while a statement runs)
        # and notifies() hands them over first, so none is lost between passes.
        self.conn.execute(f"LISTEN {CHANNEL}")
        try:
            while not stop.is_set():
                if self.run_once().worked == 0:
                    for _ in self.conn.notifies(timeout=idle_s, stop_after=1):
                        pass
        finally:
            if not self.conn.closed:
                self.conn.execute(f"UNLISTEN {CHANNEL}")
