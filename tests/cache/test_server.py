"""The embedded Redis under TRADESTORE_HOME: start, attach, stop, data file, and
open_cache choosing between REDIS_URL and the embedded server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import redis

from tradestore.cache import keys, users
from tradestore.cache.client import Cache, open_cache
from tradestore.cache.server import EmbeddedRedis
from tradestore.config import load_settings


def test_start_attach_and_stop_with_the_data_file_under_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    owner = EmbeddedRedis(home)
    url = owner.start()
    try:
        assert owner.owned and owner.started_fresh
        assert url == f"unix://{home.resolve()}/redis/redis.sock?db=0"
        client = redis.Redis.from_url(url, decode_responses=True)
        client.set("k", "v")

        other = EmbeddedRedis(home)
        assert other.start() == url
        assert not other.owned and not other.started_fresh
        assert other.stop() is False  # not the owner: detaches only
        assert owner.is_running() and client.get("k") == "v"
        client.close()
    finally:
        assert owner.stop() is True
    assert not owner.is_running()
    assert (home / "redis" / "cache.rdb").is_file()  # saved on shutdown

    again = EmbeddedRedis(home)
    again.start()
    try:
        client = redis.Redis.from_url(again.url, decode_responses=True)
        assert client.get("k") == "v"  # loaded from the data file
        client.close()
    finally:
        again.stop()


def test_open_cache_starts_the_embedded_server_and_drops_stale_mirrors(tmp_path: Path) -> None:
    settings = load_settings(None, TRADESTORE_HOME=tmp_path / "home")
    with open_cache(settings) as cache:
        assert cache.server is not None and cache.ping()
        cache.redis.set(keys.order_status_key(7), "{}")
        keys.push_telegram(cache, 41)
    # Restarted from its data file: mirrored state may be older than PostgreSQL, so it
    # goes; the Telegram queue stays.
    with open_cache(settings) as cache:
        assert cache.redis.get(keys.order_status_key(7)) is None
        assert keys.pop_telegram(cache) == 41


def test_open_cache_uses_redis_url_when_set(own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    settings = load_settings(None, REDIS_URL=own_redis.url, TRADESTORE_HOME=tmp_path / "other")
    cache = open_cache(settings)
    try:
        assert cache.server is None and cache.ping()
        assert not (tmp_path / "other" / "redis").exists()
    finally:
        cache.close()
    assert own_redis.is_running()  # closing a client never stops a server it did not start


def test_a_cache_on_a_dead_server_answers_with_defaults(tmp_path: Path) -> None:
    cache = Cache.from_url(f"unix://{tmp_path}/nothing.sock", retry_after=60)
    assert cache.ping() is False
    assert not cache.available  # breaker open: the next calls do not even try
    assert cache.run(lambda r: r.get("x"), "fallback") == "fallback"
    assert cache.errors == 1


def test_a_server_orphaned_by_a_killed_owner_is_adopted_and_stopped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from tradestore.cache.server import EmbeddedRedis; "
         "s = EmbeddedRedis(sys.argv[1]); s.start(); print(s.owned, flush=True); "
         "sys.stdin.read()", str(home)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "True"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    orphan = EmbeddedRedis(home)
    assert orphan.is_running()  # redis-server outlived its owner

    adopter = EmbeddedRedis(home)
    adopter.start()
    assert adopter.owned and not adopter.started_fresh
    assert adopter.stop() is True
    assert not EmbeddedRedis(home).is_running()


def _wait_in_aof(server: EmbeddedRedis, marker: bytes) -> None:
    """The AOF is written before the reply except while a background fsync runs; wait
    for the write rather than assume it."""
    deadline = time.monotonic() + 10
    while marker not in (server.aof_file.read_bytes() if server.aof_file.exists() else b""):
        assert time.monotonic() < deadline, "the write never reached the AOF"
        time.sleep(0.05)


def test_a_killed_server_comes_back_with_its_keys_from_the_aof(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = EmbeddedRedis(home)
    server.start()
    config = server.config_file.read_text()
    assert "appendonly yes" in config and "appendfsync everysec" in config
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.set("kept", "after a kill")
    client.rpush("queue", "1", "2")
    client.close()
    _wait_in_aof(server, b"queue")
    pid = int(server.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)  # no SHUTDOWN, no RDB save
    deadline = time.monotonic() + 10
    while server.is_running():  # gone, or a zombie where nothing reaps orphans
        assert time.monotonic() < deadline, "redis-server survived SIGKILL"
        time.sleep(0.02)
    assert not server.data_file.exists()

    again = EmbeddedRedis(home)
    again.start()
    try:
        assert again.started_fresh
        client = redis.Redis.from_url(again.url, decode_responses=True)
        assert client.get("kept") == "after a kill"
        assert client.lrange("queue", 0, -1) == ["1", "2"]
        client.close()
    finally:
        again.stop()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie, where nothing reaps the daemon, has too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_rdb_without_an_aof_is_loaded_then_logged(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with EmbeddedRedis(home) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.set("k", "from the rdb")
        client.close()
    server.aof_file.unlink()  # an RDB-only data dir, as before AOF was on
    assert server.data_file.exists()
    with EmbeddedRedis(home) as again:
        client = redis.Redis.from_url(again.url, decode_responses=True)
        assert client.get("k") == "from the rdb"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
        assert "appendonly yes" in again.config_file.read_text()
        pid = again._running_pid()
    # Stopped right after a start that wrote the initial AOF: the server is gone.
    assert pid is not None and _gone(pid)


def test_losing_the_redis_files_costs_only_a_cold_cache(
    tmp_path: Path, conn: psycopg.Connection
) -> None:
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES ('a', 'a@x.io', 'x');"
        "INSERT INTO account.user_profiles (user_id, preferences) "
        'SELECT id, \'{"theme": "dark"}\' FROM account.users'
    )
    user_id = conn.execute("SELECT id FROM account.users").fetchone()[0]
    home = tmp_path / "home"
    with EmbeddedRedis(home) as server:
        cache = Cache.from_url(server.url, retry_after=0.0)
        assert users.preferences(cache, conn, user_id) == {"theme": "dark"}
        assert cache.redis.exists(keys.preferences_key(user_id))
        cache.redis.close()
    shutil.rmtree(home / "redis")  # AOF and RDB lost

    with EmbeddedRedis(home) as server:
        cache = Cache.from_url(server.url, retry_after=0.0)
        assert cache.redis.dbsize() == 0
        # Read-through rebuilds the key from PostgreSQL, with the database's value.
        conn.execute('UPDATE account.user_profiles SET preferences = \'{"theme": "light"}\'')
        assert users.preferences(cache, conn, user_id) == {"theme": "light"}
        assert keys.get_preferences(cache, user_id) == {"theme": "light"}
        cache.redis.close()
