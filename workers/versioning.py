"""Worker Versioning of the workflow workers (docs/deployment.md, "Worker versioning").

A process that runs workflows polls as one version of a Temporal Worker Deployment: the
deployment `<WORKER_DEPLOYMENT_NAME>-<queue>` (one per worker kind), the build id of the release
(`WORKER_BUILD_ID`). The server hands every workflow task to the deployment's current version
only, so a checkout that ran on a new release never goes back to a pod of the previous one while
both poll during a rolling update.

A release's workers promote their own version: once they poll, a version that was never active
before becomes the current one. A version that was current once and was replaced never promotes
itself again (a restarted pod of the previous release must not take the queue back); going back
is an operator's decision (`temporal worker deployment set-current-version`).

While it runs, a worker process keeps the gauge `worker_version_current` at 1 while its version
is the current one, 0 otherwise: the readiness probe of a versioned worker requires it
(deploy/probes/worker_probe.py `--current-version`), so a rollout whose pods cannot promote
their version stops before the previous release's pods are gone.
"""

from __future__ import annotations

import asyncio
from importlib import metadata

from temporalio.api.enums.v1 import WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentResponse,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import MetricMeter, VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from kit.logging import get_logger
from kit.settings import ConfigurationError, Settings

log = get_logger(__name__)

# How often a starting worker asks again whether its version can be promoted (the server learns
# of a version from its first poll).
PROMOTE_RETRY_S = 1.0
# Answers meaning "not yet": the deployment or version is not registered, no poller is seen yet,
# another process changed the routing between our read and our write.
_NOT_YET = {RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED}
# Any other failure (Temporal unreachable, a permission missing) is logged and tried again, less
# and less often, up to this interval.
PROMOTE_MAX_RETRY_S = 30.0
_NEVER_ACTIVE = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_UNSPECIFIED,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE,
}
# How often a running worker looks whether its version is (still) the current one.
WATCH_S = 15.0


def default_build_id() -> str:
    """The build id without WORKER_BUILD_ID: the installed package's version, else `dev`."""
    try:
        return metadata.version("checkout-platform")
    except metadata.PackageNotFoundError:
        return "dev"


def deployment_version(settings: Settings, queue: str) -> WorkerDeploymentVersion:
    """The version the workflow workers of `queue` poll as."""
    build_id = settings.worker.build_id or default_build_id()
    return WorkerDeploymentVersion(f"{settings.worker.deployment_name}-{queue}", build_id)


def deployment_config(settings: Settings, queue: str) -> WorkerDeploymentConfig | None:
    """The versioning of a workflow worker of `queue` (None: WORKER_VERSIONING is off).

    Every workflow of the platform moves to the new release when it becomes current
    (`AUTO_UPGRADE`), under the patching policy; none is pinned to the release that started it.
    The behaviour is the worker's default rather than each `@workflow.defn`'s: a workflow that
    declares one cannot run on an unversioned worker (`just up`, the tests), whose task
    completions Temporal then refuses.
    """
    if not settings.worker.versioning:
        return None
    if settings.env == "production" and not settings.worker.build_id:
        # Two releases under one default build id would be one version: no switch between them.
        raise ConfigurationError("WORKER_BUILD_ID must be set for a versioned worker in production")
    return WorkerDeploymentConfig(
        version=deployment_version(settings, queue),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )


async def _describe(client: Client, name: str) -> DescribeWorkerDeploymentResponse | None:
    try:
        return await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
        )
    except RPCError as exc:
        if exc.status in _NOT_YET:
            return None
        raise


async def _try_promote(client: Client, version: WorkerDeploymentVersion) -> bool | None:
    """True: `version` is current; False: it must not promote itself; None: not yet."""
    described = await _describe(client, version.deployment_name)
    if described is None:
        return None
    info = described.worker_deployment_info
    if info.routing_config.current_deployment_version.build_id == version.build_id:
        return True
    summaries = [
        s for s in info.version_summaries if s.deployment_version.build_id == version.build_id
    ]
    if not summaries:
        return None  # our first poll has not registered the version yet
    # Never active: no activation recorded, and inactive (as opposed to draining or drained).
    if summaries[0].HasField("first_activation_time") or summaries[0].status not in _NEVER_ACTIVE:
        current = info.routing_config.current_deployment_version.build_id
        log.warning(
            "versioning.not_promoted",
            deployment=version.deployment_name,
            build_id=version.build_id,
            current_build_id=current,
            reason="this version was active before and was replaced",
        )
        return False
    try:
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace,
                deployment_name=version.deployment_name,
                build_id=version.build_id,
                conflict_token=described.conflict_token,
                identity=client.identity,
            )
        )
    except RPCError as exc:
        if exc.status in _NOT_YET:
            return None
        raise
    log.info(
        "versioning.promoted",
        deployment=version.deployment_name,
        build_id=version.build_id,
        previous_build_id=info.routing_config.current_deployment_version.build_id or None,
    )
    return True


async def promote(
    client: Client,
    version: WorkerDeploymentVersion,
    stop: asyncio.Event,
    retry_s: float = PROMOTE_RETRY_S,
) -> bool:
    """Make `version` the current version of its deployment once its workers poll, unless it
    was active before. True once it is current; False if it must not be promoted or `stop` came
    first."""
    delay = retry_s
    while not stop.is_set():
        try:
            outcome = await _try_promote(client, version)
        except RPCError as exc:
            log.warning(
                "versioning.promote_failed",
                deployment=version.deployment_name,
                build_id=version.build_id,
                status=exc.status.name,
                error=exc.message,
            )
            outcome, delay = None, min(delay * 2, PROMOTE_MAX_RETRY_S)
        if outcome is not None:
            return outcome
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
    return False


async def _is_current(client: Client, version: WorkerDeploymentVersion) -> bool | None:
    """Whether `version` is its deployment's current version (None: could not tell)."""
    try:
        described = await _describe(client, version.deployment_name)
    except RPCError:
        return None
    if described is None:
        return None
    current = described.worker_deployment_info.routing_config.current_deployment_version
    return current.build_id == version.build_id


async def serve_version(
    client: Client,
    version: WorkerDeploymentVersion,
    stop: asyncio.Event,
    meter: MetricMeter,
    watch_s: float | None = None,
) -> None:
    """Promote `version` (see `promote`), then keep `worker_version_current` up to date until
    `stop`; an answer Temporal could not give leaves the gauge as it was."""
    gauge = meter.create_gauge(
        "worker_version_current", "1 while this process's Worker Deployment version is current"
    ).with_additional_attributes(
        {"deployment": version.deployment_name, "build_id": version.build_id}
    )
    gauge.set(0)
    gauge.set(int(await promote(client, version, stop)))
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), watch_s or WATCH_S)
        except TimeoutError:
            current = await _is_current(client, version)
            if current is not None:
                gauge.set(int(current))
