"""Which failures the API answers with 503 and Retry-After (a service cannot be reached) rather
than 500 (our bug)."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy.exc

from api.errors import unreachable


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
