"""What the clients of the after-sale workflows (an order's cancellation, refund, return) share:
the Temporal client they address them through, the start of a run once per id, a query of a run
that may not exist, and the wait for a run's decision."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from workflows.checkout.contract import TaskQueue

T = TypeVar("T")
# The name of the update by which a run answers once it has decided, and of its status query.
DECISION = "decision"
STATUS = "status"


class WorkflowClient:
    """Workflows of one kind, addressed through a Temporal client."""

    def __init__(self, client: Client) -> None:
        self.temporal = client

    async def start_once(
        self, run: Any, arg: object, *, id: str, summary: str
    ) -> WorkflowHandle[Any, Any] | None:
        """Start the workflow `run` with `arg` on the checkout queue, once per `id`: asked again
        while it runs, the running one's handle answers; None once it has ended (an ended run
        answers for good: its id is never started again)."""
        try:
            return await self.temporal.start_workflow(
                run,
                arg,
                id=id,
                task_queue=TaskQueue.CHECKOUT.value,
                static_summary=summary,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return None


async def unless_missing(call: Awaitable[T]) -> T | None:
    """`call`'s answer, None when the workflow it addresses does not exist."""
    try:
        return await call
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def decided(handle: WorkflowHandle[Any, Any], body: type[T], update_id: str | None) -> T:
    """The run's body once it has decided (its `decision` update). A run that ended between its
    start and the update answers with its final body."""
    try:
        # By name: the SDK's typing does not follow an async update's result.
        answer: T = await handle.execute_update(DECISION, id=update_id, result_type=body)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        answer = await handle.query(STATUS, result_type=body)
    return answer
