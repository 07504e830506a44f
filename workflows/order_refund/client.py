"""The one way to start and read operators' order refunds (the API, the tests)."""

from __future__ import annotations

import uuid

from temporalio.client import WorkflowHandle

from workflows.clients import WorkflowClient, decided
from workflows.order_refund.models import OrderRefundBody, OrderRefundInput, workflow_id
from workflows.order_refund.workflow import OrderRefundWorkflow

OrderRefundHandle = WorkflowHandle[OrderRefundWorkflow, OrderRefundBody]


class OrderRefundClient(WorkflowClient):
    """Operators' order refunds as Temporal workflows, addressed by order and key."""

    def handle(self, order_id: uuid.UUID, idempotency_key: str) -> OrderRefundHandle:
        """The handle of the refund asked for under `idempotency_key`."""
        return self.temporal.get_workflow_handle_for(
            OrderRefundWorkflow.run, workflow_id(order_id, idempotency_key)
        )

    async def request(self, refund: OrderRefundInput, idempotency_key: str) -> OrderRefundBody:
        """Start the refund (once per order and key: asked again, the first one answers, whatever
        its request was) and wait for its decision: accepted or refused."""
        # A key refunds once: an ended refund answers for good.
        handle = await self.start_once(
            OrderRefundWorkflow.run,
            refund,
            id=workflow_id(refund.order_id, idempotency_key),
            summary=f"Refund {refund.amount.amount} {refund.amount.currency} "
            f"of order {refund.order_id}",
        )
        if handle is None:
            ended = self.handle(refund.order_id, idempotency_key)
            return await ended.query(OrderRefundWorkflow.status)
        return await decided(handle, OrderRefundBody, None)
