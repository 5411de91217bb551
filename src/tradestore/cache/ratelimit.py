"""Fixed-window rate limits in Redis (seed 002 rate_limit:{ip}: a request count that
expires after one minute), per IP, per user, or per any named subject.

One Lua script increments the counter and starts the window atomically, so concurrent
requests from many processes are counted exactly. If Redis is down the limiter falls
back to a counter in this process: limits keep holding per process rather than failing
open (no limit at all) or failing closed (refusing everyone).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from tradestore.cache.client import Cache
from tradestore.cache.keys import (
    RATE_LIMIT_WINDOW,
    rate_limit_key,
    rate_limit_scope_key,
    rate_limit_user_key,
)

__all__ = ["Decision", "Limit", "RateLimiter"]

_HIT = """
local n = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]))
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
    ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


@dataclass(frozen=True)
class Limit:
    """At most `requests` per `window` seconds."""

    requests: int
    window: int = RATE_LIMIT_WINDOW

    def __post_init__(self) -> None:
        if self.requests < 1 or self.window < 1:
            raise ValueError(f"a limit needs requests >= 1 and window >= 1, got {self}")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Whole seconds until the window resets: the Retry-After of a 429 (0 when allowed).
    retry_after: int
    reset_after: float
    # True when Redis was down and this process's own counter decided.
    local: bool = False

    def headers(self) -> dict[str, str]:
        """RateLimit headers for an HTTP response (Retry-After only when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    """Counts hits per key in fixed windows of `limit.window` seconds."""

    def __init__(self, cache: Cache, limit: Limit) -> None:
        self.cache = cache
        self.limit = limit
        self._local: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit_ip(self, ip: str, cost: int = 1) -> Decision:
        return self.hit(rate_limit_key(ip), cost)

    def hit_user(self, user_id: int, cost: int = 1) -> Decision:
        return self.hit(rate_limit_user_key(user_id), cost)

    def hit_subject(self, scope: str, subject: str, cost: int = 1) -> Decision:
        return self.hit(rate_limit_scope_key(scope, subject), cost)

    def hit(self, key: str, cost: int = 1) -> Decision:
        """Count `cost` hits on `key` and decide."""
        window_ms = self.limit.window * 1000
        script = self.cache.script(_HIT)
        result = self.cache.run(
            lambda r: script(keys=[key], args=[window_ms, cost], client=r), None, "rate limit"
        )
        if result is None:
            return self.hit_locally(key, cost)
        return self.decided(int(result[0]), int(result[1]))

    def decided(self, count: int, ttl_ms: int) -> Decision:
        """The decision for a counter Redis returned (`count` hits, `ttl_ms` to reset):
        for callers that count in their own script (cache.aio.AsyncCache.prelude)."""
        return self._decide(count, ttl_ms / 1000, local=False)

    def reset(self, key: str) -> None:
        """Forget a key's count (e.g. after a successful login)."""
        self.cache.invalidate(key)
        with self._lock:
            self._local.pop(key, None)

    def _decide(self, count: int, reset_after: float, *, local: bool) -> Decision:
        allowed = count <= self.limit.requests
        return Decision(
            allowed=allowed,
            limit=self.limit.requests,
            remaining=max(0, self.limit.requests - count),
            retry_after=0 if allowed else max(1, math.ceil(reset_after)),
            reset_after=reset_after,
            local=local,
        )

    def hit_locally(self, key: str, cost: int = 1) -> Decision:
        """Count in this process (Redis is down)."""
        now = time.monotonic()
        with self._lock:
            count, ends = self._local.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + self.limit.window
            count += cost
            self._local[key] = (count, ends)
            if len(self._local) > 10_000:
                self._local = {k: v for k, v in self._local.items() if v[1] > now}
        return self._decide(count, ends - now, local=True)
