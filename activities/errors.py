"""How a domain failure leaves an activity: permanent business failures are not retried."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from kit.errors import DomainError


@contextmanager
def business_failures() -> Iterator[None]:
    """Turn a DomainError into a non-retryable ApplicationError whose `type` is its stable code.

    Anything else (a lost connection, a deadlock, a provider timeout) propagates unchanged and
    Temporal retries the activity.
    """
    try:
        yield
    except DomainError as exc:
        raise ApplicationError(
            exc.message, {"code": exc.code, **exc.details}, type=exc.code, non_retryable=True
        ) from exc
