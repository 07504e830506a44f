"""Temporal helpers shared by the API, the stack and the tests (no workflow code here)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowUpdateInput,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from kit.codec import data_converter
from kit.logging import get_logger
from kit.settings import ConfigurationError, TemporalSettings

log = get_logger(__name__)

# The checkout queue runs workflows; every domain queue runs activities.
WORKFLOW_QUEUES = frozenset({"checkout"})


async def has_pollers(client: Client, queue: str) -> bool:
    """Whether a worker is polling `queue` right now (workflow pollers for `checkout`; those of
    its current version when the queue's workers are versioned)."""
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
            # Without it, Temporal leaves out the pollers of a versioned queue's current version
            # (WORKER_VERSIONING): the workers that actually take its tasks.
            report_pollers=True,
        )
    )
    return len(response.pollers) > 0


async def queues_without_pollers(client: Client, queues: Iterable[str]) -> list[str]:
    """The queues among `queues` that no worker polls."""
    return [queue for queue in queues if not await has_pollers(client, queue)]


def tls_config(temporal: TemporalSettings) -> TLSConfig | bool:
    """mTLS from `TEMPORAL_TLS_CERT`/`_KEY` (and `_CA` for a private CA); plain TLS with an API
    key (Temporal Cloud); no TLS otherwise (the local dev server)."""
    if (temporal.tls_cert is None) != (temporal.tls_key is None):
        raise ConfigurationError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together")
    if temporal.tls_cert is not None and temporal.tls_key is not None:
        return TLSConfig(
            client_cert=temporal.tls_cert.read_bytes(),
            client_private_key=temporal.tls_key.read_bytes(),
            server_root_ca_cert=temporal.tls_ca.read_bytes() if temporal.tls_ca else None,
        )
    if temporal.tls_ca is not None:
        return TLSConfig(server_root_ca_cert=temporal.tls_ca.read_bytes())
    return temporal.api_key is not None


# How long an update aborted on its way is waited for before it is sent again, attempt by attempt
# (about 7.5 s in all, beside the SDK's own retries of an unavailable server).
UPDATE_RESEND_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
# The RPC answers to an update that say it was not decided and may be sent again: the server
# aborted it because the workflow task carrying it failed (FAILED_PRECONDITION, "workflow not
# ready"), or was busy or unavailable past the SDK's own retries.
UPDATE_RESEND_STATUSES = frozenset(
    {
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
    }
)


def _resendable(error: BaseException) -> bool:
    """Whether an update that failed with `error` may be sent again under its id."""
    if isinstance(error, WorkflowUpdateRPCTimeoutOrCancelledError):
        # The RPC's deadline passed; unless the caller itself is being cancelled (the SDK
        # reports a cancellation the same way, and a cancelled caller wants no answer).
        task = asyncio.current_task()
        return task is None or not task.cancelling()
    return isinstance(error, RPCError) and error.status in UPDATE_RESEND_STATUSES


class _ResendingUpdates(OutboundInterceptor):
    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        if input.update_id is None:  # named once, so that every attempt is the same update
            input = replace(input, update_id=str(uuid.uuid4()))
        for delay in UPDATE_RESEND_DELAYS_S:
            try:
                return await super().start_workflow_update(input)
            except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
                if not _resendable(exc):
                    raise
                log.warning(
                    "temporal.update_resent",
                    workflow_id=input.id,
                    update=input.update,
                    reason=str(getattr(exc, "status", None) or type(exc).__name__),
                    delay_s=delay,
                )
                await asyncio.sleep(delay)
        return await super().start_workflow_update(input)


class UpdateResends(Interceptor):
    """Sends an update again, under the same update id, when Temporal answers that it was not
    decided: the workflow task carrying it failed (a worker crashed or stalled mid-task), the
    RPC's deadline passed, or the server was busy. Temporal decides an update once per id, so a
    resent update that had been decided after all answers the first decision; a caller sees an
    outage only once it outlasts the resends."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        """Wrap the client's outbound calls."""
        return _ResendingUpdates(next)


async def connect(
    temporal: TemporalSettings,
    *,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
    lazy: bool = False,
) -> Client:
    """The platform's Temporal client: its namespace, pydantic payloads encrypted with
    `TEMPORAL_PAYLOAD_KEYS` (kit/codec.py), TLS or an API key, updates resent while Temporal
    has not decided them (`UpdateResends`). Workers built on it inherit its payload conversion."""
    return await Client.connect(
        temporal.address,
        namespace=temporal.namespace,
        data_converter=data_converter(temporal),
        tls=tls_config(temporal),
        api_key=temporal.api_key.get_secret_value() if temporal.api_key else None,
        interceptors=[UpdateResends(), *interceptors],
        runtime=runtime or Runtime.default(),
        lazy=lazy,
    )
