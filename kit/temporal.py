"""Temporal helpers shared by the API, the stack and the tests (no workflow code here)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, Interceptor
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from kit.codec import data_converter
from kit.settings import ConfigurationError, TemporalSettings

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


async def connect(
    temporal: TemporalSettings,
    *,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
    lazy: bool = False,
) -> Client:
    """The platform's Temporal client: its namespace, pydantic payloads encrypted with
    `TEMPORAL_PAYLOAD_KEYS` (kit/codec.py), TLS or an API key. Workers built on it inherit its
    payload conversion."""
    return await Client.connect(
        temporal.address,
        namespace=temporal.namespace,
        data_converter=data_converter(temporal),
        tls=tls_config(temporal),
        api_key=temporal.api_key.get_secret_value() if temporal.api_key else None,
        interceptors=interceptors,
        runtime=runtime or Runtime.default(),
        lazy=lazy,
    )
