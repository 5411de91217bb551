"""POST /api/v1/auth/login, /refresh, /logout and GET /api/v1/auth/me.

Login and refresh run as the application (there is no user yet); tokens are shown once,
in the response body, with Cache-Control: no-store. See docs/api.md for the flow.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from tradestore.api.context import UserContext, bearer_token, client_ip, current_user
from tradestore.api.schemas import LoginRequest, RefreshRequest, TokenOut, UserOut
from tradestore.identity import users
from tradestore.identity.auth import Principal, Tokens
from tradestore.identity.redact import register_secret

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_AUTH_ERRORS = {
    401: {"description": "wrong username or password, or a dead refresh token"},
    422: {"description": "malformed body"},
    429: {"description": "too many attempts (per username and per address); see Retry-After"},
}


def _issued(request: Request, principal: Principal, tokens: Tokens, response: Response) -> TokenOut:
    # Log lines never carry the tokens, whatever a handler prints.
    register_secret(tokens.access_token)
    register_secret(tokens.refresh_token)
    with request.app.state.sync_pool.connection() as conn:
        user = users.get_user(conn, principal.user_id)
    response.headers.update(_NO_STORE)
    return TokenOut(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        refresh_expires_at=tokens.refresh_expires_at,
        session_id=tokens.session_id,
        user=UserOut.model_validate(user),
    )


@router.post("/login", summary="Log in: an access token (24h) and a refresh token (30 days)",
             responses=_AUTH_ERRORS)  # fmt: skip
def login(body: LoginRequest, request: Request, response: Response) -> TokenOut:
    state = request.app.state
    with state.sync_pool.connection() as conn:
        principal, tokens = state.auth.login(
            conn,
            body.username,
            body.password,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    return _issued(request, principal, tokens, response)


@router.post("/refresh", summary="Rotate both tokens (a reused refresh token ends the session)",
             responses=_AUTH_ERRORS)  # fmt: skip
def refresh(body: RefreshRequest, request: Request, response: Response) -> TokenOut:
    state = request.app.state
    with state.sync_pool.connection() as conn:
        principal, tokens = state.auth.refresh(conn, body.refresh_token, ip=client_ip(request))
    return _issued(request, principal, tokens, response)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT,
             summary="End this session (the access and refresh tokens stop working)")  # fmt: skip
def logout(request: Request, ctx: UserContext = Depends(current_user)) -> Response:
    with ctx.app_db() as conn:
        ctx.auth.logout(conn, bearer_token(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", summary="The logged-in user")
def me(ctx: UserContext = Depends(current_user)) -> UserOut:
    with ctx.db() as conn:
        return UserOut.model_validate(users.get_user(conn, ctx.user_id))
