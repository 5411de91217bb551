"""The web dashboard: GET / serves the single-page app in tradestore/api/static/ (plain
HTML, JavaScript and CSS, no build step), and /static/ its files, including the vendored
charting library (TradingView Lightweight Charts, static/vendor/). Nothing is fetched
from another origin at run time; the page's Content-Security-Policy forbids it.

GET /docs is Swagger UI from vendored assets (static/vendor/swagger-ui/), started by
static/docs.js, so the API reference works offline too; its own CSP allows only this
origin (Swagger UI sets inline style attributes, hence 'unsafe-inline' for styles)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_CSP", "STATIC_DIR", "router", "static_files"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" href="data:,">
  <title>tradestore API</title>
  <link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="/openapi.json"></div>
  <script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="/static/docs.js"></script>
</body>
</html>
"""

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def docs() -> HTMLResponse:
    return HTMLResponse(_DOCS_HTML, headers={"Content-Security-Policy": DOCS_CSP})


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
