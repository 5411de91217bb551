"""The web dashboard: GET / serves the single-page app in tradestore/api/static/ (plain
HTML, JavaScript and CSS, no build step), and /static/ its files, including the vendored
charting library (TradingView Lightweight Charts, static/vendor/). Nothing is fetched
from another origin at run time; the page's Content-Security-Policy forbids it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "router", "static_files"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
