"""Inbound webhooks. POST /webhooks/tradingview: TradingView alerts (seed 001 §5.7).

The request is first counted against its source address's rate limit (429 beyond it,
before the body is read or anything stored). The alert is then stored and judged while
TradingView waits (it gives up after 3 s); the order is placed in a background task that
runs after the reply has been sent.

Under /api/v1 the logged-in user manages their webhook credentials (`api_router`):

    GET    /webhooks/credentials                 the user's credentials (never a secret)
    POST   /webhooks/credentials                 a new one; its token is shown this once
    POST   /webhooks/credentials/{id}/rotate     a new token; the old one stops working
    DELETE /webhooks/credentials/{id}            revoke
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tradestore.api.context import UserContext, current_user, require_role
from tradestore.identity.rls import Role
from tradestore.inbound import credentials
from tradestore.inbound.tradingview import TradingViewIntake

__all__ = ["api_router", "read_limited", "router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
api_router = APIRouter(prefix="/webhooks/credentials", tags=["webhooks"])


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
        401: {"description": "the webhook credential (the body's secret) is missing or wrong"},
        403: {"description": "the source address is not in WEBHOOK_IP_ALLOWLIST"},
        409: {
            "description": "the idempotency key was used with a different payload: held for review"
        },
        413: {"description": "the body is larger than WEBHOOK_MAX_BODY_BYTES"},
        422: {
            "description": "the alert breaks the schema or names a symbol, or an account or "
            "strategy of the credential's owner, that does not exist"
        },
        429: {"description": "too many requests from this address (nothing was stored)"},
        503: {"description": "database down, or the dedupe module not enabled"},
    },
)
async def tradingview(request: Request, background: BackgroundTasks) -> JSONResponse:
    intake: TradingViewIntake = request.app.state.tradingview
    remote = request.client.host if request.client else None
    decision = await intake.admit(remote, getattr(request.app.state, "aio", None))
    if decision is not None and not decision.allowed:
        return JSONResponse(
            {"status": "rate_limited", "detail": "too many requests from this address"},
            status_code=429,
            headers=decision.headers(),
        )
    body, truncated = await read_limited(request, intake.settings.WEBHOOK_MAX_BODY_BYTES)
    reply = await intake.receive(
        body,
        truncated=truncated,
        content_type=request.headers.get("content-type"),
        remote_addr=remote,
    )
    if reply.process_alert_id is not None:
        background.add_task(intake.process_safely, reply.process_alert_id, reply.judged)
    return JSONResponse(reply.body, status_code=reply.status, background=background)


class CredentialOut(BaseModel):
    id: int
    token_id: str
    label: str | None
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class IssuedOut(BaseModel):
    credential: CredentialOut
    token: str = Field(description='shown once: put it in the alert\'s "secret" field')


class CredentialIn(BaseModel):
    label: str | None = Field(default=None, max_length=100)


class RevokedOut(BaseModel):
    id: int
    revoked: bool


def _out(c: credentials.Credential) -> CredentialOut:
    return CredentialOut.model_validate(c, from_attributes=True)


@api_router.get("", summary="Your webhook credentials (never their tokens)")
def list_credentials(ctx: UserContext = Depends(current_user)) -> list[CredentialOut]:
    with ctx.db() as conn:
        return [_out(c) for c in credentials.list_credentials(conn, ctx.user_id)]


@api_router.post("", status_code=201, summary="Create a webhook credential (token shown once)")
def create_credential(
    data: CredentialIn | None = None, ctx: UserContext = Depends(current_user)
) -> IssuedOut:
    require_role(ctx, Role.TRADER, Role.ADMIN)
    with ctx.db() as conn:
        issued = credentials.create(conn, ctx.user_id, data.label if data else None)
    return IssuedOut(credential=_out(issued.credential), token=issued.token)


@api_router.post("/{credential_id}/rotate", summary="New token for a credential (shown once)",
                 responses={404: {}})  # fmt: skip
def rotate_credential(credential_id: int, ctx: UserContext = Depends(current_user)) -> IssuedOut:
    require_role(ctx, Role.TRADER, Role.ADMIN)
    with ctx.db() as conn:
        issued = credentials.rotate(conn, ctx.user_id, credential_id)
    return IssuedOut(credential=_out(issued.credential), token=issued.token)


@api_router.delete("/{credential_id}", summary="Revoke a webhook credential", responses={404: {}})
def revoke_credential(credential_id: int, ctx: UserContext = Depends(current_user)) -> RevokedOut:
    with ctx.db() as conn:
        return RevokedOut(
            id=credential_id, revoked=credentials.revoke(conn, ctx.user_id, credential_id)
        )
