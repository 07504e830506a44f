"""Money after the sale follows the provider: refunds and disputes, in any state of the checkout.

`PaymentAfterSaleWorkflow` (id `after-sale-<intent_id>`) takes the provider's refund and dispute
events of one intent as signals (`after_sale_event`, started with the first one) and records
each batch through the payments queue, one at a time: every round re-reads the provider, so
events arriving together, twice or out of order end in the provider's latest word. It ends once
no event waits; the next event starts it again.

`RefundRetryWorkflow` (id `refund-retry-<refund_id>`) is an operator's retry of a failed refund.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from pydantic import Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.payments.contract import (
        AFTER_SALE,
        RETRY_REFUND,
        AfterSaleInput,
        RetryRefundInput,
        RetryRefundResult,
    )
    from activities.shared import ActivityName, InputT, Payload, ResultT
    from workflows.checkout.contract import TaskQueue

AFTER_SALE_SIGNAL = "after_sale_event"
# Provider outages are retried for as long as they last; the events stay in the workflow.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["refund_not_found", "refund_not_failed"],
)
# Events handled by one run before it continues as new (keeps its history short).
EVENTS_PER_RUN = 500
# How long one attempt at the payments domain's after-sale work may take.
PAYMENTS_STEP_TIMEOUT = timedelta(seconds=30)


async def on_payments_queue(
    activity: ActivityName[InputT, ResultT], arg: InputT, retry_policy: RetryPolicy
) -> ResultT:
    """Run a payments activity on the payments queue, retried by `retry_policy`."""
    result: ResultT = await workflow.execute_activity(
        activity.name,
        arg,
        task_queue=TaskQueue.PAYMENTS.value,
        start_to_close_timeout=PAYMENTS_STEP_TIMEOUT,
        retry_policy=retry_policy,
        result_type=activity.result,
    )
    return result


def after_sale_workflow_id(intent_id: str) -> str:
    """The workflow id recording one intent's refunds and disputes."""
    return f"after-sale-{intent_id}"


def refund_retry_workflow_id(refund_id: uuid.UUID) -> str:
    """The workflow id of an operator's retry of one failed refund."""
    return f"refund-retry-{refund_id}"


class AfterSaleEvent(Payload):
    """A provider event about the intent's money after the sale (its object's id: the dispute's
    for a dispute event)."""

    id: str
    type: str
    object_id: str | None = None


class AfterSaleStart(Payload):
    """Whose intent the workflow records."""

    checkout_id: uuid.UUID
    intent_id: str
    # Events carried over from the previous run (continue-as-new).
    waiting: list[AfterSaleEvent] = Field(default_factory=list)


@workflow.defn(name="PaymentAfterSaleWorkflow")
class PaymentAfterSaleWorkflow:
    """Records refunds and disputes of one intent, on task queue `checkout`."""

    def __init__(self) -> None:
        self._waiting: list[AfterSaleEvent] = []

    @workflow.signal(name=AFTER_SALE_SIGNAL)
    def event(self, event: AfterSaleEvent) -> None:
        """One more provider event about the intent."""
        self._waiting.append(event)

    @workflow.run
    async def run(self, start: AfterSaleStart) -> int:
        """Record every waiting event (a round per batch); how many events were handled."""
        handled = 0
        self._waiting = [*start.waiting, *self._waiting]
        while self._waiting:
            batch, self._waiting = self._waiting, []
            disputes = sorted(
                {e.object_id for e in batch if e.object_id and e.type.startswith("charge.dispute.")}
            )
            recording = AfterSaleInput(
                checkout_id=start.checkout_id, intent_id=start.intent_id, dispute_ids=disputes
            )
            await on_payments_queue(AFTER_SALE, recording, PROVIDER_RETRY)
            handled += len(batch)
            if handled >= EVENTS_PER_RUN and self._waiting:
                workflow.continue_as_new(
                    AfterSaleStart(
                        checkout_id=start.checkout_id,
                        intent_id=start.intent_id,
                        waiting=self._waiting,
                    )
                )
        return handled


@workflow.defn(name="RefundRetryWorkflow")
class RefundRetryWorkflow:
    """An operator's retry of a failed refund, on task queue `checkout`."""

    @workflow.run
    async def run(self, input: RetryRefundInput) -> RetryRefundResult:
        """Refund the amount once more through the payments queue."""
        return await on_payments_queue(RETRY_REFUND, input, PROVIDER_RETRY)
