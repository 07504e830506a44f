"""The one way to start and read operators' order refunds (the API, the tests)."""

from __future__ import annotations

import uuid

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from workflows.checkout.contract import TaskQueue
from workflows.order_refund.models import OrderRefundBody, OrderRefundInput, workflow_id
from workflows.order_refund.workflow import OrderRefundWorkflow

OrderRefundHandle = WorkflowHandle[OrderRefundWorkflow, OrderRefundBody]


class OrderRefundClient:
    """Operators' order refunds as Temporal workflows, addressed by order and key."""

    def __init__(self, client: Client) -> None:
        self.temporal = client

    def handle(self, order_id: uuid.UUID, idempotency_key: str) -> OrderRefundHandle:
        """The handle of the refund asked for under `idempotency_key`."""
        return self.temporal.get_workflow_handle_for(
            OrderRefundWorkflow.run, workflow_id(order_id, idempotency_key)
        )

    async def request(self, refund: OrderRefundInput, idempotency_key: str) -> OrderRefundBody:
        """Start the refund (once per order and key: asked again, the first one answers, whatever
        its request was) and wait for its decision: accepted or refused."""
        try:
            handle = await self.temporal.start_workflow(
                OrderRefundWorkflow.run,
                refund,
                id=workflow_id(refund.order_id, idempotency_key),
                task_queue=TaskQueue.CHECKOUT.value,
                static_summary=f"Refund {refund.amount.amount} {refund.amount.currency} "
                f"of order {refund.order_id}",
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # A key refunds once: an ended refund answers for good.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            handle = self.handle(refund.order_id, idempotency_key)
            return await handle.query(OrderRefundWorkflow.status)
        try:
            # By name: the SDK's typing does not follow an async update's result.
            decided: OrderRefundBody = await handle.execute_update(
                "decision", result_type=OrderRefundBody
            )
            return decided
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # It ended between the start and the update: its final body answers.
            return await handle.query(OrderRefundWorkflow.status)
