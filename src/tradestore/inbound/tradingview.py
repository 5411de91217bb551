"""TradingView alert intake (seed 001 §5.7), independent of the HTTP framework.

Before anything is read or stored, the route counts the request against the source
address's rate limit (`admit`, 429 beyond it). Then `receive` runs while TradingView
waits (it gives up after 3 seconds):

1. authenticate: the body's "secret" must be a live per-user webhook credential
   (tradestore.inbound.credentials; SHA-256 compared in constant time), or the legacy
   TRADINGVIEW_WEBHOOK_SECRET of TRADINGVIEW_WEBHOOK_USER. The credential's owner is the
   only user the alert may act for;
2. store the request in system.inbound_alerts, always: the raw body (secret-bearing
   members redacted by their parsed name), the payload as jsonb (the body as a JSON
   string when it is not JSON), content type, source address and the authenticated
   owner. Oversized bodies and bodies of unauthenticated requests are kept only up to
   WEBHOOK_STORED_BODY_BYTES (raw_truncated). A request that may be accepted (a valid
   alert with a secret that may authenticate) is stored and judged in one transaction
   (one commit before the reply); every other request, and one whose transaction failed,
   is stored in its own commit before any verdict;
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

from tradestore.cache.aio import AsyncCache
from tradestore.cache.client import Cache
from tradestore.cache.keys import rate_limit_scope_key
from tradestore.cache.ratelimit import Decision, Limit, RateLimiter
from tradestore.db.errors import TradestoreError, translate
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
_DIVISION = Context(prec=50)


@dataclass
class Reply:
    """The HTTP answer, and the alert to process after it is sent (if any)."""

    status: int
    body: dict[str, Any]
    process_alert_id: int | None = None
    # what the verdict resolved, so that placing the order need not resolve it again
    judged: tuple[TradingViewAlert, Target] | None = field(default=None, repr=False)


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
    # the alert as validated before it was stored, and the _RESOLVE row the store statement
    # looked up for it (None: not looked up, resolve() asks)
    looked_up: tuple[TradingViewAlert, tuple[Any, ...]] | None = None


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


@dataclass(frozen=True)
class _Credential:
    """The owner a request's secret names, as checked before the alert is stored, and the
    credential's hash as it was then (the store statement requires it unchanged)."""

    owner: Owner
    secret_hash: str | None = None


async def authenticate(
    conn: psycopg.AsyncConnection[Any], payload: Any, settings: WebhookSettings
) -> _Credential | None:
    """The owner of the credential in the payload's "secret", or None. Unknown, wrong,
    revoked, and credentials of users who may not trade (system.webhook_owner_may_act)
    are all simply None. One round trip; the store statement then holds the credential
    (share lock) while it records the alert, so a rotation or revocation is either wholly
    before the alert (the alert is unauthenticated) or wholly after it."""
    given = payload.get("secret") if isinstance(payload, dict) else None
    if not isinstance(given, str) or len(given) > 200:
        return None
    token_id = credentials.parse_token(given)
    if token_id is not None:
        row = await (
            await conn.execute(
                "SELECT c.id, c.user_id, c.secret_hash, system.webhook_owner_may_act(c.user_id) "
                "FROM system.webhook_credentials c WHERE c.token_id = %s AND c.revoked_at IS NULL",
                (token_id,),
            )
        ).fetchone()
        if not credentials.verify_hash(given, row[2] if row else None):
            return None
        assert row is not None
        if not row[3]:
            return None
        return _Credential(Owner(int(row[1]), int(row[0])), str(row[2]))
    legacy = settings.secret()
    if legacy is None or not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), legacy.encode("utf-8")
    ):
        return None
    row = await (
        await conn.execute(
            "SELECT id, system.webhook_owner_may_act(id) FROM account.users WHERE username = %s",
            (settings.TRADINGVIEW_WEBHOOK_USER,),
        )
    ).fetchone()
    if row is None or not row[1]:
        log.warning("TRADINGVIEW_WEBHOOK_USER does not name an active trader; secret ignored")
        return None
    return _Credential(Owner(int(row[0]), None))


class _AuthenticateFirst(TradestoreError):
    """The request cannot be stored before its token is checked (control flow inside the
    intake; it never leaves it)."""


def _token_of(payload: Any) -> tuple[str, str] | None:
    """(token id, SHA-256) of a per-user token in the payload's "secret", if it is one."""
    given = payload.get("secret") if isinstance(payload, dict) else None
    if not isinstance(given, str) or len(given) > 200:
        return None
    token_id = credentials.parse_token(given)
    return None if token_id is None else (token_id, credentials.hash_token(given))


def _touch(credential_id: int | None) -> str:
    """A CTE noting that a credential was used (at most once a minute, so that a user's
    alerts do not queue on the credential's row). Skipped while another alert's
    transaction holds the credential (its store statement share-locks it): waiting for it
    would deadlock two alerts that both hold it; a later alert notes the use."""
    if credential_id is None:
        return ""
    return (
        ", touch AS (UPDATE system.webhook_credentials SET last_used_at = now() "
        "WHERE id = (SELECT id FROM system.webhook_credentials "
        f"WHERE id = {int(credential_id)} "
        "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') "
        "FOR NO KEY UPDATE SKIP LOCKED))"
    )


async def _current(conn: psycopg.AsyncConnection[Any], alert_id: int) -> Reply:
    """The answer for an alert judged meanwhile (by the sweep): what it became."""
    row = await (
        await conn.execute(
            "SELECT disposition FROM system.inbound_alerts WHERE id = %s", (alert_id,)
        )
    ).fetchone()
    return Reply(200, {"status": row[0].lower() if row else "unknown", "alert_id": alert_id})


async def _close(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    disposition: str,
    error: str | None,
    reply: Reply,
    *,
    key: str | None = None,
    hash_: str | None = None,
    touch: int | None = None,
) -> Reply:
    """Record a verdict that needs no dedupe key (one statement, its own transaction
    unless the caller holds one): only a RECEIVED alert is judged, so a verdict never
    overwrites one the sweep recorded meanwhile."""
    cur = await conn.execute(
        "WITH done AS (UPDATE system.inbound_alerts SET disposition = %s, error = %s, "
        "dedupe_key = %s, payload_hash = %s, processed_at = now() "
        "WHERE id = %s AND disposition = 'RECEIVED' RETURNING 1)"
        + _touch(touch)
        + " SELECT count(*) FROM done",
        (disposition, error, key, hash_, alert_id),
    )
    if (await cur.fetchone())[0] == 0:  # type: ignore[index]
        return await _current(conn, alert_id)
    return reply


async def _invalid(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    errs: list[dict[str, Any]],
    *,
    status: int = 422,
    key: str | None = None,
    hash_: str | None = None,
    touch: int | None = None,
) -> Reply:
    message = "; ".join(f"{e['field']}: {e['rule']} (value: {e.get('value')!r})" for e in errs)
    reply = Reply(status, {"status": "invalid", "alert_id": alert_id, "errors": errs})
    return await _close(
        conn, alert_id, "INVALID", message[:2000], reply, key=key, hash_=hash_, touch=touch
    )


async def judge(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    facts: Facts,
    settings: WebhookSettings,
    *,
    skip_locked: bool = False,
    recheck_owner: bool = False,
) -> Reply:
    """Judge the stored alert `alert_id` (still RECEIVED) and record the verdict. Every
    verdict is one statement that only judges a RECEIVED alert, so the request and the
    sweep never both judge one. With skip_locked, an alert another session is judging is
    left alone. With recheck_owner (an alert judged late, by the sweep), the alert is
    locked and the owner's authentication asked again in the verdict's transaction: a
    credential revoked or rotated since the alert arrived, or an owner who may no longer
    trade, makes it REJECTED."""
    if not recheck_owner:
        owner = facts.owner
        touch = owner.credential_id if owner is not None else None
        return await _judge(conn, alert_id, facts, settings, skip_locked, False, touch)
    async with conn.transaction():
        locked = await (
            await conn.execute(
                "SELECT disposition FROM system.inbound_alerts WHERE id = %s FOR UPDATE"
                + (" SKIP LOCKED" if skip_locked else ""),
                (alert_id,),
            )
        ).fetchone()
        if locked is None or locked[0] != "RECEIVED":
            # judged meanwhile: say what it became, nothing more
            state = locked[0].lower() if locked else "unknown"
            return Reply(200, {"status": state, "alert_id": alert_id})
        return await _judge(conn, alert_id, facts, settings, False, True, None)


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


async def _judge(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    facts: Facts,
    settings: WebhookSettings,
    skip_locked: bool,
    recheck_owner: bool,
    touch: int | None,
) -> Reply:
    allowlist = settings.allowlist
    ip = facts.ip
    if allowlist and (ip is None or not any(ipaddress.ip_address(ip) in n for n in allowlist)):
        reply = Reply(
            403,
            {"status": "rejected", "alert_id": alert_id, "detail": "source address not allowed"},
        )
        error = f"remote_addr: not in WEBHOOK_IP_ALLOWLIST (value: {ip})"
        return await _close(conn, alert_id, "REJECTED", error, reply, touch=touch)
    if facts.truncated:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        kept = settings.WEBHOOK_STORED_BODY_BYTES
        error = {"field": "body", "rule": f"must be at most {limit} bytes", "value": f">{limit}"}
        reply = Reply(413, {"status": "invalid", "alert_id": alert_id, "errors": [error]})
        message = (
            f"body: must be at most {limit} bytes; raw_body holds at most the first {kept} bytes"
        )
        return await _close(conn, alert_id, "INVALID", message, reply, touch=touch)
    if not facts.is_json:
        errs = facts.parse_errors or [
            {
                "field": "body",
                "rule": "must be JSON that PostgreSQL can store "
                "(no \\u0000, no unpaired surrogates, numbers in range)",
                "value": None,
            }
        ]
        return await _invalid(conn, alert_id, errs, status=400, touch=touch)
    payload = facts.value
    if not isinstance(payload, dict):
        errs = [{"field": "body", "rule": "must be a JSON object", "value": type(payload).__name__}]
        return await _invalid(conn, alert_id, errs, status=400, touch=touch)
    owner = facts.owner
    if owner is None:
        detail = "secret: missing or wrong"
        reply = Reply(401, {"status": "rejected", "alert_id": alert_id, "detail": detail})
        return await _close(conn, alert_id, "REJECTED", detail, reply)
    problem = await owner_problem(conn, alert_id, owner, settings) if recheck_owner else None
    if problem is not None:
        reply = Reply(401, {"status": "rejected", "alert_id": alert_id, "detail": problem})
        return await _close(conn, alert_id, "REJECTED", problem, reply)
    key = payload.get("idempotency_key")
    key = key if isinstance(key, str) and 0 < len(key) <= 200 and "\x00" not in key else None
    try:
        alert = validate_alert(payload)
    except AlertError as exc:
        return await _invalid(conn, alert_id, exc.errors, key=key, touch=touch)
    hash_ = payload_hash(payload)
    try:
        looked_up = facts.looked_up
        row = looked_up[1] if looked_up is not None and looked_up[0] == alert else None
        target = await resolve(conn, alert, owner.user_id, row=row)
    except AlertError as exc:
        reply = Reply(422, {"status": "invalid", "alert_id": alert_id, "errors": exc.errors})
        return await _close(
            conn, alert_id, "INVALID", str(exc), reply, key=key, hash_=hash_, touch=touch
        )
    return await _deduplicate(conn, alert_id, alert, target, hash_, skip_locked, touch)


# The owner's key decides (public.idem_seen_status), and the verdict is recorded, in one
# statement: NEW is ACCEPTED (processed after the reply), DUPLICATE and CONFLICT are final
# and name the owner's original alert, and a CONFLICT raises a HIGH alert for the owner.
_DEDUPE = """
WITH claim AS MATERIALIZED (
    SELECT id FROM system.inbound_alerts
     WHERE id = %(alert)s AND disposition = 'RECEIVED' FOR UPDATE{skip}),
v AS MATERIALIZED (
    SELECT public.idem_seen_status(%(key)s, %(hash)s, %(source)s, %(user)s) AS verdict
      FROM claim),
done AS (
    UPDATE system.inbound_alerts i
       SET disposition = CASE v.verdict WHEN 'NEW' THEN 'ACCEPTED' ELSE v.verdict END,
           error = CASE v.verdict WHEN 'CONFLICT' THEN %(conflict)s END,
           dedupe_key = %(key)s, payload_hash = %(hash)s,
           processed_at = CASE v.verdict WHEN 'NEW' THEN NULL ELSE now() END
      FROM v WHERE i.id = %(alert)s),
o AS MATERIALIZED (
    SELECT jsonb_build_object('alert_id', a.id, 'status', lower(a.disposition),
                              'order_id', a.order_id, 'error', a.error) AS original
      FROM system.inbound_alerts a
     WHERE EXISTS (SELECT 1 FROM v WHERE v.verdict <> 'NEW')
       AND a.user_id = %(user)s AND a.dedupe_key = %(key)s
       AND a.disposition IN ('ACCEPTED', 'ERROR')),
told AS MATERIALIZED (
    SELECT public.raise_alert('HIGH', %(message)s, 'inbound',
               jsonb_build_object('alert_id', %(alert)s::bigint,
                                  'original', (SELECT original FROM o)),
               'WARNING', NULL, %(user)s) AS id
      FROM v WHERE v.verdict = 'CONFLICT'){touch}
SELECT (SELECT verdict FROM v), (SELECT original FROM o), (SELECT count(*) FROM told),
       (SELECT disposition FROM system.inbound_alerts WHERE id = %(alert)s)
"""


async def _deduplicate(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    alert: TradingViewAlert,
    target: Target,
    hash_: str,
    skip_locked: bool,
    touch: int | None,
) -> Reply:
    key = alert.idempotency_key
    cur = await conn.execute(
        _DEDUPE.format(skip=" SKIP LOCKED" if skip_locked else "", touch=_touch(touch)),
        {
            "alert": alert_id,
            "key": key,
            "hash": hash_,
            "source": SOURCE,
            "user": target.user_id,
            "conflict": f"idempotency_key: reused with a different payload (value: {key}); "
            "held for review",
            "message": f"TradingView alert {alert_id} reuses idempotency key {key!r} with a "
            "different payload; held for review",
        },
    )
    verdict, first, _, state = await cur.fetchone()  # type: ignore[misc]
    if verdict is None:  # judged meanwhile (by the sweep)
        return Reply(200, {"status": (state or "unknown").lower(), "alert_id": alert_id})
    if verdict == "NEW":
        return Reply(
            202,
            {
                "status": "accepted",
                "alert_id": alert_id,
                "idempotency_key": key,
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
            judged=(alert, target),
        )
    if verdict == "DUPLICATE":
        return Reply(
            200,
            {
                "status": "duplicate",
                "alert_id": alert_id,
                "idempotency_key": key,
                "original": first,
                "detail": "already received; nothing was done again",
            },
        )
    return Reply(
        409,
        {
            "status": "conflict",
            "alert_id": alert_id,
            "idempotency_key": key,
            "original": first,
            "detail": "this key was used before with a different payload; held for review",
        },
    )


async def process_alert(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    judged: tuple[TradingViewAlert, Target] | None = None,
) -> str | None:
    """Place the order of an ACCEPTED alert, for its owner. Returns its final disposition,
    or None when there was nothing to do (already processed, or another worker has it).
    `judged` is what the verdict resolved (the request's own background task); without
    it (recovery) the stored payload is read and resolved again."""
    if judged is None:
        row = await (
            await conn.execute(
                "SELECT payload::text, user_id FROM system.inbound_alerts WHERE id = %s "
                "AND disposition = 'ACCEPTED' AND processed_at IS NULL",
                (alert_id,),
            )
        ).fetchone()
        if row is None:
            return None
        owner_id: int = row[1]
        try:
            alert = validate_alert(json.loads(row[0], parse_float=Decimal))
            target = await resolve(conn, alert, owner_id)
        except AlertError as exc:
            return await _refused(conn, alert_id, owner_id, str(exc))
    else:
        alert, target = judged
    try:
        order_id = await _place_order(conn, alert_id, alert, target)
    except (AlertError, psycopg.DatabaseError) as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise
        error = str(translate(exc)) if isinstance(exc, psycopg.Error) else str(exc)
        return await _refused(conn, alert_id, target.user_id, error)
    return None if order_id is None else "ACCEPTED"


async def _refused(
    conn: psycopg.AsyncConnection[Any], alert_id: int, owner_id: int, error: str
) -> str | None:
    """The order was refused: the alert becomes ERROR and its owner hears why (unless
    another worker finished the alert meanwhile)."""
    cur = await conn.execute(
        "WITH claim AS MATERIALIZED (SELECT id FROM system.inbound_alerts WHERE id = %(alert)s "
        "AND disposition = 'ACCEPTED' AND processed_at IS NULL FOR UPDATE SKIP LOCKED), "
        "done AS (UPDATE system.inbound_alerts i SET disposition = 'ERROR', error = %(error)s, "
        "processed_at = now() FROM claim WHERE i.id = claim.id), "
        "told AS MATERIALIZED (SELECT public.raise_alert('HIGH', %(message)s, 'inbound', "
        "jsonb_build_object('alert_id', claim.id), 'ERROR', NULL, %(owner)s) FROM claim) "
        "SELECT count(*) FROM told",
        {
            "alert": alert_id,
            "error": error[:2000],
            "message": f"TradingView alert {alert_id}: no order placed: {error}"[:2000],
            "owner": owner_id,
        },
    )
    return "ERROR" if (await cur.fetchone())[0] else None  # type: ignore[index]


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
    async def admit(
        self, remote_addr: str | None, aio: AsyncCache | None = None
    ) -> Decision | None:
        """Count a request against its source address's limit, before its body is read;
        None when there is no limiter (no cache). With the app's AsyncCache the count is
        one Redis round trip on the event loop; with Redis down it is counted locally."""
        if self._limiter is None:
            return None
        ip = _remote_ip(remote_addr) or "unknown"
        if aio is None:
            return await asyncio.to_thread(self._limiter.hit_subject, "webhook", ip)
        key = rate_limit_scope_key("webhook", ip)
        found = await aio.prelude(key, self._limiter.limit.window * 1000)
        if found is None:
            return self._limiter.hit_locally(key)
        return self._limiter.decided(*found.ip)

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
        alert: TradingViewAlert | None = None
        # a JSON object with a secret that may authenticate: a per-user token, or any string
        # while the legacy secret is set
        if (
            parsed.is_json
            and not truncated
            and isinstance(parsed.value, dict)
            and (
                _token_of(parsed.value) is not None
                or (
                    isinstance(parsed.value.get("secret"), str)
                    and self.settings.secret() is not None
                )
            )
        ):
            with contextlib.suppress(AlertError):
                alert = validate_alert(parsed.value)  # the judge says what is wrong
        stored: list[int] = []  # the alert id, once committed
        try:
            async with self.pool.connection() as conn:
                try:
                    # A request that may be accepted (a valid alert with a secret) is stored
                    # and judged in one transaction: one commit before the reply. Others are
                    # stored, then judged.
                    if alert is not None:
                        async with conn.transaction():
                            return await self._intake(
                                conn, body, parsed, content_type, ip, truncated, alert=alert
                            )
                except (errors.UndefinedTable, errors.UndefinedFunction):
                    return Reply(503, {"status": "unavailable", "detail": MODULE_MISSING})
                except (errors.TransactionRollback, errors.DeadlockDetected) as exc:  # nothing kept
                    log.warning("webhook alert stored on its own before judging: %r", exc)
                except psycopg.OperationalError:
                    raise
                except Exception as exc:  # anything: the raw request is still kept
                    # Nothing of it was kept: store it on its own first (committed before any
                    # verdict; if judging fails again, the sweep judges it later).
                    if not isinstance(exc, _AuthenticateFirst):
                        log.warning("webhook alert stored on its own before judging: %r", exc)
                return await self._intake(
                    conn, body, parsed, content_type, ip, truncated, stored=stored
                )
        except psycopg.OperationalError as exc:
            alert_id = stored[0] if stored else None
            if alert_id is None:
                log.error("webhook could not store an alert: %s", exc)
                return Reply(
                    503, {"status": "unavailable", "detail": "the database is unavailable"}
                )
            log.error("webhook alert %s stored but not judged: %s", alert_id, exc)
            return Reply(
                503,
                {
                    "status": "unavailable",
                    "alert_id": alert_id,
                    "detail": "stored, but the database became unavailable",
                },
            )

    async def _intake(
        self,
        conn: psycopg.AsyncConnection[Any],
        body: bytes,
        parsed: _Parsed,
        content_type: str | None,
        ip: str | None,
        truncated: bool,
        *,
        alert: TradingViewAlert | None = None,
        stored: list[int] | None = None,
    ) -> Reply:
        """Authenticate, store and judge. With `alert` (the request's alert, validated):
        inside the caller's transaction, the token checked and the account, listing and
        strategy the alert names looked up by the store statement itself. Without: the
        store commits on its own before the verdict."""
        atomic = alert is not None
        # A per-user token is checked by the store statement itself (atomic, and a body
        # that is kept whole whoever sent it); the legacy secret is checked first.
        by_token = _token_of(parsed.value) if atomic and not truncated else None
        found = None
        if by_token is None and parsed.is_json:
            found = await authenticate(conn, parsed.value, self.settings)
        if found is None and by_token is None:
            alert = None  # nobody to look anything up for
        alert_id, stored_as_json, owner, row = await self._store(
            conn, body, parsed, content_type, ip, found, truncated, alert,
            atomic=atomic, by_token=by_token,
        )  # fmt: skip
        if stored is not None:
            stored.append(alert_id)
        facts = Facts(
            value=parsed.value,
            is_json=parsed.is_json and stored_as_json,
            parse_errors=parsed.errors,
            owner=owner if stored_as_json else None,
            truncated=truncated,
            ip=ip,
            looked_up=(alert, row) if alert is not None and row is not None else None,
        )
        return await judge(conn, alert_id, facts, self.settings)

    async def _store(
        self,
        conn: psycopg.AsyncConnection[Any],
        body: bytes,
        parsed: _Parsed,
        content_type: str | None,
        ip: str | None,
        found: _Credential | None,
        truncated: bool,
        alert: TradingViewAlert | None = None,
        *,
        atomic: bool = False,
        by_token: tuple[str, str] | None = None,
    ) -> tuple[int, bool, Owner | None, tuple[Any, ...] | None]:
        """Store the request (one statement). Returns the alert id, whether the payload was
        stored as the JSON it parsed to, its owner, and, with `alert` (validated), the
        _RESOLVE row of what it names, looked up by the same statement for the owner it
        stored. `atomic` (inside a transaction): JSON that jsonb refuses raises, the
        caller then stores the request on its own. `by_token` (token id, SHA-256 of the
        given token): the credential is looked up by the statement (instead of `found`), and
        the owner is the one whose live credential has that hash.
        A credential is share-locked by the statement and must still be live with the hash
        `authenticate` checked; if it was rotated or revoked in between, the alert is
        stored without an owner (and judged unauthenticated)."""
        raw = redact_secret(body)
        cap = self.settings.WEBHOOK_STORED_BODY_BYTES
        # Only an authenticated request of acceptable size is kept whole.
        cut = truncated or (found is None and len(raw) > cap)
        if cut and by_token is not None:
            # whether to keep it whole depends on the token: check it first (the caller
            # stores the request on its own)
            raise _AuthenticateFirst
        if cut:
            raw = _prefix(raw, cap)
        owner = found.owner if found else None
        params = {
            "source": SOURCE,
            "raw": raw,
            "cut": cut,
            "ct": (content_type or "")[:200] or None,
            "addr": ip,
            "user": owner.user_id if owner else None,
            "cred": owner.credential_id if owner else None,
            "hash": found.secret_hash if found else None,
        }
        if by_token is not None:
            # The token's id names the credential and the SHA-256 of the whole token must be
            # the live credential's (a digest equality: timing says nothing of the token).
            params["token_id"], params["hash"] = by_token
            head = (
                "WITH c AS MATERIALIZED (SELECT c.id, c.user_id FROM system.webhook_credentials c "
                "WHERE c.token_id = %(token_id)s AND c.secret_hash = %(hash)s "
                "AND c.revoked_at IS NULL AND system.webhook_owner_may_act(c.user_id) FOR SHARE) "
            )
            owner_cols = "c.user_id, c.id, clock_timestamp()"
            source = " FROM {payload} LEFT JOIN c ON true"
        elif owner is not None and owner.credential_id is not None:
            # The credential checked and the alert stored in one transaction: a rotation
            # or revocation waits for it (and stamps clock_timestamp(), later than this
            # received_at), or went first and the credential no longer matches.
            head = (
                "WITH c AS MATERIALIZED (SELECT c.id, c.user_id FROM system.webhook_credentials c "
                "WHERE c.id = %(cred)s AND c.secret_hash = %(hash)s AND c.revoked_at IS NULL "
                "AND system.webhook_owner_may_act(c.user_id) FOR SHARE) "
            )
            owner_cols = "c.user_id, c.id, clock_timestamp()"
            source = " FROM {payload} LEFT JOIN c ON true"
        else:
            head = ""
            owner_cols = "%(user)s::bigint, NULL::bigint, now()"
            source = " FROM {payload}"
        insert = (
            "INSERT INTO system.inbound_alerts (source, payload, raw_body, raw_truncated, "
            "content_type, remote_addr, user_id, credential_id, received_at) "
            "SELECT %(source)s, s.j, %(raw)s, %(cut)s, %(ct)s, %(addr)s, "
            + owner_cols
            + source
            + " RETURNING id, user_id, credential_id"
        )
        if alert is not None and (owner is not None or by_token is not None):
            # What the alert names, for the owner just stored (none: nothing is looked up).
            params.update(_resolve_params(alert, None))
            lookup = _RESOLVE.replace("%(owner)s", "ins.user_id")
            insert = (
                (head + ", " if head else "WITH ")
                + f"ins AS ({insert}) SELECT ins.id, ins.user_id, ins.credential_id, r.* FROM ins "
                f"LEFT JOIN LATERAL ({lookup}) r ON ins.user_id IS NOT NULL"
            )
        else:
            insert = head + insert
        if parsed.is_json and not cut:
            try:
                # The redacted raw text is the payload: what jsonb keeps is redacted too.
                cur = await conn.execute(
                    insert.format(payload="(SELECT convert_from(%(raw)s, 'UTF8')::jsonb AS j) s"),
                    params,
                )
                found_row = await cur.fetchone()
                assert found_row is not None
                alert_id, user_id, credential_id = found_row[:3]
                if user_id is None:
                    owner = None  # rotated or revoked since it was checked (or not live)
                elif by_token is not None:
                    owner = Owner(int(user_id), int(credential_id))
                row = tuple(found_row[3:]) if alert is not None and user_id is not None else None
                return int(alert_id), True, owner, row
            except (
                errors.DataError,
                errors.ProgramLimitExceeded,
                errors.StatementTooComplex,
                errors.InternalError_,
                errors.CharacterNotInRepertoire,
            ):
                if atomic:
                    raise  # the transaction is aborted: the caller stores it on its own
                # JSON that jsonb refuses (\u0000, lone surrogates, huge numbers, depth)
        text = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
        cur = await conn.execute(
            "INSERT INTO system.inbound_alerts (source, payload, raw_body, raw_truncated, "
            "content_type, remote_addr) VALUES (%(source)s, to_jsonb(%(text)s::text), %(raw)s, "
            "%(cut)s, %(ct)s, %(addr)s) RETURNING id",
            {**params, "text": text},
        )
        # A body cut short is still judged as what it parsed to (it cannot be accepted:
        # only unauthenticated or oversized bodies are cut).
        stored = int((await cur.fetchone())[0])  # type: ignore[index]
        return stored, cut and parsed.is_json, None, None

    # ------------------------------------------------------------------ process
    async def process(
        self, alert_id: int, judged: tuple[TradingViewAlert, Target] | None = None
    ) -> str | None:
        async with self.pool.connection() as conn:
            return await process_alert(conn, alert_id, judged)

    async def process_safely(
        self, alert_id: int, judged: tuple[TradingViewAlert, Target] | None = None
    ) -> None:
        """`process` for a background task: never raises (the sweep retries later)."""
        try:
            await self.process(alert_id, judged)
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


# Account, listing and strategy of an alert in one round trip. The listing is looked up
# only for an active account whose exchange the alert may use, and the strategy only for
# a listing found (CASE keeps market.resolve_listing from being asked early).
_RESOLVE = """
SELECT acc.id, acc.user_id, acc.code, acc.is_active,
       lst.id, lst.status, lst.exchange_symbol, st.id
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (
      SELECT a.id, a.user_id, e.code, a.is_active FROM account.accounts a
        LEFT JOIN market.exchanges e ON e.id = a.exchange_id
       WHERE a.user_id = %(owner)s AND (a.name = %(name)s OR a.id = %(id)s)
       ORDER BY a.name IS NOT DISTINCT FROM %(name)s DESC, a.id LIMIT 1) acc ON true
  LEFT JOIN LATERAL (
      SELECT ei.id, ei.status, ei.exchange_symbol FROM market.exchange_instruments ei
       WHERE ei.id = CASE WHEN acc.is_active
                           AND coalesce(%(exchange)s, acc.code) IS NOT NULL
                           AND (acc.code IS NULL OR coalesce(%(exchange)s, acc.code) = acc.code)
                          THEN market.resolve_listing(coalesce(%(exchange)s, acc.code),
                                                      %(symbol)s) END) lst ON true
  LEFT JOIN LATERAL (
      SELECT s.id FROM analytics.strategies s
       WHERE lst.id IS NOT NULL AND s.user_id = %(owner)s AND s.name = %(strategy)s
       ORDER BY s.id LIMIT 1) st ON true
"""


def _resolve_params(alert: TradingViewAlert, owner_id: int | None) -> dict[str, Any]:
    account = alert.account
    by_name = account if isinstance(account, str) else None
    by_id = account if isinstance(account, int) else int(account) if account.isdigit() else None
    return {
        "owner": owner_id,
        "name": by_name,
        "id": by_id,
        "exchange": alert.exchange_code,
        "symbol": alert.exchange_symbol,
        "strategy": alert.strategy,
    }


async def resolve(
    conn: psycopg.AsyncConnection[Any],
    alert: TradingViewAlert,
    owner_id: int,
    *,
    row: tuple[Any, ...] | None = None,
) -> Target:
    """Map the alert to an account of `owner_id`, a listing (exchange code +
    exchange_symbol) and a strategy of the owner, or raise AlertError naming what does not
    exist. Other users' accounts and strategies are looked for nowhere, so naming one gets
    the same answer as naming nothing. The symbol is understood by market.resolve_listing,
    the one place every spelling (BTC/USDT, BTCUSDT, btcusdt, the exchange's own id) is.
    `row`: the _RESOLVE row already looked up for this alert and owner (by the store
    statement), so that only its reading is done here."""
    if row is None:
        row = await (await conn.execute(_RESOLVE, _resolve_params(alert, owner_id))).fetchone()
    assert row is not None
    account_id, user_id, account_exchange, active, listing_id, status, symbol, strategy_id = row
    if account_id is None:
        raise AlertError(
            [{"field": "account", "rule": "must name one of your accounts", "value": alert.account}]
        )
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
    if listing_id is None:
        raise AlertError(
            [
                {
                    "field": "symbol",
                    "rule": f"must be listed on {exchange}",
                    "value": alert.exchange_symbol,
                }
            ]
        )
    if status != "TRADING":
        raise AlertError(
            [{"field": "symbol", "rule": f"listing is {status}, not TRADING", "value": symbol}]
        )
    if alert.strategy is not None and strategy_id is None:
        raise AlertError(
            [
                {
                    "field": "strategy",
                    "rule": "must name one of your strategies",
                    "value": alert.strategy,
                }
            ]
        )
    return Target(account_id, user_id, listing_id, exchange, symbol, strategy_id)


async def _place_order(
    conn: psycopg.AsyncConnection[Any], alert_id: int, alert: TradingViewAlert, target: Target
) -> int | None:
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
    # One statement, one commit: claim the alert (another worker may have it), place the
    # order, record it on the alert and its key, and tell the owner. A refusal by the
    # trading core aborts all of it (the caller records the ERROR).
    cur = await conn.execute(
        _PLACE,
        {
            "alert": alert_id,
            "account": target.account_id,
            "listing": target.exchange_instrument_id,
            "side": alert.side,
            "type": alert.order_type,
            "quantity": quantity,
            "price": alert.price if alert.order_type == "LIMIT" else None,
            "key": alert.idempotency_key,
            "client_id": f"tv-{alert_id}",
            "stop": alert.stop_price if alert.order_type == "STOP" else None,
            "strategy": target.strategy_id,
            "notes": alert.comment or f"TradingView alert {alert_id}",
            "owner": target.user_id,
            "head": f"TradingView alert {alert_id}: order ",
            "tail": f" placed ({alert.side} {alert.order_type} {target.exchange_symbol} "
            f"on {target.exchange})",
        },
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


_PLACE = """
WITH claim AS MATERIALIZED (
    SELECT id FROM system.inbound_alerts
     WHERE id = %(alert)s AND disposition = 'ACCEPTED' AND processed_at IS NULL
       FOR UPDATE SKIP LOCKED),
placed AS MATERIALIZED (
    SELECT trade.place_order(
        p_account_id => %(account)s, p_exchange_instrument_id => %(listing)s,
        p_side => %(side)s, p_order_type => %(type)s, p_quantity => %(quantity)s,
        p_price => %(price)s, p_idempotency_key => %(key)s, p_client_order_id => %(client_id)s,
        p_stop_price => %(stop)s, p_strategy_id => %(strategy)s, p_source => 'WEBHOOK',
        p_notes => %(notes)s) AS order_id
      FROM claim),
done AS (
    UPDATE system.inbound_alerts i
       SET parsed = true, order_id = placed.order_id, error = NULL, processed_at = now()
      FROM placed WHERE i.id = %(alert)s),
keyed AS (
    UPDATE system.inbound_dedupe_keys k SET processed = true
      FROM placed WHERE k.user_id = %(owner)s AND k.idempotency_key = %(key)s),
told AS MATERIALIZED (
    SELECT public.raise_alert('LOW', %(head)s || placed.order_id || %(tail)s, 'inbound',
               jsonb_build_object('alert_id', %(alert)s::bigint, 'order_id', placed.order_id),
               'TRADE_SIGNAL', NULL, %(owner)s) AS id
      FROM placed)
SELECT placed.order_id, (SELECT count(*) FROM told) FROM placed
"""
