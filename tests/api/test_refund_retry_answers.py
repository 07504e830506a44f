"""What the API answers when an operator's retry of a failed refund fails in its workflow (as the
Temporal client reports it: the workflow's failure, caused by its activity's, caused by the
ApplicationError the worker raised): a domain code is that domain error, `provider_refused` a
502 with the provider's code, never an internal error."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from activities.payments.contract import RetryRefundInput, RetryRefundResult
from api.errors import ApiError
from api.services import aftersale
from domains.payments.errors import RefundExceedsCaptured


def _failed_with(code: str, **details: Any) -> WorkflowFailureError:
    """A retry workflow's failure as the client raises it: its activity failed with `code`."""
    refusal = ApplicationError("refused", {"code": code, **details}, type=code, non_retryable=True)
    activity = ActivityError(
        "activity error",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="payments.retry_refund",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    activity.__cause__ = refusal
    return WorkflowFailureError(cause=activity)


def _failing(monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    async def retry_refund(temporal: Client, retry: RetryRefundInput) -> RetryRefundResult:
        raise failure

    monkeypatch.setattr(aftersale, "retry_refund", retry_refund)


RETRY = RetryRefundInput(refund_id=uuid.uuid4(), note=None)


async def test_a_retry_refused_for_want_of_money_left_is_refund_exceeds_captured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _failing(monkeypatch, _failed_with("refund_exceeds_captured", requested="20.00"))

    with pytest.raises(RefundExceedsCaptured) as refused:
        await aftersale.retried(cast(Client, None), RETRY)

    assert (refused.value.http_status, refused.value.code) == (422, "refund_exceeds_captured")
    assert refused.value.details["requested"] == "20.00"


async def test_a_retry_the_provider_refuses_otherwise_is_502_provider_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _failing(monkeypatch, _failed_with("provider_refused", provider_code="resource_missing"))

    with pytest.raises(ApiError) as refused:
        await aftersale.retried(cast(Client, None), RETRY)

    assert (refused.value.status, refused.value.code) == (502, "provider_refused")
    assert "resource_missing" in refused.value.detail
    assert refused.value.extra == {"provider_code": "resource_missing"}


async def test_a_retry_failing_for_an_unknown_reason_is_not_disguised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failure = _failed_with("something_else")
    _failing(monkeypatch, failure)

    with pytest.raises(WorkflowFailureError) as raised:
        await aftersale.retried(cast(Client, None), RETRY)

    assert raised.value is failure
