"""Redis: every key design of seeds 002 and 003 (cache.keys), read-through and
write-through helpers per domain (market, orders, strategies, users, notifications) and
rate limits (cache.ratelimit). PostgreSQL stays the source of truth; a Redis outage never
fails a caller (cache.client.Cache)."""

from tradestore.cache.client import Cache, open_cache
from tradestore.cache.ratelimit import Decision, Limit, RateLimiter

__all__ = ["Cache", "Decision", "Limit", "RateLimiter", "open_cache"]
