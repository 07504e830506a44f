"""What the services addressing an after-sale workflow (a cancellation, a refund, a return) share:
the Idempotency-Key they require, and how a call to the workflow that Temporal does not answer
becomes a 503."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TypeVar

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError
from api.services.checkouts import MAX_KEY_LENGTH
from kit.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)


def required_key(idempotency_key: str | None) -> str:
    """The request's Idempotency-Key: 400 `idempotency_key_required` when it is missing, blank
    or too long."""
    if not idempotency_key or not idempotency_key.strip() or len(idempotency_key) > MAX_KEY_LENGTH:
        raise ApiError(
            400,
            "idempotency_key_required",
            f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters is required",
        )
    return idempotency_key


async def answered(
    call: Awaitable[T],
    *,
    event: str,
    subject: tuple[str, uuid.UUID],
    retry_hint: str = "try again",
    missing_is_unavailable: bool = False,
) -> T:
    """`call` to a workflow; Temporal not answering is 503 `temporal_unavailable` (logged as
    `event` with `subject`, a field name and id). A workflow that is not there (NOT_FOUND) is the
    caller's to handle, unless `missing_is_unavailable`."""
    try:
        return await call
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        missing = isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND
        if missing and not missing_is_unavailable:
            raise
        field, value = subject
        log.error(event, **{field: str(value)}, reason=str(exc))
        raise ApiError(503, "temporal_unavailable", retry_hint) from exc
