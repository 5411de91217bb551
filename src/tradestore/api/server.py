"""Serving the app with uvicorn: `tradestore serve`, and a service for `tradestore up`
(dashboard at /, REST API at /api/v1, OpenAPI at /docs, health at /health)."""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

import uvicorn

from tradestore.api.app import create_app
from tradestore.api.config import ApiSettings
from tradestore.config import Settings, get_settings
from tradestore.inbound.config import WebhookSettings

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "fast_io", "serve", "service", "urls"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def fast_io() -> dict[str, str]:
    """uvicorn's event loop and HTTP parser: uvloop and httptools (C, both dependencies of
    tradestore; about a third less server CPU per request than asyncio and h11), each
    falling back to the pure-Python one where it is not installed."""
    return {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }


def serve(
    settings: Settings | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    stop_event: threading.Event | None = None,
    *,
    conninfo: str | None = None,
    webhook_settings: WebhookSettings | None = None,
    log_level: str = "info",
    access_log: bool = True,
    **uvicorn_options: Any,
) -> None:
    """Serve the API until interrupted or `stop_event` is set (then finish the requests in
    flight). Runs in the calling thread; signal handlers are installed only when that is
    the main thread. Behind a reverse proxy, uvicorn trusts X-Forwarded-For from the
    addresses in FORWARDED_ALLOW_IPS (default 127.0.0.1)."""
    app = create_app(
        settings or get_settings(), conninfo=conninfo, webhook_settings=webhook_settings
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=True,
        lifespan="on",
        timeout_graceful_shutdown=10,
        **{**fast_io(), **uvicorn_options},
    )
    server = uvicorn.Server(config)
    if stop_event is not None:

        def watch() -> None:
            stop_event.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="api-stop", daemon=True).start()
    server.run()
    if not server.started and not (stop_event is not None and stop_event.is_set()):
        # uvicorn logs why (port in use, the app's startup failed) and returns
        raise RuntimeError(f"the API server did not start on {host}:{port}")


def urls(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> dict[str, str]:
    """Where a person finds each part of the served app."""
    shown = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("0.0.0.0", "") else host)
    base = f"http://{shown}:{port}"
    return {
        "dashboard": f"{base}/",
        "api": f"{base}/api/v1",
        "docs": f"{base}/docs",
        "openapi": f"{base}/openapi.json",
        "health": f"{base}/health",
    }


def service(conninfo: str, settings: Settings, stop: threading.Event) -> None:
    """A `tradestore up` service: serve the dashboard, the REST API, /health and the
    webhooks on API_HOST:API_PORT (default 127.0.0.1:8000) until `stop` is set."""
    api = ApiSettings()
    for name, url in urls(api.API_HOST, api.API_PORT).items():
        log.info("%s: %s", name, url)
    serve(settings, api.API_HOST, api.API_PORT, stop, conninfo=conninfo)
