"""Every error is `application/problem+json` (RFC 9457) with a stable `code`."""

from __future__ import annotations

import socket
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kit.errors import DomainError
from kit.logging import get_logger
from kit.money import MoneyError

log = get_logger(__name__)

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """An error the API answers with directly."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": f"https://errors.checkout.example/{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into problems."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.http_status, exc.code, exc.message, **exc.shown_details())

    @app.exception_handler(MoneyError)
    async def _money(_: Request, exc: MoneyError) -> JSONResponse:
        return problem(422, "invalid_money", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [_text(part) for part in e.get("loc", ())],
                "msg": _text(e.get("msg", "")),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        return problem(422, "validation_error", _invalid(errors), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, code, str(exc.detail), headers=headers)

    # The kinds an unreachable service raises get their own handlers (Starlette's catch-all for
    # Exception answers, then re-raises to the server, which logs a traceback per request).
    for kind in _SERVER_ERRORS:
        app.add_exception_handler(kind, _server_error)


def _text(part: object) -> object:
    """A location part or message as the answer can carry it: a name a client sent may hold a
    lone surrogate (`{"\\ud800": 1}` is valid JSON), which no UTF-8 body can encode; it is shown
    escaped instead of failing the answer."""
    if isinstance(part, int):
        return part
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def _invalid(errors: list[dict[str, Any]], shown: int = 3) -> str:
    """The detail of a 422 `validation_error`: which fields are wrong, and how (the first few;
    `errors` has them all), e.g. `valid_to: Field required`."""
    said = []
    for error in errors[:shown]:
        where = [str(part) for part in error["loc"]]
        if where[:1] == ["body"]:
            where = where[1:]  # the body's fields by their own names
        said.append(f"{'.'.join(where) or 'body'}: {error['msg']}")
    if not said:
        return "the request is not valid"
    more = f" (and {len(errors) - shown} more)" if len(errors) > shown else ""
    return "the request is not valid: " + "; ".join(said) + more


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    """500, or 503 with Retry-After when a service cannot be reached (`unreachable`)."""
    if unreachable(exc):
        # The client retries once the service is back, with the same Idempotency-Key where
        # it sent one: a repeat is answered as the first attempt was, never applied twice.
        log.warning("api.service_unavailable", path=request.url.path, error_type=type(exc).__name__)
        return problem(
            503,
            "service_unavailable",
            "a service the platform depends on is unreachable right now; try again",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )
    log.exception("api.unhandled", path=request.url.path, error_type=type(exc).__name__)
    return problem(500, "internal_error", "something went wrong on our side")


# What a client is told to wait before retrying while a service is unreachable.
UNAVAILABLE_RETRY_AFTER_S = 5
# SQLSTATEs of a server that is going away or not accepting connections: class 08 (connection
# exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
_UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
_SERVER_ERRORS: tuple[type[Exception], ...] = (
    Exception,
    OSError,
    sqlalchemy.exc.SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
_UNREACHABLE = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    socket.gaierror,
    TimeoutError,  # a connection attempt that timed out
    sqlalchemy.exc.TimeoutError,  # no pooled connection within the pool timeout
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it, says a service (a database, above all) cannot be reached
    right now, rather than that a request or a statement is wrong."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError):
            if current.connection_invalidated:
                return True
            if isinstance(current.orig, BaseException):
                pending.append(current.orig)
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNREACHABLE_SQLSTATES):
            return True
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return False
