"""Which failures the API answers with 503 and Retry-After (a service cannot be reached) rather
than 500 (our bug)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI

from api.errors import install, unreachable
from api.schemas import UserIn


def _wrapped(cause: BaseException) -> Exception:
    """What SQLAlchemy raises around a driver error: the driver's error as `orig` and cause."""
    error = sqlalchemy.exc.DBAPIError("SELECT 1", None, Exception("adapted"))
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(),
        TimeoutError(),
        sqlalchemy.exc.TimeoutError("QueuePool limit reached"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),  # 57P01, pg_ctl stop
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),  # 57P03
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        _wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")),
        _wrapped(ConnectionResetError()),
    ],
    ids=repr,
)
def test_a_service_that_cannot_be_reached_is_unreachable(exc: BaseException) -> None:
    assert unreachable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        KeyError("missing"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        _wrapped(asyncpg.exceptions.SerializationError("could not serialize")),
    ],
    ids=repr,
)
def test_a_wrong_statement_or_a_bug_is_not(exc: BaseException) -> None:
    assert not unreachable(exc)


def test_a_cycle_of_causes_ends() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert not unreachable(first)


def _echo_app() -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/users")
    async def register(body: UserIn) -> dict[str, str]:
        return {"email": body.email}

    return app


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "a\\ud800b@x.io"}',  # a lone surrogate in a value
        b'{"\\udfff": 1, "email": "a@x.io"}',  # and in a field's name, echoed in `loc`
        b'{"email": "a\\u0000b@x.io"}',
    ],
    ids=["value", "name", "nul"],
)
async def test_what_is_not_text_is_a_validation_error_never_a_500(raw: bytes) -> None:
    transport = httpx.ASGITransport(app=_echo_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.post(
            "/users", content=raw, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "validation_error"
