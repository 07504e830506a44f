"""Typed business errors: every failure the platform reports has a stable `code`."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A permanent business failure with a stable `code`; the message is for humans.

    A subclass names its code (and an HTTP status other than its parent's) in its header:
    `class CartLocked(Conflict, code="cart_locked"): ...`.
    """

    code: ClassVar[str] = "domain_error"
    # HTTP status the API answers with when this error reaches it.
    http_status: ClassVar[int] = 422
    # The details (keyword arguments) the API shows the caller, as members of the problem body
    # next to `code` (JSON values only); every other detail is for the logs.
    public_details: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(
        cls, *, code: str | None = None, http_status: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def shown_details(self) -> dict[str, Any]:
        """The details the caller is told (`public_details` that were given)."""
        return {name: self.details[name] for name in self.public_details if name in self.details}


class NotFound(DomainError, code="not_found", http_status=404):
    """The thing asked for does not exist (or is not the caller's to see)."""


class Conflict(DomainError, code="conflict", http_status=409):
    """The request contradicts the current state (taken key, locked cart, ...)."""
