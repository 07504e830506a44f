"""Starting the after-sale workflows from outside Temporal (the API)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.payments.contract import RetryRefundInput, RetryRefundResult
from workflows.aftersale import (
    AFTER_SALE_SIGNAL,
    AfterSaleEvent,
    AfterSaleStart,
    PaymentAfterSaleWorkflow,
    RefundRetryWorkflow,
    after_sale_workflow_id,
    refund_retry_workflow_id,
)
from workflows.checkout.contract import TaskQueue


async def deliver_after_sale(
    temporal: Client, start: AfterSaleStart, event: AfterSaleEvent
) -> None:
    """Signal the intent's after-sale workflow with `event`, starting it if none runs."""
    await temporal.start_workflow(
        PaymentAfterSaleWorkflow.run,
        start,
        id=after_sale_workflow_id(start.intent_id),
        task_queue=TaskQueue.CHECKOUT.value,
        start_signal=AFTER_SALE_SIGNAL,
        start_signal_args=[event],
    )


async def retry_refund(temporal: Client, retry: RetryRefundInput) -> RetryRefundResult:
    """Run an operator's retry of a failed refund, once per refund ever (a repeated request
    answers the first retry's new refund, or fails as the first retry failed:
    WorkflowFailureError either time), and answer the new refund."""
    workflow_id = refund_retry_workflow_id(retry.refund_id)
    try:
        handle = await temporal.start_workflow(
            RefundRetryWorkflow.run,
            retry,
            id=workflow_id,
            task_queue=TaskQueue.CHECKOUT.value,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        first = temporal.get_workflow_handle(workflow_id, result_type=RetryRefundResult)
        result: RetryRefundResult = await first.result()
        return result
    return await handle.result()
