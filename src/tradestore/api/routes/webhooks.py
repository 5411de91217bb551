"""Inbound webhooks. POST /webhooks/tradingview: TradingView alerts (seed 001 §5.7).

The alert is stored and judged while TradingView waits (it gives up after 3 s); the order
is placed in a background task that runs after the reply has been sent.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse

from tradestore.inbound.tradingview import TradingViewIntake

__all__ = ["read_limited", "router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


async def read_limited(request: Request, limit: int) -> tuple[bytes, bool]:
    """The body, up to `limit` bytes; True when there was more (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


@router.post(
    "/tradingview",
    summary="Receive a TradingView alert",
    responses={
        200: {"description": "duplicate: this idempotency key was seen with the same payload"},
        202: {"description": "accepted: stored; the order is placed right after the reply"},
        400: {"description": "the body is not a JSON object"},
        401: {"description": "the shared secret is missing or wrong"},
        403: {"description": "the source address is not in WEBHOOK_IP_ALLOWLIST"},
        409: {
            "description": "the idempotency key was used with a different payload: held for review"
        },
        413: {"description": "the body is larger than WEBHOOK_MAX_BODY_BYTES"},
        422: {
            "description": "the alert breaks the schema or names an unknown symbol/account/strategy"
        },
        503: {"description": "database down, dedupe module not enabled, or no secret configured"},
    },
)
async def tradingview(request: Request, background: BackgroundTasks) -> JSONResponse:
    intake: TradingViewIntake = request.app.state.tradingview
    body, truncated = await read_limited(request, intake.settings.WEBHOOK_MAX_BODY_BYTES)
    reply = await intake.receive(
        body,
        truncated=truncated,
        content_type=request.headers.get("content-type"),
        remote_addr=request.client.host if request.client else None,
    )
    if reply.process_alert_id is not None:
        background.add_task(intake.process_safely, reply.process_alert_id)
    return JSONResponse(reply.body, status_code=reply.status, background=background)
