"""The Redis client tradestore uses, with one rule: a Redis outage never fails a caller.

Every operation goes through `Cache.run(op, default)`. When Redis cannot be reached the
error is logged, `default` is returned (the caller then reads PostgreSQL, the source of
truth) and Redis is left alone for `retry_after` seconds, so an outage costs one failed
connection attempt per interval instead of one per request. Invalidations (deletes) that
fail are remembered and replayed once Redis answers again, so a revoked session or a
changed order does not come back from a stale key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tradestore.cache.server import EmbeddedRedis
from tradestore.config import Settings, get_settings

__all__ = ["OUTAGE", "Cache", "existing_cache", "open_cache", "purge", "purge_pattern"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean "Redis is not usable right now"; anything else is a bug and raises.
OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)
_MAX_PENDING_INVALIDATIONS = 100_000


class Cache:
    """Redis behind a circuit breaker. `redis` is a redis-py client (decode_responses)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        retry_after: float = 2.0,
        server: EmbeddedRedis | None = None,
    ) -> None:
        self.redis = client
        self.retry_after = retry_after
        self.server = server
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pending: set[str] = set()
        self._pending_patterns: set[str] = set()
        self._scripts: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.5, **kw: Any) -> Cache:
        """A client for `url` with short timeouts and one immediate retry (a pooled
        connection may be stale after a server restart), then give up."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return cls(client, **kw)

    # ----------------------------------------------------------------- the rule

    @property
    def available(self) -> bool:
        """False while the breaker is open after a failure."""
        return time.monotonic() >= self._down_until

    @property
    def has_pending_invalidations(self) -> bool:
        """True while deletes missed during an outage wait to be replayed."""
        return bool(self._pending or self._pending_patterns)

    def reset(self) -> None:
        """Close the breaker: the next call tries Redis again at once."""
        self._down_until = 0.0

    def run(self, op: Callable[[redis.Redis], T], default: T, what: str = "redis") -> T:
        """`op(redis)`, or `default` when Redis is down (logged, never raised)."""
        if not self.available:
            return default
        try:
            if self._pending or self._pending_patterns:
                self._replay_invalidations()
            return op(self.redis)
        except OUTAGE as exc:
            self.trip(what, exc)
            return default
        except redis.RedisError as exc:
            # Not an outage (out of memory, a wrong-type key): still not worth failing
            # the caller over, but louder, since it points at a bug or a full server.
            self.errors += 1
            log.error("redis error during %s: %s: %s", what, type(exc).__name__, exc)
            return default

    def write(self, op: Callable[[redis.Redis], object], keys: Iterable[str], what: str) -> bool:
        """Run a write-through `op` that sets `keys`. If it fails the keys may now hold
        stale values, so they are invalidated (now, or once Redis is back)."""
        done = self.run(lambda r: (op(r), True)[1], False, what)
        if not done:
            self.invalidate(*keys)
        return done

    def invalidate(self, *keys: str) -> None:
        """Delete keys; if Redis is down, delete them as soon as it is back."""
        if not keys:
            return
        done = self.run(lambda r: r.delete(*keys) >= 0, False, "invalidate")
        if not done:
            with self._lock:
                if len(self._pending) < _MAX_PENDING_INVALIDATIONS:
                    self._pending.update(keys)
                else:  # too much missed: start over from an empty cache
                    self._pending = {"*"}

    def invalidate_pattern(self, pattern: str) -> None:
        """Delete every key matching `pattern` (SCAN); if Redis is down, as soon as it is
        back (before anything else is read)."""
        done = self.run(lambda r: purge_pattern(r, pattern) >= 0, False, f"invalidate {pattern}")
        if not done:
            with self._lock:
                self._pending_patterns.add(pattern)

    def invalidate_mirrors(self) -> None:
        """Delete every key that mirrors PostgreSQL (cache.client.purge), now or once Redis
        is back: for when changes may have been missed."""
        from tradestore.cache.keys import MIRROR_PATTERNS  # keys imports this module

        for pattern in MIRROR_PATTERNS:
            self.invalidate_pattern(pattern)

    def record(self, hit: bool) -> None:
        """Count a read-through lookup (for the cache hit ratio)."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    def script(self, source: str) -> Any:
        """A Lua script bound to this client (run by EVALSHA; reloaded after a restart)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    def ping(self) -> bool:
        return self.run(lambda r: bool(r.ping()), False, "ping")

    def close(self) -> None:
        self.redis.close()
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def trip(self, what: str, exc: BaseException) -> None:
        """Open the breaker after a failed call (AsyncCache shares it)."""
        self.errors += 1
        self._down_until = time.monotonic() + self.retry_after
        log.warning(
            "redis unavailable during %s (%s: %s); falling back (PostgreSQL) for %.1fs",
            what,
            type(exc).__name__,
            exc,
            self.retry_after,
        )

    def _replay_invalidations(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
            patterns, self._pending_patterns = self._pending_patterns, set()
        try:
            if "*" in pending:
                purge(self.redis, everything=True)
            elif pending:
                self.redis.delete(*pending)
            for pattern in sorted(patterns):
                purge_pattern(self.redis, pattern)
        except OUTAGE:
            with self._lock:
                self._pending |= pending
                self._pending_patterns |= patterns
            raise
        log.info(
            "replayed %d cache invalidation(s) missed while redis was down",
            len(pending) + len(patterns),
        )


def purge_pattern(client: redis.Redis, pattern: str) -> int:
    """Delete every key matching `pattern` (SCAN, in batches). Returns how many went."""
    removed = 0
    batch: list[str] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            removed += client.delete(*batch)
            batch.clear()
    if batch:
        removed += client.delete(*batch)
    return removed


def purge(client: redis.Redis, *, everything: bool = False) -> int:
    """Delete the keys that mirror PostgreSQL state (sessions, orders, strategies, market
    data, preferences, rate counters); the Telegram queue stays unless `everything`.
    Returns how many keys went."""
    from tradestore.cache.keys import MIRROR_PATTERNS  # keys imports this module

    patterns: Iterable[str] = ["*"] if everything else MIRROR_PATTERNS
    return sum(purge_pattern(client, pattern) for pattern in patterns)


def open_cache(settings: Settings | None = None, **kw: Any) -> Cache:
    """The cache for `settings`: REDIS_URL when set, else the embedded server under
    TRADESTORE_HOME (started, or attached to). A freshly started embedded server loaded
    its data file, which may predate writes made while it was down: its mirror keys are
    dropped so they are rebuilt from PostgreSQL. `Cache.close()` stops a server it started."""
    settings = settings or get_settings()
    if settings.REDIS_URL:
        return Cache.from_url(settings.REDIS_URL, **kw)
    server = EmbeddedRedis(settings.TRADESTORE_HOME)
    url = server.start()
    cache = Cache.from_url(url, server=server if server.owned else None, **kw)
    if server.started_fresh:
        dropped = cache.run(lambda r: purge(r), 0, "purge")
        log.info("embedded redis started: dropped %d stale mirror key(s)", dropped)
    return cache


def existing_cache(settings: Settings | None = None, **kw: Any) -> Cache | None:
    """The cache to keep current, without starting one: REDIS_URL's, or the embedded
    server if it runs (an embedded server started later drops its mirror keys anyway).
    None when there is nothing to keep current. For short-lived processes (the CLI)."""
    settings = settings or get_settings()
    if settings.REDIS_URL:
        return Cache.from_url(settings.REDIS_URL, **kw)
    server = EmbeddedRedis(settings.TRADESTORE_HOME)
    if not server.is_running():
        return None
    return Cache.from_url(server.url, **kw)
