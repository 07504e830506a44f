"""What the services addressing an after-sale workflow (a cancellation, a refund, a return) share:
the Idempotency-Key they require, how a call to the workflow that Temporal does not answer
becomes a 503, and an operator's answer to a workflow waiting at needs_attention."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError
from api.services.checkouts import MAX_KEY_LENGTH
from domains.checkout.errors import NotWaitingForOperator
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


class NeedsAttention(Protocol):
    """The client of a workflow that waits at needs_attention for an operator."""

    async def retry(self, workflow_of: uuid.UUID, update_id: str | None = None, /) -> None:
        """Run the workflow's failed steps again."""
        ...

    async def resolve(
        self, workflow_of: uuid.UUID, note: str, update_id: str | None = None, /
    ) -> None:
        """Record, with a note, that the failed steps were settled by hand."""
        ...


async def attend(
    client: NeedsAttention,
    workflow_of: uuid.UUID,
    note: str | None,
    update_id: str | None,
    *,
    answered_by: Callable[[uuid.UUID, Awaitable[None]], Awaitable[None]],
    not_waiting: str,
) -> None:
    """An operator's answer to the workflow of `workflow_of` (an order, a return): run its failed
    steps again (`note` None) or record that they were settled by hand, through `answered_by`
    (the service's `answered`). 409 `not_waiting_for_operator` (`not_waiting` says it) when no
    run waits for an operator: it is not at needs_attention, or there is no run."""
    if note is None:
        call = client.retry(workflow_of, update_id)
    else:
        call = client.resolve(workflow_of, note, update_id)
    try:
        await answered_by(workflow_of, call)
    except (WorkflowUpdateFailedError, RPCError) as exc:
        # `answered` lets through only the RPCError of a missing run.
        raise NotWaitingForOperator(not_waiting) from exc
