"""How starting a checkout's workflow answers, whatever Temporal says: the workflow's result, no
result for a checkout that ran and ended, a 503 the client may retry when Temporal is down."""

from __future__ import annotations

import uuid

import pytest
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError
from api.services.checkouts import _started


async def _raising(exc: BaseException) -> str:
    raise exc


async def _answering() -> str:
    return "started"


async def test_a_started_workflow_answers_its_result() -> None:
    assert await _started(uuid.uuid4(), _answering()) == "started"


async def test_a_checkout_that_ran_and_ended_answers_nothing() -> None:
    ended = WorkflowAlreadyStartedError("checkout-x", "CheckoutWorkflow")
    assert await _started(uuid.uuid4(), _raising(ended)) is None


async def test_temporal_not_answering_is_a_503_to_retry_with_the_same_key() -> None:
    down = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
    with pytest.raises(ApiError) as refused:
        await _started(uuid.uuid4(), _raising(down))
    assert (refused.value.status, refused.value.code) == (503, "temporal_unavailable")
    assert "same Idempotency-Key" in refused.value.detail
    assert refused.value.__cause__ is down
