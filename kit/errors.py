"""Typed business errors: every failure the platform reports has a stable `code`."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A permanent business failure. Subclasses fix `code`; the message is for humans."""

    code: ClassVar[str] = "domain_error"
    # HTTP status the API answers with when this error reaches it.
    http_status: ClassVar[int] = 422

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFound(DomainError):
    """The thing asked for does not exist (or is not the caller's to see)."""

    code = "not_found"
    http_status = 404


class Conflict(DomainError):
    """The request contradicts the current state (taken key, locked cart, ...)."""

    code = "conflict"
    http_status = 409
