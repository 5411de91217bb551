"""One JSON shape for every error the API returns:

    {"error": {"code": "validation_error", "message": "...", "field": "quantity",
               "rule": "must be > 0", "value": "-1"}}

tradestore's own exceptions carry the field, the rule and the value (the database names
them, see system.raise_invalid); the handlers here map them to HTTP statuses:

    ValidationError                    422 (404 when the rule says the id names nothing:
                                            another user's object looks like no object;
                                            409 for a refused state transition)
    FastAPI's request validation       422, reshaped into the same shape
    AuthError                          401 (+ WWW-Authenticate: Bearer)
    Forbidden                          403
    NotFound                           404
    Conflict                           409
    RateLimited                        429 (+ Retry-After)
    ApiError                           its own status
    database unreachable, pool empty   503
    anything else                      500, with the request id and nothing else

Every error tradestore raises on purpose derives from TradestoreError, so one handler
(tradestore_error_response) maps them all.

A value is echoed shortened, and never for a field that holds a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from tradestore.db.errors import Conflict, NotFound, TradestoreError, ValidationError
from tradestore.identity.errors import AuthError, Forbidden, RateLimited

__all__ = ["ApiError", "error_response", "install_error_handlers"]

log = logging.getLogger(__name__)

# Fields whose values are never echoed back.
SECRET_FIELDS = frozenset(
    {"password", "refresh_token", "access_token", "token", "api_key", "api_secret", "secret"}
)
_VALUE_MAX = 200
# Rules of the SQL API and of tradestore.db.errors that mean "this id names nothing you
# can see": under row-level security another user's object is exactly that.
_NOT_FOUND_RULES = ("must name an existing", "must reference an existing")
# A refused state transition ("cannot cancel an order that is FILLED") conflicts with the
# object's state rather than being bad input.
_CONFLICT_RULES = ("cannot ",)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(TradestoreError):
    """An error raised by the API layer itself (not by the domain code)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        rule: str | None = None,
        value: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.field = field
        self.rule = rule
        self.value = value
        self.headers = dict(headers or {})


def shown_value(field: str | None, value: object) -> str | None:
    """What an error may echo of a value: nothing for secrets, at most 200 characters."""
    if value is None:
        return None
    if field and field.rsplit(".", 1)[-1].lower() in SECRET_FIELDS:
        return "********"
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _VALUE_MAX else text[:_VALUE_MAX] + "..."


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    rule: str | None = None,
    value: object = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "code": code or _CODES.get(status, "error"),
        "message": message,
        "field": field,
        "rule": rule,
        "value": shown_value(field, value),
    }
    if extra:
        body.update(extra)
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def _validation(exc: ValidationError) -> JSONResponse:
    rule = str(exc.rule)
    if rule.startswith(_NOT_FOUND_RULES):
        return error_response(
            404,
            f"{exc.field}: not found",
            code="not_found",
            field=exc.field,
            rule=rule,
            value=exc.value,
        )
    if rule.startswith(_CONFLICT_RULES):
        return error_response(
            409, f"{exc.field}: {rule}", field=exc.field, rule=rule, value=exc.value
        )
    return error_response(422, f"{exc.field}: {rule}", field=exc.field, rule=rule, value=exc.value)


def _request_validation(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation errors (body, query, path) in tradestore's shape: the
    first error names field, rule and value; `errors` lists them all."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or "body"
        kind = err.get("type", "invalid")
        rule = err.get("msg", "invalid").removeprefix("Value error, ")
        if kind == "extra_forbidden":
            rule = "is not an accepted field"
        elif kind == "missing":
            rule = "is required"
        problems.append(
            {"field": field, "rule": rule, "value": shown_value(field, err.get("input"))}
        )
    first = problems[0] if problems else {"field": "body", "rule": "invalid", "value": None}
    return JSONResponse(
        {
            "error": {
                "code": "validation_error",
                "message": f"{first['field']}: {first['rule']}",
                **first,
                "errors": problems,
            }
        },
        status_code=422,
    )


def tradestore_error_response(request: Request, exc: TradestoreError) -> JSONResponse:
    """The response to any error tradestore raises on purpose (all derive from
    TradestoreError): the most specific kind decides the status."""
    if isinstance(exc, ApiError):
        return error_response(
            exc.status,
            exc.message,
            code=exc.code,
            field=exc.field,
            rule=exc.rule,
            value=exc.value,
            headers=exc.headers,
        )
    if isinstance(exc, ValidationError):
        return _validation(exc)
    if isinstance(exc, NotFound):
        return error_response(
            404, f"{exc.what} not found", field=exc.what.replace(" ", "_"), value=exc.key,
            rule="must name an existing object you may see",
        )  # fmt: skip
    if isinstance(exc, Conflict):
        return error_response(409, "the request conflicts with the current state", rule=str(exc))
    if isinstance(exc, AuthError):
        log.info("authentication refused: %s", exc.reason)
        return error_response(
            401,
            str(exc),
            field="authorization",
            rule="needs a valid, unexpired access token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if isinstance(exc, Forbidden):
        return error_response(
            403, f"{exc.field}: {exc.rule}", field=exc.field, rule=exc.rule, value=exc.value
        )
    if isinstance(exc, RateLimited):
        return error_response(
            429,
            str(exc),
            field=exc.what,
            rule="too many requests",
            value=None,
            headers={"Retry-After": str(exc.retry_after)},
        )
    return _internal_error(request, exc)


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500,
        "internal error; the request id identifies it in the server's log",
        extra={"request_id": request_id},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TradestoreError)
    async def _tradestore(request: Request, exc: TradestoreError) -> JSONResponse:
        return tradestore_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _request_validation(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection free in time: %s", exc)
        return error_response(
            503, "the database is busy; retry shortly", headers={"Retry-After": "1"}
        )

    @app.exception_handler(psycopg.OperationalError)
    async def _db_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", type(exc).__name__)
        return error_response(503, "the database is unavailable", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(request, exc)
