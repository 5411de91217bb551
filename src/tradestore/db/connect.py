"""Connections and pools with tradestore's session settings.

Session settings (search_path, statement_timeout, application_name) travel in the startup
packet via the libpq `options` parameter, so they cost no extra round trip per connection
and survive `RESET ALL`/`DISCARD ALL` (they become the session defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from tradestore.config import Settings, get_settings
from tradestore.db.server import EmbeddedPostgres

__all__ = [
    "APPLICATION_NAME",
    "SEARCH_PATH",
    "ConnectHook",
    "add_connect_hook",
    "connect",
    "make_pool",
    "remove_connect_hook",
    "resolve_conninfo",
    "session_conninfo",
    "session_options",
]

SEARCH_PATH = "trade, account, market, brain, analytics, system, public"
APPLICATION_NAME = "tradestore"

ConnectHook = Callable[[psycopg.Connection[Any]], None]
# Run on every new connection of `connect` and `make_pool`, in this process (e.g.
# tradestore.cache.invalidation.install: the connection applies its own cache
# invalidations as its commits return).
_connect_hooks: list[ConnectHook] = []


def add_connect_hook(hook: ConnectHook) -> None:
    _connect_hooks.append(hook)


def remove_connect_hook(hook: ConnectHook) -> None:
    if hook in _connect_hooks:
        _connect_hooks.remove(hook)


def _run_connect_hooks(conn: psycopg.Connection[Any]) -> None:
    for hook in list(_connect_hooks):
        hook(conn)


def _escape_option(value: str) -> str:
    # libpq splits `options` on spaces unless they are backslash-escaped.
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def session_options(settings: Settings | None = None) -> str:
    """The `-c name=value ...` string applied to every tradestore connection."""
    settings = settings or get_settings()
    return (
        f"-c search_path={_escape_option(SEARCH_PATH)}"
        f" -c statement_timeout={settings.DB_STATEMENT_TIMEOUT}"
    )


def session_conninfo(
    conninfo: str,
    settings: Settings | None = None,
    *,
    application_name: str = APPLICATION_NAME,
) -> str:
    """`conninfo` with our session options added.

    Options already present in `conninfo` come last, so an explicit `-c` there wins.
    """
    existing = conninfo_to_dict(conninfo).get("options")
    options = session_options(settings) + (f" {existing}" if existing else "")
    return make_conninfo(conninfo, options=options, application_name=application_name)


def resolve_conninfo(
    settings: Settings | None = None, *, adopt_orphans: bool = True
) -> tuple[str, EmbeddedPostgres | None]:
    """Where to connect: DATABASE_URL if set, else the embedded server under TRADESTORE_HOME.

    The embedded server is started, or attached to if another process runs it. The caller
    gets the `EmbeddedPostgres` to stop it (it is also stopped at exit if we started it).
    Long-running owners (`up`, `serve`) adopt a server whose owner died; one-shot commands
    pass `adopt_orphans=False` and leave such a server running for the sessions using it.
    """
    settings = settings or get_settings()
    if settings.DATABASE_URL:
        return settings.DATABASE_URL, None
    archive = settings.backup_root / "wal_archive" if settings.TRADESTORE_WAL_ARCHIVE else None
    server = EmbeddedPostgres(
        settings.TRADESTORE_HOME,
        port=settings.TRADESTORE_PG_PORT,
        wal_archive=archive,
        adopt_orphans=adopt_orphans,
    )
    return server.start(), server


def make_pool(
    conninfo: str,
    settings: Settings | None = None,
    *,
    min_size: int = 1,
    max_size: int | None = None,
    application_name: str = APPLICATION_NAME,
    open: bool = True,
    **kw: Any,
) -> ConnectionPool[Any]:
    """A psycopg pool sized DB_POOL_SIZE + DB_MAX_OVERFLOW (the seed's "pool + overflow").

    psycopg_pool grows from `min_size` up to `max_size` on demand and shrinks idle
    connections back after `max_idle`, which is what SQLAlchemy's overflow means.
    Extra keyword arguments (`configure`, `reset`, `timeout`, `kwargs`, ...) go to
    `ConnectionPool`.
    """
    settings = settings or get_settings()
    max_size = max_size or settings.db_pool_max_size
    kw.setdefault("name", application_name)
    configure = kw.pop("configure", None)

    def _configure(conn: psycopg.Connection[Any]) -> None:
        if configure is not None:
            configure(conn)
        _run_connect_hooks(conn)

    return ConnectionPool(
        session_conninfo(conninfo, settings, application_name=application_name),
        min_size=min(min_size, max_size),
        max_size=max_size,
        open=open,
        configure=_configure,
        **kw,
    )


def connect(
    conninfo: str,
    settings: Settings | None = None,
    *,
    application_name: str = APPLICATION_NAME,
    **kw: Any,
) -> psycopg.Connection[Any]:
    """A single connection with the same session settings as the pool's."""
    conn = psycopg.connect(
        session_conninfo(conninfo, settings, application_name=application_name), **kw
    )
    try:
        _run_connect_hooks(conn)
    except BaseException:
        conn.close()
        raise
    return conn
