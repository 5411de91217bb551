from tests.support.redis_fixtures import own_redis, redis_cache, redis_server  # noqa: F401
