"""The one way to start and address returns (the API, the webhooks, shopctl, the tests)."""

from __future__ import annotations

import uuid

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from workflows.checkout.contract import TaskQueue
from workflows.returns.models import (
    CARRIER_DELIVERED,
    Receipt,
    Resolution,
    ReturnBody,
    ReturnInput,
    workflow_id,
)
from workflows.returns.workflow import ReturnWorkflow

ReturnHandle = WorkflowHandle[ReturnWorkflow, ReturnBody]


class ReturnClient:
    """Returns as Temporal workflows, addressed by return id."""

    def __init__(self, client: Client) -> None:
        self.temporal = client

    def handle(self, return_id: uuid.UUID) -> ReturnHandle:
        """The handle of a return's workflow (whatever run is the latest)."""
        return self.temporal.get_workflow_handle_for(ReturnWorkflow.run, workflow_id(return_id))

    async def start(self, input: ReturnInput) -> None:
        """Start the return's workflow once: started again (a replayed request), the running
        or ended one stands."""
        try:
            await self.temporal.start_workflow(
                ReturnWorkflow.run,
                input,
                id=workflow_id(input.return_id),
                task_queue=TaskQueue.CHECKOUT.value,
                static_summary=f"Return {input.return_id} of order {input.order_id}",
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # A return runs once: an ended one answers for good.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return

    async def approve(self, return_id: uuid.UUID, update_id: str | None = None) -> ReturnBody:
        """An operator's approval; answers once it is recorded."""
        # By name: the SDK's typing does not follow an async update's result.
        body: ReturnBody = await self.handle(return_id).execute_update(
            "approve", id=update_id, result_type=ReturnBody
        )
        return body

    async def reject(
        self, return_id: uuid.UUID, note: str | None, update_id: str | None = None
    ) -> ReturnBody:
        """An operator's rejection, with a note or none; answers once it is recorded."""
        body: ReturnBody = await self.handle(return_id).execute_update(
            "reject", Resolution(note=note), id=update_id, result_type=ReturnBody
        )
        return body

    async def receive(
        self, return_id: uuid.UUID, receipt: Receipt, update_id: str | None = None
    ) -> ReturnBody:
        """An operator's count of the returned parcel; answers once it is recorded."""
        body: ReturnBody = await self.handle(return_id).execute_update(
            "receive", receipt, id=update_id, result_type=ReturnBody
        )
        return body

    async def retry(self, return_id: uuid.UUID, update_id: str | None = None) -> None:
        """Run a return's failed step again (it waits at needs_attention)."""
        await self.handle(return_id).execute_update(ReturnWorkflow.retry, id=update_id)

    async def resolve(self, return_id: uuid.UUID, note: str, update_id: str | None = None) -> None:
        """Record that a return's failed step was settled by hand."""
        await self.handle(return_id).execute_update(
            ReturnWorkflow.resolve, Resolution(note=note), id=update_id
        )

    async def status(self, return_id: uuid.UUID) -> ReturnBody | None:
        """Where the return's workflow stands, None when there is none."""
        try:
            return await self.handle(return_id).query(ReturnWorkflow.status)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def _signal(self, return_id: uuid.UUID, name: str) -> bool:
        try:
            await self.handle(return_id).signal(name)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False  # no such return, or it has ended: nothing waits for the news
            raise
        return True

    async def carrier_delivered(self, return_id: uuid.UUID) -> bool:
        """Tell a return its parcel reached the warehouse; False when no run waits for it."""
        return await self._signal(return_id, CARRIER_DELIVERED)
