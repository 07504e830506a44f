"""The one way to start and address order cancellations (the API, shopctl, the tests)."""

from __future__ import annotations

import uuid

from temporalio.client import WorkflowHandle

from workflows.attention import Settled
from workflows.clients import WorkflowClient, decided, unless_missing
from workflows.order_cancel.models import OrderCancelBody, OrderCancelInput, workflow_id
from workflows.order_cancel.workflow import OrderCancelWorkflow

OrderCancelHandle = WorkflowHandle[OrderCancelWorkflow, OrderCancelBody]


class OrderCancelClient(WorkflowClient):
    """Order cancellations as Temporal workflows, addressed by order id."""

    def handle(self, order_id: uuid.UUID) -> OrderCancelHandle:
        """The handle of an order's cancellation (whatever run is the latest)."""
        return self.temporal.get_workflow_handle_for(OrderCancelWorkflow.run, workflow_id(order_id))

    async def request(
        self, cancel: OrderCancelInput, update_id: str | None = None
    ) -> OrderCancelBody:
        """Start the order's cancellation (once: asked again, the same one answers) and wait for
        its decision: accepted, refused (`already_shipped`), or waiting for an operator."""
        # An order is cancelled once: an ended cancellation answers for good.
        handle = await self.start_once(
            OrderCancelWorkflow.run,
            cancel,
            id=workflow_id(cancel.order_id),
            summary=f"Cancel order {cancel.order_id} ({cancel.requested_by})",
        )
        if handle is None:
            return await self.handle(cancel.order_id).query(OrderCancelWorkflow.status)
        return await decided(handle, OrderCancelBody, update_id)

    async def status(self, order_id: uuid.UUID) -> OrderCancelBody | None:
        """The order's cancellation, None when it was never asked for."""
        return await unless_missing(self.handle(order_id).query(OrderCancelWorkflow.status))

    async def retry(self, order_id: uuid.UUID, update_id: str | None = None) -> None:
        """Run a cancellation's failed steps again (it waits at needs_attention)."""
        await self.handle(order_id).execute_update(OrderCancelWorkflow.retry, id=update_id)

    async def resolve(self, order_id: uuid.UUID, note: str, update_id: str | None = None) -> None:
        """Record that a cancellation's failed steps were settled by hand."""
        await self.handle(order_id).execute_update(
            OrderCancelWorkflow.resolve, Settled(note=note), id=update_id
        )
