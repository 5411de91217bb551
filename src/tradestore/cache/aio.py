"""The same Redis, for the HTTP serving path's event loop (redis.asyncio).

A request that Redis can answer (a cached session, a cached ticker or portfolio) is
served on the event loop without a hop to a worker thread. `AsyncCache` shares the
synchronous `Cache`'s rule and state: a Redis outage never fails a caller (the default
is returned, the breaker opens for both), and invalidations the sync side could not
apply are replayed before anything is read.

`prelude` counts a request against the per-address limit and, when it carries an access
token, reads the token's session and counts the request against the session owner's
limit, in one round trip. The owner is counted only when the token's SHA-256 matches the
one the session holds, so a forged token naming someone's session cannot spend their
limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import redis
import redis.asyncio as aioredis

from tradestore.cache.client import OUTAGE, Cache

__all__ = ["AsyncCache", "Prelude"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_PRELUDE = """
local function hit(key, window)
    local n = redis.call('INCR', key)
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
        redis.call('PEXPIRE', key, window)
        ttl = window
    end
    return {n, ttl}
end
local ip = hit(KEYS[1], tonumber(ARGV[1]))
if #KEYS < 2 then return {ip[1], ip[2]} end
local raw = redis.call('GET', KEYS[2])
if not raw then return {ip[1], ip[2]} end
local ok, entry = pcall(cjson.decode, raw)
if not ok or type(entry) ~= 'table' or entry['token_hash'] ~= ARGV[2]
   or type(entry['user_id']) ~= 'number' then
    return {ip[1], ip[2], raw}
end
local uid = string.format('%.0f', entry['user_id'])
local user = hit(ARGV[4] .. uid, tonumber(ARGV[3]))
local template = ARGV[5]
if not template or template == '' or type(entry['role']) ~= 'string' then
    return {ip[1], ip[2], raw, user[1], user[2]}
end
-- plain find/sub: neither the id nor the role is read as a pattern
local key = template
local at = string.find(key, '{user_id}', 1, true)
if at then key = string.sub(key, 1, at - 1) .. uid .. string.sub(key, at + 9) end
at = string.find(key, '{role}', 1, true)
if at then key = string.sub(key, 1, at - 1) .. entry['role'] .. string.sub(key, at + 6) end
return {ip[1], ip[2], raw, user[1], user[2], key, redis.call('GET', key)}
"""


class Prelude(NamedTuple):
    """What `prelude` found: the address counter (count, ms to reset), the raw session
    entry (None when absent), the owner's counter when the token matched it, and the
    prefetched (key, value) when one was asked for and the token matched (value None: a
    miss)."""

    ip: tuple[int, int]
    session: str | None
    user: tuple[int, int] | None
    prefetched: tuple[str, str | None] | None = None


def _async_client(client: redis.Redis) -> aioredis.Redis:
    """An asyncio client for the server `client` talks to, with its timeouts."""
    pool = client.connection_pool
    kw = pool.connection_kwargs
    common: dict[str, Any] = {
        "db": kw.get("db", 0),
        "username": kw.get("username"),
        "password": kw.get("password"),
        "socket_timeout": kw.get("socket_timeout"),
        "socket_connect_timeout": kw.get("socket_connect_timeout"),
        "decode_responses": True,
    }
    if "path" in kw:
        return aioredis.Redis(unix_socket_path=kw["path"], **common)
    ssl = issubclass(pool.connection_class, redis.SSLConnection)
    return aioredis.Redis(
        host=kw.get("host", "localhost"), port=kw.get("port", 6379), ssl=ssl, **common
    )


class AsyncCache:
    """redis.asyncio behind `cache`'s circuit breaker. Create and close it on the loop
    that uses it (the app's lifespan)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.redis = _async_client(cache.redis)
        self._prelude = self.redis.register_script(_PRELUDE)

    async def run(
        self, op: Callable[[aioredis.Redis], Awaitable[T]], default: T, what: str = "redis"
    ) -> T:
        """`await op(redis)`, or `default` when Redis is down (logged, never raised)."""
        cache = self.cache
        if not cache.available:
            return default
        if cache.has_pending_invalidations:
            # Missed deletes first (Cache.run replays them), so nothing stale is read.
            await asyncio.to_thread(cache.run, lambda r: None, None, what)
            if cache.has_pending_invalidations or not cache.available:
                return default
        try:
            return await op(self.redis)
        except OUTAGE as exc:
            cache.trip(what, exc)
            return default
        except redis.RedisError as exc:
            cache.errors += 1
            log.error("redis error during %s: %s: %s", what, type(exc).__name__, exc)
            return default

    async def get(self, key: str) -> str | None:
        """GET `key` (None on a miss or with Redis down)."""
        # decode_responses is on: Redis answers str.
        found = await self.run(lambda r: r.get(key), None, f"GET {key}")
        return found.decode() if isinstance(found, bytes) else found

    async def prelude(
        self,
        ip_key: str,
        ip_window_ms: int,
        session_key: str | None = None,
        token_hash_hex: str = "",
        user_window_ms: int = 0,
        user_key_prefix: str = "",
        prefetch: str = "",
    ) -> Prelude | None:
        """Count the address (and, for a matching token, the session's owner) and read the
        session (and the `prefetch` key of its owner), in one round trip. None when Redis is
        down (count locally, read PG)."""
        keys = [ip_key] if session_key is None else [ip_key, session_key]
        args: list[str | int] = [
            ip_window_ms,
            token_hash_hex,
            user_window_ms,
            user_key_prefix,
            prefetch,
        ]
        found = await self.run(
            lambda r: self._prelude(keys=keys, args=args, client=r), None, "request prelude"
        )
        if found is None:
            return None
        return Prelude(
            ip=(int(found[0]), int(found[1])),
            session=found[2] if len(found) > 2 else None,
            user=(int(found[3]), int(found[4])) if len(found) > 4 else None,
            prefetched=(found[5], found[6] if len(found) > 6 else None) if len(found) > 5 else None,
        )

    async def aclose(self) -> None:
        await self.redis.aclose()
