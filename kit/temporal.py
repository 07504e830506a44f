"""Temporal helpers shared by the API, the stack and the tests (no workflow code here)."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

# The checkout queue runs workflows; every domain queue runs activities.
WORKFLOW_QUEUES = frozenset({"checkout"})


async def has_pollers(client: Client, queue: str) -> bool:
    """Whether a worker is polling `queue` right now (workflow pollers for `checkout`)."""
    kind = (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if queue in WORKFLOW_QUEUES
        else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=kind,
        )
    )
    return len(response.pollers) > 0


async def queues_without_pollers(client: Client, queues: Iterable[str]) -> list[str]:
    """The queues among `queues` that no worker polls."""
    return [queue for queue in queues if not await has_pollers(client, queue)]
