"""TradingView alert intake (seed 001 §5.7), independent of the HTTP framework.

Before anything is read or stored, the route counts the request against the source
address's rate limit (`admit`, 429 beyond it). Then `receive` runs while TradingView
waits (it gives up after 3 seconds):

1. authenticate: the body's "secret" must be a live per-user webhook credential
   (tradestore.inbound.credentials; SHA-256 compared in constant time), or the legacy
   TRADINGVIEW_WEBHOOK_SECRET of TRADINGVIEW_WEBHOOK_USER. The credential's owner is the
   only user the alert may act for;
2. store the request in system.inbound_alerts, always, before any verdict: the raw body
   (secret-bearing members redacted by their parsed name), the payload as jsonb (the
   body as a JSON string when it is not JSON), content type, source address and the
   authenticated owner. Oversized bodies and bodies of unauthenticated requests are
   kept only up to WEBHOOK_STORED_BODY_BYTES (raw_truncated);
3. judge it: source address (optional allowlist), size, JSON, authentication, the alert
   schema, and the symbol/account/strategy it names (accounts and strategies of the
   owner only: another user's look exactly like ones that do not exist);
4. deduplicate by the owner's idempotency key (public.idem_seen_status): a new key is
   ACCEPTED (202), the same key with the same payload hash is a DUPLICATE (200, no
   second effect), the same key with another hash is a CONFLICT held for review (409,
   and an alert is raised for the owner).

`process` is the slow part, run after the reply: place the order through the trading
core (trade.place_order, the full form of submit_order) with the alert's idempotency
key, then set parsed = true and order_id, or disposition ERROR and error. Either way an
alert owned by the user tells them what happened. Accepted alerts whose processing was
cut short are picked up by `process_pending`; alerts stored but never judged by
`tradestore.inbound.sweep.sweep_unjudged`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from tradestore.cache.client import Cache
from tradestore.cache.ratelimit import Decision, Limit, RateLimiter
from tradestore.db.errors import translate
from tradestore.inbound import credentials
from tradestore.inbound.alert_schema import AlertError, TradingViewAlert, validate_alert
from tradestore.inbound.config import WebhookSettings
from tradestore.inbound.redaction import WITHHELD, redact_body

__all__ = [
    "SOURCE",
    "Facts",
    "Owner",
    "Reply",
    "Target",
    "TradingViewIntake",
    "judge",
    "owner_problem",
    "payload_hash",
    "process_alert",
    "redact_secret",
    "resolve",
]

log = logging.getLogger(__name__)

SOURCE = "tradingview"
MODULE_MISSING = (
    "the dedupe Plus module is not enabled, so TradingView alerts cannot be stored: "
    "run `tradestore modules enable dedupe`"
)
# Roles whose credentials may place orders (a credential of a readonly user never acts).
TRADING_ROLES = ("trader", "admin")
_DIVISION = Context(prec=50)


@dataclass
class Reply:
    """The HTTP answer, and the alert to process after it is sent (if any)."""

    status: int
    body: dict[str, Any]
    process_alert_id: int | None = None


@dataclass(frozen=True)
class Owner:
    """The user a request authenticated as, and the credential (None: the legacy secret)."""

    user_id: int
    credential_id: int | None = None


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


@dataclass
class Facts:
    """What the judge needs to know about a stored alert."""

    value: Any = None
    is_json: bool = False
    parse_errors: list[dict[str, Any]] = field(default_factory=list)
    owner: Owner | None = None
    truncated: bool = False
    ip: str | None = None


def redact_secret(body: bytes) -> bytes:
    """The body with the value of every secret-bearing member redacted (seed 001 §10: no
    secrets in the database); see tradestore.inbound.redaction."""
    return redact_body(body)


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


def _prefix(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes, not cutting a UTF-8 character in two."""
    cut = data[:limit]
    while cut and len(cut) < len(data) and (data[len(cut)] & 0xC0) == 0x80:
        cut = cut[:-1]
    return cut


async def authenticate(
    conn: psycopg.AsyncConnection[Any], payload: Any, settings: WebhookSettings
) -> Owner | None:
    """The owner of the credential in the payload's "secret", or None. Unknown, wrong,
    revoked, and credentials of users who may not trade are all simply None."""
    given = payload.get("secret") if isinstance(payload, dict) else None
    if not isinstance(given, str) or len(given) > 200:
        return None
    token_id = credentials.parse_token(given)
    if token_id is not None:
        row = await (
            await conn.execute(
                "SELECT c.id, c.user_id, c.secret_hash, u.role, u.is_active "
                "FROM system.webhook_credentials c JOIN account.users u ON u.id = c.user_id "
                "WHERE c.token_id = %s AND c.revoked_at IS NULL",
                (token_id,),
            )
        ).fetchone()
        if not credentials.verify_hash(given, row[2] if row else None):
            return None
        assert row is not None
        if not row[4] or row[3] not in TRADING_ROLES:
            return None
        await conn.execute(
            "UPDATE system.webhook_credentials SET last_used_at = now() WHERE id = %s", (row[0],)
        )
        return Owner(int(row[1]), int(row[0]))
    legacy = settings.secret()
    if legacy is None or not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), legacy.encode("utf-8")
    ):
        return None
    row = await (
        await conn.execute(
            "SELECT id, role, is_active FROM account.users WHERE username = %s",
            (settings.TRADINGVIEW_WEBHOOK_USER,),
        )
    ).fetchone()
    if row is None or not row[2] or row[1] not in TRADING_ROLES:
        log.warning("TRADINGVIEW_WEBHOOK_USER does not name an active trader; secret ignored")
        return None
    return Owner(int(row[0]), None)


async def _finish(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    disposition: str,
    error: str | None,
    *,
    key: str | None = None,
    hash_: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE system.inbound_alerts SET disposition = %s, error = %s, dedupe_key = %s, "
        "payload_hash = %s, processed_at = CASE WHEN %s = 'ACCEPTED' THEN NULL ELSE now() END "
        "WHERE id = %s",
        (disposition, error, key, hash_, disposition, alert_id),
    )


async def _invalid(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    errs: list[dict[str, Any]],
    *,
    status: int = 422,
    key: str | None = None,
    hash_: str | None = None,
) -> Reply:
    message = "; ".join(f"{e['field']}: {e['rule']} (value: {e.get('value')!r})" for e in errs)
    await _finish(conn, alert_id, "INVALID", message[:2000], key=key, hash_=hash_)
    return Reply(status, {"status": "invalid", "alert_id": alert_id, "errors": errs})


async def judge(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    facts: Facts,
    settings: WebhookSettings,
    *,
    skip_locked: bool = False,
    recheck_owner: bool = False,
) -> Reply:
    """Judge the stored alert `alert_id` (still RECEIVED) in one transaction and record
    the verdict. With skip_locked, an alert another session is judging is left alone.
    With recheck_owner (an alert judged late), the owner's authentication is asked again:
    a credential revoked or rotated since the alert arrived, or an owner who may no longer
    trade, makes it REJECTED."""
    async with conn.transaction():
        locked = await (
            await conn.execute(
                "SELECT disposition FROM system.inbound_alerts WHERE id = %s FOR UPDATE"
                + (" SKIP LOCKED" if skip_locked else ""),
                (alert_id,),
            )
        ).fetchone()
        if locked is None or locked[0] != "RECEIVED":
            # judged meanwhile (by the sweep): say what it became, nothing more
            state = locked[0].lower() if locked else "unknown"
            return Reply(200, {"status": state, "alert_id": alert_id})
        return await _judge_locked(conn, alert_id, facts, settings, recheck_owner)


async def owner_problem(
    conn: psycopg.AsyncConnection[Any], alert_id: int, owner: Owner, settings: WebhookSettings
) -> str | None:
    """Why the authenticated alert may no longer act for its owner, or None (see
    system.inbound_alert_owner_problem; the legacy secret is checked here against the
    current settings: it must still be set and still name the owner)."""
    row = await (
        await conn.execute("SELECT system.inbound_alert_owner_problem(%s)", (alert_id,))
    ).fetchone()
    if row is not None and row[0] is not None:
        return str(row[0])
    if owner.credential_id is not None:
        return None
    legacy = None
    if settings.secret() is not None and settings.TRADINGVIEW_WEBHOOK_USER:
        legacy = await (
            await conn.execute(
                "SELECT id FROM account.users WHERE username = %s",
                (settings.TRADINGVIEW_WEBHOOK_USER,),
            )
        ).fetchone()
    if legacy is None or int(legacy[0]) != owner.user_id:
        return (
            "secret: the legacy TRADINGVIEW_WEBHOOK_SECRET no longer acts for the alert's owner "
            f"(value: user {owner.user_id}); no order placed"
        )
    return None


async def _judge_locked(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    facts: Facts,
    settings: WebhookSettings,
    recheck_owner: bool = False,
) -> Reply:
    allowlist = settings.allowlist
    ip = facts.ip
    if allowlist and (ip is None or not any(ipaddress.ip_address(ip) in n for n in allowlist)):
        await _finish(
            conn, alert_id, "REJECTED", f"remote_addr: not in WEBHOOK_IP_ALLOWLIST (value: {ip})"
        )
        return Reply(
            403,
            {"status": "rejected", "alert_id": alert_id, "detail": "source address not allowed"},
        )
    if facts.truncated:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        kept = settings.WEBHOOK_STORED_BODY_BYTES
        error = {"field": "body", "rule": f"must be at most {limit} bytes", "value": f">{limit}"}
        await _finish(
            conn,
            alert_id,
            "INVALID",
            f"body: must be at most {limit} bytes; raw_body holds at most the first {kept} bytes",
        )
        return Reply(413, {"status": "invalid", "alert_id": alert_id, "errors": [error]})
    if not facts.is_json:
        errs = facts.parse_errors or [
            {
                "field": "body",
                "rule": "must be JSON that PostgreSQL can store "
                "(no \\u0000, no unpaired surrogates, numbers in range)",
                "value": None,
            }
        ]
        return await _invalid(conn, alert_id, errs, status=400)
    payload = facts.value
    if not isinstance(payload, dict):
        errs = [{"field": "body", "rule": "must be a JSON object", "value": type(payload).__name__}]
        return await _invalid(conn, alert_id, errs, status=400)
    owner = facts.owner
    if owner is None:
        await _finish(conn, alert_id, "REJECTED", "secret: missing or wrong")
        return Reply(
            401, {"status": "rejected", "alert_id": alert_id, "detail": "secret: missing or wrong"}
        )
    problem = await owner_problem(conn, alert_id, owner, settings) if recheck_owner else None
    if problem is not None:
        await _finish(conn, alert_id, "REJECTED", problem)
        return Reply(401, {"status": "rejected", "alert_id": alert_id, "detail": problem})
    key = payload.get("idempotency_key")
    key = key if isinstance(key, str) and 0 < len(key) <= 200 and "\x00" not in key else None
    try:
        alert = validate_alert(payload)
    except AlertError as exc:
        return await _invalid(conn, alert_id, exc.errors, key=key)
    hash_ = payload_hash(payload)
    try:
        target = await resolve(conn, alert, owner.user_id)
    except AlertError as exc:
        await _finish(conn, alert_id, "INVALID", str(exc), key=key, hash_=hash_)
        return Reply(422, {"status": "invalid", "alert_id": alert_id, "errors": exc.errors})
    verdict = (
        await (
            await conn.execute(
                "SELECT public.idem_seen_status(%s, %s, %s, %s)",
                (alert.idempotency_key, hash_, SOURCE, owner.user_id),
            )
        ).fetchone()
    )[0]  # type: ignore[index]
    if verdict == "NEW":
        await _finish(conn, alert_id, "ACCEPTED", None, key=alert.idempotency_key, hash_=hash_)
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
    # The key is the owner's: the alert that counts for it is the owner's own.
    original = await (
        await conn.execute(
            "SELECT id, disposition, order_id, error FROM system.inbound_alerts "
            "WHERE user_id = %s AND dedupe_key = %s AND disposition IN ('ACCEPTED', 'ERROR')",
            (owner.user_id, alert.idempotency_key),
        )
    ).fetchone()
    first = (
        {"alert_id": original[0], "status": original[1].lower(), "order_id": original[2],
         "error": original[3]}
        if original
        else None
    )  # fmt: skip
    if verdict == "DUPLICATE":
        await _finish(conn, alert_id, "DUPLICATE", None, key=alert.idempotency_key, hash_=hash_)
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
    await _finish(conn, alert_id, "CONFLICT", error, key=alert.idempotency_key, hash_=hash_)
    await conn.execute(
        "SELECT public.raise_alert('HIGH', %s, 'inbound', %s::jsonb, 'WARNING', NULL, %s)",
        (
            f"TradingView alert {alert_id} reuses idempotency key {alert.idempotency_key!r} with a "
            f"different payload; held for review",
            json.dumps({"alert_id": alert_id, "original": first}),
            owner.user_id,
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


async def process_alert(conn: psycopg.AsyncConnection[Any], alert_id: int) -> str | None:
    """Place the order of an ACCEPTED alert, for its owner. Returns its final disposition,
    or None when there was nothing to do (already processed, or another worker has it)."""
    async with conn.transaction():
        row = await (
            await conn.execute(
                "SELECT payload::text, user_id FROM system.inbound_alerts WHERE id = %s "
                "AND disposition = 'ACCEPTED' AND processed_at IS NULL FOR UPDATE SKIP LOCKED",
                (alert_id,),
            )
        ).fetchone()
        if row is None:
            return None
        owner_id: int = row[1]
        try:
            async with conn.transaction():
                alert = validate_alert(json.loads(row[0], parse_float=Decimal))
                target = await resolve(conn, alert, owner_id)
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
                "SELECT public.raise_alert('HIGH', %s, 'inbound', %s::jsonb, 'ERROR', NULL, %s)",
                (
                    f"TradingView alert {alert_id}: no order placed: {error}"[:2000],
                    json.dumps({"alert_id": alert_id}),
                    owner_id,
                ),
            )
            return "ERROR"
        await conn.execute(
            "UPDATE system.inbound_alerts SET parsed = true, order_id = %s, error = NULL, processed_at = now() "
            "WHERE id = %s",
            (order_id, alert_id),
        )
        await conn.execute(
            "UPDATE system.inbound_dedupe_keys SET processed = true "
            "WHERE user_id = %s AND idempotency_key = %s",
            (owner_id, alert.idempotency_key),
        )
        await conn.execute(
            "SELECT public.raise_alert('LOW', %s, 'inbound', %s::jsonb, 'TRADE_SIGNAL', NULL, %s)",
            (
                f"TradingView alert {alert_id}: order {order_id} placed ({alert.side} {alert.order_type} "
                f"{target.exchange_symbol} on {target.exchange})",
                json.dumps({"alert_id": alert_id, "order_id": order_id}),
                owner_id,
            ),
        )
        return "ACCEPTED"


class TradingViewIntake:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        settings: WebhookSettings,
        cache: Cache | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self._limiter = (
            RateLimiter(cache, Limit(settings.WEBHOOK_RATE_LIMIT_PER_IP, 60)) if cache else None
        )

    # ------------------------------------------------------------------ admit
    async def admit(self, remote_addr: str | None) -> Decision | None:
        """Count a request against its source address's limit, before its body is read;
        None when there is no limiter (no cache)."""
        if self._limiter is None:
            return None
        ip = _remote_ip(remote_addr) or "unknown"
        return await asyncio.to_thread(self._limiter.hit_subject, "webhook", ip)

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
        if parsed.is_json and redact_secret(body) == WITHHELD:
            # a secret-bearing member that is an object or array: nothing of it is kept
            parsed = _Parsed(
                errors=[{"field": "secret", "rule": "must be a string", "value": None}]
            )
        ip = _remote_ip(remote_addr)
        try:
            async with self.pool.connection() as conn:
                owner = (
                    await authenticate(conn, parsed.value, self.settings)
                    if parsed.is_json
                    else None
                )
                alert_id, stored_as_json = await self._store(
                    conn, body, parsed, content_type, ip, owner, truncated
                )
        except errors.UndefinedTable:
            return Reply(503, {"status": "unavailable", "detail": MODULE_MISSING})
        except psycopg.OperationalError as exc:
            log.error("webhook could not store an alert: %s", exc)
            return Reply(503, {"status": "unavailable", "detail": "the database is unavailable"})
        facts = Facts(
            value=parsed.value,
            is_json=parsed.is_json and stored_as_json,
            parse_errors=parsed.errors,
            owner=owner if stored_as_json else None,
            truncated=truncated,
            ip=ip,
        )
        try:
            async with self.pool.connection() as conn:
                return await judge(conn, alert_id, facts, self.settings)
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
        self,
        conn: psycopg.AsyncConnection[Any],
        body: bytes,
        parsed: _Parsed,
        content_type: str | None,
        ip: str | None,
        owner: Owner | None,
        truncated: bool,
    ) -> tuple[int, bool]:
        raw = redact_secret(body)
        cap = self.settings.WEBHOOK_STORED_BODY_BYTES
        # Only an authenticated request of acceptable size is kept whole.
        cut = truncated or (owner is None and len(raw) > cap)
        if cut:
            raw = _prefix(raw, cap)
        params = {
            "source": SOURCE,
            "raw": raw,
            "cut": cut,
            "ct": (content_type or "")[:200] or None,
            "addr": ip,
            "user": owner.user_id if owner else None,
            "cred": owner.credential_id if owner else None,
        }
        columns = (
            "INSERT INTO system.inbound_alerts (source, payload, raw_body, raw_truncated, "
            "content_type, remote_addr, user_id, credential_id) "
        )
        if parsed.is_json and not cut:
            try:
                async with conn.transaction():
                    # The redacted raw text is the payload: what jsonb keeps is redacted too.
                    cur = await conn.execute(
                        columns + "SELECT %(source)s, j, %(raw)s, %(cut)s, %(ct)s, %(addr)s, "
                        "%(user)s, %(cred)s FROM (SELECT convert_from(%(raw)s, 'UTF8')::jsonb AS j) s "
                        "RETURNING id",
                        params,
                    )
                    return int((await cur.fetchone())[0]), True  # type: ignore[index]
            except (
                errors.DataError,
                errors.ProgramLimitExceeded,
                errors.StatementTooComplex,
                errors.InternalError_,
                errors.CharacterNotInRepertoire,
            ):
                pass  # JSON that jsonb refuses (\u0000, lone surrogates, huge numbers, depth)
        text = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
        cur = await conn.execute(
            columns + "VALUES (%(source)s, to_jsonb(%(text)s::text), %(raw)s, %(cut)s, %(ct)s, "
            "%(addr)s, NULL, NULL) RETURNING id",
            {**params, "text": text},
        )
        # A body cut short is still judged as what it parsed to (it cannot be accepted:
        # only unauthenticated or oversized bodies are cut).
        return int((await cur.fetchone())[0]), cut and parsed.is_json  # type: ignore[index]

    # ------------------------------------------------------------------ process
    async def process(self, alert_id: int) -> str | None:
        async with self.pool.connection() as conn:
            return await process_alert(conn, alert_id)

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

    async def sweep_unjudged(self, min_age_seconds: float = 10.0) -> dict[str, int]:
        from tradestore.inbound.sweep import sweep_unjudged

        async with self.pool.connection() as conn:
            return await sweep_unjudged(conn, self.settings, min_age_seconds=min_age_seconds)

    async def sweep_forever(self, interval: float = 60.0) -> None:
        """Judge alerts stored but never judged, and recover accepted alerts whose
        processing was cut short (at start, then every `interval` seconds)."""
        min_age = 0.0
        while True:
            with contextlib.suppress(psycopg.Error, OSError):
                await self.sweep_unjudged()
            with contextlib.suppress(psycopg.Error, OSError):
                await self.process_pending(min_age)
            min_age = 10.0  # leave fresh alerts to their own background task
            await asyncio.sleep(interval)


async def resolve(
    conn: psycopg.AsyncConnection[Any], alert: TradingViewAlert, owner_id: int
) -> Target:
    """Map the alert to an account of `owner_id`, a listing (exchange code +
    exchange_symbol) and a strategy of the owner, or raise AlertError naming what does not
    exist. Other users' accounts and strategies are looked for nowhere, so naming one gets
    the same answer as naming nothing."""
    if isinstance(alert.account, int):
        accounts = await _accounts(conn, owner_id, "a.id = %s", alert.account)
    else:
        accounts = await _accounts(conn, owner_id, "a.name = %s", alert.account)
        if not accounts and alert.account.isdigit():
            accounts = await _accounts(conn, owner_id, "a.id = %s", int(alert.account))
    if not accounts:
        raise AlertError(
            [{"field": "account", "rule": "must name one of your accounts", "value": alert.account}]
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
    # market.resolve_listing: the one place every spelling of a symbol is understood
    # (BTC/USDT, BTCUSDT, btcusdt, the exchange's own id).
    listings = await (
        await conn.execute(
            "SELECT ei.id, ei.status, ei.exchange_symbol FROM market.exchange_instruments ei "
            "WHERE ei.id = market.resolve_listing(%s, %s)",
            (exchange, alert.exchange_symbol),
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
                (owner_id, alert.strategy),
            )
        ).fetchone()
        if row is None:
            raise AlertError(
                [
                    {
                        "field": "strategy",
                        "rule": "must name one of your strategies",
                        "value": alert.strategy,
                    }
                ]
            )
        strategy_id = row[0]
    return Target(account_id, user_id, listing_id, exchange, symbol, strategy_id)


async def _accounts(
    conn: psycopg.AsyncConnection[Any], owner_id: int, where: str, value: Any
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT a.id, a.user_id, e.code, a.is_active FROM account.accounts a "
        "LEFT JOIN market.exchanges e ON e.id = a.exchange_id "
        f"WHERE a.user_id = %s AND {where} ORDER BY a.id LIMIT 1",
        (owner_id, value),
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
