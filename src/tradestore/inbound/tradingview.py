"""TradingView alert intake (seed 001 §5.7), independent of the HTTP framework.

`receive` runs while TradingView waits (it gives up after 3 seconds):

1. store the request in system.inbound_alerts first, always: the raw body (the secret's
   value blanked out), the payload as jsonb (the body as a JSON string when it is not
   JSON), content type and source address;
2. judge it: source address (optional allowlist), size, JSON, the shared secret
   (constant-time), the alert schema, and the symbol/account/strategy it names;
3. deduplicate by idempotency key (public.idem_seen_status, which calls mark_idem_seen):
   a new key is ACCEPTED (202), the same key with the same payload hash is a DUPLICATE
   (200, no second effect), the same key with another hash is a CONFLICT held for review
   (409, and an alert is raised).

`process` is the slow part, run after the reply: place the order through the trading
core (trade.place_order, the full form of submit_order) with the alert's idempotency
key, then set parsed = true and order_id, or disposition ERROR and error. Either way a
system alert tells the user what happened. Accepted alerts whose processing was cut
short (a restart) are picked up by `process_pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from tradestore.db.errors import translate
from tradestore.inbound.alert_schema import AlertError, TradingViewAlert, validate_alert
from tradestore.inbound.config import WebhookSettings

__all__ = [
    "SOURCE",
    "Reply",
    "Target",
    "TradingViewIntake",
    "payload_hash",
    "redact_secret",
    "resolve",
]

log = logging.getLogger(__name__)

SOURCE = "tradingview"
MODULE_MISSING = (
    "the dedupe Plus module is not enabled, so TradingView alerts cannot be stored: "
    "run `tradestore modules enable dedupe`"
)
_SECRET_VALUE = re.compile(rb'("secret"\s*:\s*")((?:[^"\\]|\\.)*)(")')
_DIVISION = Context(prec=50)


@dataclass
class Reply:
    """The HTTP answer, and the alert to process after it is sent (if any)."""

    status: int
    body: dict[str, Any]
    process_alert_id: int | None = None


@dataclass(frozen=True)
class Target:
    account_id: int
    user_id: int
    exchange_instrument_id: int
    exchange: str
    exchange_symbol: str
    strategy_id: int | None = None


@dataclass
class _Parsed:
    text: str | None = None
    value: Any = None
    is_json: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)


def redact_secret(body: bytes) -> bytes:
    """The body with the value of every "secret" JSON member blanked out (seed 001 §10:
    no secrets in the database)."""
    return _SECRET_VALUE.sub(rb"\1[redacted]\3", body)


def payload_hash(payload: dict[str, Any]) -> str:
    """SHA-256 of the alert without its secret, in canonical JSON (sorted keys, no
    whitespace), so formatting and the secret do not make a replay look different."""
    canonical = json.dumps(
        {k: v for k, v in payload.items() if k != "secret"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _parse(body: bytes) -> _Parsed:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Parsed(
            errors=[{"field": "body", "rule": "must be UTF-8 JSON", "value": str(exc)[:200]}]
        )
    parsed = _Parsed(text=text)
    try:
        parsed.value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        parsed.is_json = True
    except (ValueError, RecursionError) as exc:
        parsed.errors = [{"field": "body", "rule": "must be JSON", "value": str(exc)[:200]}]
    return parsed


def _remote_ip(remote_addr: str | None) -> str | None:
    if not remote_addr:
        return None
    try:
        return str(ipaddress.ip_address(remote_addr))
    except ValueError:
        return None


class TradingViewIntake:
    def __init__(self, pool: AsyncConnectionPool[Any], settings: WebhookSettings) -> None:
        self.pool = pool
        self.settings = settings
        self._allowlist = settings.allowlist

    # ------------------------------------------------------------------ receive
    async def receive(
        self,
        body: bytes,
        *,
        truncated: bool = False,
        content_type: str | None = None,
        remote_addr: str | None = None,
    ) -> Reply:
        parsed = _parse(body) if not truncated else _Parsed()
        ip = _remote_ip(remote_addr)
        try:
            alert_id, stored_as_json = await self._store(body, parsed, content_type, ip)
        except errors.UndefinedTable:
            return Reply(503, {"status": "unavailable", "detail": MODULE_MISSING})
        except psycopg.OperationalError as exc:
            log.error("webhook could not store an alert: %s", exc)
            return Reply(503, {"status": "unavailable", "detail": "the database is unavailable"})
        try:
            return await self._judge(alert_id, parsed, stored_as_json, truncated, ip)
        except psycopg.OperationalError as exc:
            log.error("webhook alert %s stored but not judged: %s", alert_id, exc)
            return Reply(
                503,
                {
                    "status": "unavailable",
                    "alert_id": alert_id,
                    "detail": "stored, but the database became unavailable",
                },
            )

    async def _store(
        self, body: bytes, parsed: _Parsed, content_type: str | None, ip: str | None
    ) -> tuple[int, bool]:
        raw = redact_secret(body)
        params = {
            "source": SOURCE,
            "raw": raw,
            "ct": (content_type or "")[:200] or None,
            "addr": ip,
        }
        async with self.pool.connection() as conn:
            if parsed.is_json:
                try:
                    async with conn.transaction():
                        cur = await conn.execute(
                            "INSERT INTO system.inbound_alerts (source, payload, raw_body, content_type, remote_addr) "
                            "SELECT %(source)s, CASE WHEN jsonb_typeof(j) = 'object' AND j ? 'secret' "
                            "THEN jsonb_set(j, '{secret}', '\"[redacted]\"') ELSE j END, "
                            "%(raw)s, %(ct)s, %(addr)s FROM (SELECT %(payload)s::jsonb AS j) s RETURNING id",
                            {**params, "payload": parsed.text},
                        )
                        return int((await cur.fetchone())[0]), True  # type: ignore[index]
                except (
                    errors.DataError,
                    errors.ProgramLimitExceeded,
                    errors.StatementTooComplex,
                    errors.InternalError_,
                ):
                    pass  # JSON that jsonb refuses (\u0000, lone surrogates, huge numbers, depth)
            text = parsed.text if parsed.text is not None else raw.decode("utf-8", "replace")
            cur = await conn.execute(
                "INSERT INTO system.inbound_alerts (source, payload, raw_body, content_type, remote_addr) "
                "VALUES (%(source)s, to_jsonb(%(text)s::text), %(raw)s, %(ct)s, %(addr)s) RETURNING id",
                {
                    **params,
                    "text": redact_secret(text.encode("utf-8", "surrogatepass"))
                    .decode("utf-8", "replace")
                    .replace("\x00", "\ufffd"),
                },
            )
            return int((await cur.fetchone())[0]), False  # type: ignore[index]

    async def _finish(
        self,
        alert_id: int,
        disposition: str,
        error: str | None,
        *,
        key: str | None = None,
        hash_: str | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> None:
        query = (
            "UPDATE system.inbound_alerts SET disposition = %s, error = %s, dedupe_key = %s, "
            "payload_hash = %s, processed_at = CASE WHEN %s = 'ACCEPTED' THEN NULL ELSE now() END "
            "WHERE id = %s"
        )
        params = (disposition, error, key, hash_, disposition, alert_id)
        if conn is not None:
            await conn.execute(query, params)
            return
        async with self.pool.connection() as c:
            await c.execute(query, params)

    async def _judge(
        self, alert_id: int, parsed: _Parsed, stored_as_json: bool, truncated: bool, ip: str | None
    ) -> Reply:
        if self._allowlist and (
            ip is None or not any(ipaddress.ip_address(ip) in net for net in self._allowlist)
        ):
            await self._finish(
                alert_id, "REJECTED", f"remote_addr: not in WEBHOOK_IP_ALLOWLIST (value: {ip})"
            )
            return Reply(
                403,
                {
                    "status": "rejected",
                    "alert_id": alert_id,
                    "detail": "source address not allowed",
                },
            )
        if truncated:
            limit = self.settings.WEBHOOK_MAX_BODY_BYTES
            error = {
                "field": "body",
                "rule": f"must be at most {limit} bytes",
                "value": f">{limit}",
            }
            await self._finish(
                alert_id,
                "INVALID",
                f"body: must be at most {limit} bytes; raw_body holds the first {limit} bytes",
            )
            return Reply(413, {"status": "invalid", "alert_id": alert_id, "errors": [error]})
        secret = self.settings.secret()
        if secret is None:
            await self._finish(alert_id, "REJECTED", "TRADINGVIEW_WEBHOOK_SECRET is not configured")
            return Reply(
                503,
                {
                    "status": "unavailable",
                    "alert_id": alert_id,
                    "detail": "the webhook secret is not configured (TRADINGVIEW_WEBHOOK_SECRET)",
                },
            )
        if not parsed.is_json or not stored_as_json:
            errs = parsed.errors or [
                {
                    "field": "body",
                    "rule": "must be JSON that PostgreSQL can store "
                    "(no \\u0000, no unpaired surrogates, numbers in range)",
                    "value": None,
                }
            ]
            return await self._invalid(alert_id, errs, status=400)
        payload = parsed.value
        if not isinstance(payload, dict):
            return await self._invalid(
                alert_id,
                [
                    {
                        "field": "body",
                        "rule": "must be a JSON object",
                        "value": type(payload).__name__,
                    }
                ],
                status=400,
            )
        given = payload.get("secret")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), secret.encode("utf-8")
        ):
            await self._finish(alert_id, "REJECTED", "secret: missing or wrong")
            return Reply(
                401,
                {"status": "rejected", "alert_id": alert_id, "detail": "secret: missing or wrong"},
            )
        key = payload.get("idempotency_key")
        key = key if isinstance(key, str) and 0 < len(key) <= 200 and "\x00" not in key else None
        try:
            alert = validate_alert(payload)
        except AlertError as exc:
            return await self._invalid(alert_id, exc.errors, key=key)
        hash_ = payload_hash(payload)
        async with self.pool.connection() as conn, conn.transaction():
            try:
                target = await resolve(conn, alert)
            except AlertError as exc:
                await self._finish(alert_id, "INVALID", str(exc), key=key, hash_=hash_, conn=conn)
                return Reply(422, {"status": "invalid", "alert_id": alert_id, "errors": exc.errors})
            cur = await conn.execute(
                "SELECT public.idem_seen_status(%s, %s, %s)", (alert.idempotency_key, hash_, SOURCE)
            )
            verdict = (await cur.fetchone())[0]  # type: ignore[index]
            if verdict == "NEW":
                await self._finish(
                    alert_id, "ACCEPTED", None, key=alert.idempotency_key, hash_=hash_, conn=conn
                )
                return Reply(
                    202,
                    {
                        "status": "accepted",
                        "alert_id": alert_id,
                        "idempotency_key": alert.idempotency_key,
                        "order": {
                            "account_id": target.account_id,
                            "exchange": target.exchange,
                            "symbol": target.exchange_symbol,
                            "side": alert.side,
                            "order_type": alert.order_type,
                        },
                        "detail": "stored; the order is placed right after this reply",
                    },
                    process_alert_id=alert_id,
                )
            original = await (
                await conn.execute(
                    "SELECT id, disposition, order_id, error FROM system.inbound_alerts "
                    "WHERE dedupe_key = %s AND disposition IN ('ACCEPTED', 'ERROR')",
                    (alert.idempotency_key,),
                )
            ).fetchone()
            first = (
                {
                    "alert_id": original[0],
                    "status": original[1].lower(),
                    "order_id": original[2],
                    "error": original[3],
                }
                if original
                else None
            )
            if verdict == "DUPLICATE":
                await self._finish(
                    alert_id, "DUPLICATE", None, key=alert.idempotency_key, hash_=hash_, conn=conn
                )
                return Reply(
                    200,
                    {
                        "status": "duplicate",
                        "alert_id": alert_id,
                        "idempotency_key": alert.idempotency_key,
                        "original": first,
                        "detail": "already received; nothing was done again",
                    },
                )
            error = (
                f"idempotency_key: reused with a different payload (value: {alert.idempotency_key}); "
                f"held for review"
            )
            await self._finish(
                alert_id, "CONFLICT", error, key=alert.idempotency_key, hash_=hash_, conn=conn
            )
            await conn.execute(
                "SELECT public.raise_alert('HIGH', %s, 'inbound', %s::jsonb, 'WARNING')",
                (
                    f"TradingView alert {alert_id} reuses idempotency key {alert.idempotency_key!r} with a "
                    f"different payload; held for review",
                    json.dumps({"alert_id": alert_id, "original": first}),
                ),
            )
            return Reply(
                409,
                {
                    "status": "conflict",
                    "alert_id": alert_id,
                    "idempotency_key": alert.idempotency_key,
                    "original": first,
                    "detail": "this key was used before with a different payload; held for review",
                },
            )

    async def _invalid(
        self,
        alert_id: int,
        errs: list[dict[str, Any]],
        *,
        status: int = 422,
        key: str | None = None,
    ) -> Reply:
        message = "; ".join(f"{e['field']}: {e['rule']} (value: {e.get('value')!r})" for e in errs)
        await self._finish(alert_id, "INVALID", message[:2000], key=key)
        return Reply(status, {"status": "invalid", "alert_id": alert_id, "errors": errs})

    # ------------------------------------------------------------------ process
    async def process(self, alert_id: int) -> str | None:
        """Place the order of an ACCEPTED alert. Returns its final disposition, or None
        when there was nothing to do (already processed, or another worker has it)."""
        async with self.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "SELECT payload::text FROM system.inbound_alerts WHERE id = %s AND disposition = 'ACCEPTED' "
                    "AND processed_at IS NULL FOR UPDATE SKIP LOCKED",
                    (alert_id,),
                )
            ).fetchone()
            if row is None:
                return None
            try:
                async with conn.transaction():
                    alert = validate_alert(json.loads(row[0], parse_float=Decimal))
                    target = await resolve(conn, alert)
                    order_id = await _place_order(conn, alert_id, alert, target)
            except (AlertError, psycopg.DatabaseError) as exc:
                if isinstance(exc, psycopg.OperationalError):
                    raise
                error = str(translate(exc)) if isinstance(exc, psycopg.Error) else str(exc)
                await conn.execute(
                    "UPDATE system.inbound_alerts SET disposition = 'ERROR', error = %s, processed_at = now() "
                    "WHERE id = %s",
                    (error[:2000], alert_id),
                )
                await conn.execute(
                    "SELECT public.raise_alert('HIGH', %s, 'inbound', %s::jsonb, 'ERROR')",
                    (
                        f"TradingView alert {alert_id}: no order placed: {error}"[:2000],
                        json.dumps({"alert_id": alert_id}),
                    ),
                )
                return "ERROR"
            await conn.execute(
                "UPDATE system.inbound_alerts SET parsed = true, order_id = %s, error = NULL, processed_at = now() "
                "WHERE id = %s",
                (order_id, alert_id),
            )
            await conn.execute(
                "UPDATE system.inbound_dedupe_keys SET processed = true WHERE idempotency_key = %s",
                (alert.idempotency_key,),
            )
            await conn.execute(
                "SELECT public.raise_alert('LOW', %s, 'inbound', %s::jsonb, 'TRADE_SIGNAL', NULL, %s)",
                (
                    f"TradingView alert {alert_id}: order {order_id} placed ({alert.side} {alert.order_type} "
                    f"{target.exchange_symbol} on {target.exchange})",
                    json.dumps({"alert_id": alert_id, "order_id": order_id}),
                    target.user_id,
                ),
            )
            return "ACCEPTED"

    async def process_safely(self, alert_id: int) -> None:
        """`process` for a background task: never raises (the sweep retries later)."""
        try:
            await self.process(alert_id)
        except Exception:
            log.exception("processing TradingView alert %s failed; it will be retried", alert_id)

    async def process_pending(self, min_age_seconds: float = 0.0) -> int:
        """Process ACCEPTED alerts that have no order yet (older than min_age_seconds)."""
        done = 0
        async with self.pool.connection() as conn:
            try:
                rows = await (
                    await conn.execute(
                        "SELECT id FROM system.inbound_alerts WHERE disposition = 'ACCEPTED' AND processed_at IS NULL "
                        "AND received_at <= now() - make_interval(secs => %s) ORDER BY id LIMIT 500",
                        (min_age_seconds,),
                    )
                ).fetchall()
            except errors.UndefinedTable:
                return 0
        for (alert_id,) in rows:
            if await self.process(alert_id):
                done += 1
        return done

    async def sweep_forever(self, interval: float = 60.0) -> None:
        """Recover accepted alerts whose processing was cut short (at start, then every
        `interval` seconds)."""
        min_age = 0.0
        while True:
            with contextlib.suppress(psycopg.Error, OSError):
                await self.process_pending(min_age)
            min_age = 10.0  # leave fresh alerts to their own background task
            await asyncio.sleep(interval)


async def resolve(conn: psycopg.AsyncConnection[Any], alert: TradingViewAlert) -> Target:
    """Map the alert to an account, a listing (exchange code + exchange_symbol) and a
    strategy, or raise AlertError naming what does not exist."""
    if isinstance(alert.account, int):
        accounts = await _accounts(conn, "a.id = %s", alert.account)
    else:
        accounts = await _accounts(conn, "a.name = %s", alert.account)
        if not accounts and alert.account.isdigit():
            accounts = await _accounts(conn, "a.id = %s", int(alert.account))
    if not accounts:
        raise AlertError(
            [{"field": "account", "rule": "must name an existing account", "value": alert.account}]
        )
    if len(accounts) > 1:
        raise AlertError(
            [
                {
                    "field": "account",
                    "rule": f"is ambiguous ({len(accounts)} accounts have this "
                    "name): use the account id",
                    "value": alert.account,
                }
            ]
        )
    account_id, user_id, account_exchange, active = accounts[0]
    if not active:
        raise AlertError(
            [{"field": "account", "rule": "must be an active account", "value": alert.account}]
        )
    exchange = alert.exchange_code or account_exchange
    if exchange is None:
        raise AlertError(
            [
                {
                    "field": "exchange",
                    "rule": "is required: the account is not tied to an exchange",
                    "value": None,
                }
            ]
        )
    if account_exchange is not None and exchange != account_exchange:
        raise AlertError(
            [
                {
                    "field": "exchange",
                    "rule": f"must be the account's exchange ({account_exchange})",
                    "value": exchange,
                }
            ]
        )
    listings = await (
        await conn.execute(
            "SELECT ei.id, ei.status, ei.exchange_symbol FROM market.exchange_instruments ei "
            "JOIN market.exchanges e ON e.id = ei.exchange_id "
            "WHERE e.code = %s AND upper(ei.exchange_symbol) = upper(%s) "
            "ORDER BY ei.exchange_symbol = %s DESC LIMIT 1",
            (exchange, alert.exchange_symbol, alert.exchange_symbol),
        )
    ).fetchall()
    if not listings:
        raise AlertError(
            [
                {
                    "field": "symbol",
                    "rule": f"must be listed on {exchange}",
                    "value": alert.exchange_symbol,
                }
            ]
        )
    listing_id, status, symbol = listings[0]
    if status != "TRADING":
        raise AlertError(
            [{"field": "symbol", "rule": f"listing is {status}, not TRADING", "value": symbol}]
        )
    strategy_id = None
    if alert.strategy is not None:
        row = await (
            await conn.execute(
                "SELECT id FROM analytics.strategies WHERE user_id = %s AND name = %s ORDER BY id LIMIT 1",
                (user_id, alert.strategy),
            )
        ).fetchone()
        if row is None:
            raise AlertError(
                [
                    {
                        "field": "strategy",
                        "rule": "must name a strategy of the account's user",
                        "value": alert.strategy,
                    }
                ]
            )
        strategy_id = row[0]
    return Target(account_id, user_id, listing_id, exchange, symbol, strategy_id)


async def _accounts(
    conn: psycopg.AsyncConnection[Any], where: str, value: Any
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT a.id, a.user_id, e.code, a.is_active FROM account.accounts a "
        f"LEFT JOIN market.exchanges e ON e.id = a.exchange_id WHERE {where} ORDER BY a.id LIMIT 5",
        (value,),
    )
    return await cur.fetchall()


async def _place_order(
    conn: psycopg.AsyncConnection[Any], alert_id: int, alert: TradingViewAlert, target: Target
) -> int:
    quantity = alert.quantity
    if quantity is None:
        assert alert.notional is not None
        reference = alert.price or alert.stop_price
        if reference is None:
            row = await (
                await conn.execute(
                    "SELECT market.latest_price(%s)", (target.exchange_instrument_id,)
                )
            ).fetchone()
            reference = row[0] if row else None
        if reference is None:
            raise AlertError(
                [
                    {
                        "field": "notional",
                        "rule": "needs a price to convert: give price, or load "
                        "market data for the listing",
                        "value": str(alert.notional),
                    }
                ]
            )
        # Rounded down to the listing's step size by the orders trigger.
        quantity = _DIVISION.divide(alert.notional, Decimal(reference))
    cur = await conn.execute(
        "SELECT trade.place_order(p_account_id => %s, p_exchange_instrument_id => %s, p_side => %s, "
        "p_order_type => %s, p_quantity => %s, p_price => %s, p_idempotency_key => %s, "
        "p_client_order_id => %s, p_stop_price => %s, p_strategy_id => %s, p_source => 'WEBHOOK', "
        "p_notes => %s)",
        (
            target.account_id,
            target.exchange_instrument_id,
            alert.side,
            alert.order_type,
            quantity,
            alert.price if alert.order_type == "LIMIT" else None,
            alert.idempotency_key,
            f"tv-{alert_id}",
            alert.stop_price if alert.order_type == "STOP" else None,
            target.strategy_id,
            alert.comment or f"TradingView alert {alert_id}",
        ),
    )
    return int((await cur.fetchone())[0])  # type: ignore[index]
