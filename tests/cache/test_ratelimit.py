"""Fixed-window rate limits in Redis, exact across threads, and the per-process fallback
when Redis is down."""

from __future__ import annotations

import threading

import pytest

from tradestore.cache.client import Cache
from tradestore.cache.ratelimit import Limit, RateLimiter
from tradestore.cache.server import EmbeddedRedis


def test_ip_limit_refuses_with_retry_after_then_keys_are_independent(redis_cache: Cache) -> None:
    limiter = RateLimiter(redis_cache, Limit(3, 60))
    decisions = [limiter.hit_ip("10.0.0.1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert 1 <= refused.retry_after <= 60 and not refused.local
    assert refused.headers()["Retry-After"] == str(refused.retry_after)
    assert "Retry-After" not in decisions[0].headers()
    # Seed 002's key: the request count, expiring with the window.
    assert redis_cache.redis.get("rate_limit:10.0.0.1") == "4"
    assert 0 < redis_cache.redis.ttl("rate_limit:10.0.0.1") <= 60

    assert limiter.hit_ip("10.0.0.2").allowed
    assert limiter.hit_user(7).allowed and redis_cache.redis.get("rate_limit:user:7") == "1"


def test_reset_forgets_the_count(redis_cache: Cache) -> None:
    limiter = RateLimiter(redis_cache, Limit(1, 60))
    assert limiter.hit_subject("login", "alice").allowed
    assert not limiter.hit_subject("login", "alice").allowed
    limiter.reset("rate_limit:login:alice")
    assert limiter.hit_subject("login", "alice").allowed


def test_concurrent_hits_are_counted_exactly(redis_cache: Cache) -> None:
    limiter = RateLimiter(redis_cache, Limit(50, 60))
    allowed = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            ok = limiter.hit_ip("192.168.1.9").allowed
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 50 and allowed.count(False) == 50


def test_with_redis_down_the_process_keeps_limiting(own_redis: EmbeddedRedis) -> None:
    cache = Cache.from_url(own_redis.url, retry_after=0.0)
    limiter = RateLimiter(cache, Limit(2, 60))
    assert limiter.hit_ip("10.1.1.1").allowed
    own_redis.stop()
    # The process counts on its own from here (it cannot know Redis's count).
    local = [limiter.hit_ip("10.1.1.1") for _ in range(3)]
    assert all(d.local for d in local)
    assert [d.allowed for d in local] == [True, True, False] and local[-1].retry_after >= 1
    cache.redis.close()


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Limit(0, 60)
