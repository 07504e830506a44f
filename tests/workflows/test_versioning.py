"""Deploying new workflow code while checkouts wait (docs/deployment.md, "Deploying workflow
changes" and "Worker versioning").

1. The sequential takeover: the previous release's worker drains and stops, then the next one
   polls; checkouts started by the previous one finish on the new code without its change.
2. The rolling deploy as Kubernetes runs it (`maxSurge: 1`): under load, the next release's
   workers poll beside the previous release's, promote their version, and both keep polling
   until every checkout has ended. With Worker Versioning no checkout is ever handed back to a
   previous-release worker, so none hits a non-determinism error.
3. The same rolling deploy without versioning: checkouts started by the next release reach
   previous-release workers and fail to replay. This is what 2 prevents, and it shows that the
   history scan used by 2 does find non-determinism errors.
4. Two real worker processes (`run_workers`) of successive releases: each promotes its version
   once it polls, and the readiness probe follows which one is current.

Each scenario runs its releases on a queue (or namespace) of its own: the session's platform
keeps serving `checkout` and every activity queue, unversioned. The rolling releases keep few
workflows in their cache and lose their pods on the way, so workflow tasks often leave their
sticky worker and go through the task queue: the routing is tested, not the sticky cache.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.checkout.activities import CheckoutActivities
from activities.errors import PermanentFailures
from devstack.services.process import free_port
from domains.checkout.statuses import FINAL
from kit.logging import get_logger
from kit.settings import ConfigurationError, Settings
from kit.temporal import connect, has_pollers
from tests.deploy.test_probes import probe as worker_probe
from tests.platform import Platform
from tests.workflows.next_version import PATCH, RELEASE, NextCheckoutWorkflow
from tools.seed import new_input
from workers import versioning as worker_versioning
from workers.bootstrap import run_workers
from workers.versioning import default_build_id, deployment_config, promote
from workflows.checkout.contract import workflow_id
from workflows.checkout.models import CheckoutStatusBody
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(300)
log = get_logger(__name__)
QUEUE = "checkout-release-test"
THREE_DS = "pm_card_threeDSecure2Required"
Handle = WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]
NON_DETERMINISTIC = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR

# The rolling deploy's load: checkouts started on the previous release that wait for 3-D Secure
# across the deploy, card checkouts in flight while the next release's workers start, checkouts
# started while both poll, and checkouts started once the next release is current.
WAITING, IN_FLIGHT, DURING, AFTER = 12, 8, 8, 8
# Pods per release during the surge, and the checkouts each keeps in its cache: a small cache
# makes workflow tasks leave their sticky worker often (as restarts and evictions do).
PODS, CACHE = 2, 2
# How long the next release's pods are away before their replacement polls.
LOST_S = 3.0


@asynccontextmanager
async def _release(
    platform: Platform,
    workflow: type,
    queue: str = QUEUE,
    pods: int = 1,
    versioning: WorkerDeploymentConfig | None = None,
    *,
    cache: int = 100,
) -> AsyncIterator[None]:
    """One release's workflow workers (with the checkout's local activities, as in production),
    each "pod" with its own connection to Temporal, as separate processes would have."""
    local = CheckoutActivities(platform.databases["checkout"])
    async with AsyncExitStack() as stack:
        for _ in range(pods):
            client = await connect(platform.settings.temporal)
            worker = Worker(
                client,
                task_queue=queue,
                workflows=[workflow],
                activities=[local.open_session, local.record_progress],
                interceptors=[PermanentFailures()],
                deployment_config=versioning,
                max_cached_workflows=cache,
            )
            await stack.enter_async_context(worker)
        yield


async def _start(platform: Platform, queue: str = QUEUE, token: str = THREE_DS) -> Handle:
    variant = await platform.seed.variant(price="12.00", stock=10)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token=token)
    return await platform.client.start_workflow(
        CheckoutWorkflow.run, checkout, id=workflow_id(checkout.checkout_id), task_queue=queue
    )


async def _next_action(platform: Platform, handle: Handle) -> str:
    """Where the buyer approves a checkout waiting for 3-D Secure."""
    next_action = await platform.wait_recorded(handle, "requires_action", within_s=90)
    assert next_action is not None
    return str(next_action["url"])


async def _approve(platform: Platform, handle: Handle, url: str | None = None) -> None:
    async with httpx.AsyncClient() as http:
        approved = await http.get(url or await _next_action(platform, handle))
    assert approved.status_code == 200


async def _release_of(handle: Handle) -> object:
    memo = await (await handle.describe()).memo()
    return memo.get("release")


async def test_a_new_release_takes_over_while_older_checkouts_wait_for_3ds(
    platform: Platform,
) -> None:
    async with _release(platform, CheckoutWorkflow):
        older = [await _start(platform) for _ in range(2)]
        for handle in older:
            await platform.wait_recorded(handle, "requires_action", within_s=60)
    # The previous release has stopped; its checkouts wait at the provider, held by nobody.

    async with _release(platform, NextCheckoutWorkflow):
        newer = await _start(platform)
        for handle in [*older, newer]:
            await _approve(platform, handle)
        bodies = [await handle.result() for handle in [*older, newer]]

    assert [body.status for body in bodies] == ["completed"] * 3
    # Only the checkout started by the new release took its patched path.
    assert [await _release_of(handle) for handle in older] == [None, None]
    assert await _release_of(newer) == RELEASE
    markers = [
        event.marker_recorded_event_attributes.details["patch_id"]
        for event in (await newer.fetch_history()).events
        if event.HasField("marker_recorded_event_attributes")
    ]
    assert markers, f"the new checkout recorded no patch marker for {PATCH}"
    ids = [body.checkout_id for body in bodies]
    assert await platform.invariants(*ids) == []


# --- the rolling deploy ----------------------------------------------------------------------


@dataclass
class Load:
    """The checkouts of a rollout, each with its card."""

    started: list[tuple[Handle, str]] = field(default_factory=list)

    async def start(self, platform: Platform, queue: str, tokens: Sequence[str]) -> list[Handle]:
        """Start one checkout per token, at once."""
        handles = list(await asyncio.gather(*(_start(platform, queue, t) for t in tokens)))
        self.started += zip(handles, tokens, strict=True)
        return handles

    @property
    def handles(self) -> list[Handle]:
        return [handle for handle, _ in self.started]

    def approve(self, platform: Platform) -> list[asyncio.Task[None]]:
        """Approve every 3-D Secure checkout as soon as it waits for it."""
        return [
            asyncio.create_task(_approve(platform, handle))
            for handle, token in self.started
            if token == THREE_DS
        ]


@dataclass
class Scan:
    """What the histories of a rollout's checkouts show."""

    non_deterministic: list[str] = field(default_factory=list)  # workflow ids, one per error
    task_failures: int = 0  # workflow task failures of any cause
    # Per workflow id: the build ids of its completed workflow tasks, in order.
    build_ids: dict[str, list[str]] = field(default_factory=dict)


async def _scan(handles: Sequence[Handle]) -> Scan:
    """Scan every history for failed workflow tasks and the versions that completed tasks."""
    scan = Scan()
    for handle in handles:
        built = scan.build_ids.setdefault(handle.id, [])
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_task_failed_event_attributes"):
                scan.task_failures += 1
                if event.workflow_task_failed_event_attributes.cause == NON_DETERMINISTIC:
                    scan.non_deterministic.append(handle.id)
            if event.HasField("workflow_task_completed_event_attributes"):
                version = event.workflow_task_completed_event_attributes.deployment_version
                built.append(version.build_id)
    return scan


def _versioning(
    platform: Platform, queue: str, deployment: str, build_id: str
) -> WorkerDeploymentConfig:
    """A release's versioning, from the settings as a worker process reads them."""
    settings = platform.settings.updated(
        worker={"versioning": True, "deployment_name": deployment, "build_id": build_id}
    )
    config = deployment_config(settings, queue)
    assert config is not None
    assert config.version == WorkerDeploymentVersion(f"{deployment}-{queue}", build_id)
    return config


async def _promote(platform: Platform, version: WorkerDeploymentVersion) -> None:
    """What a release's worker process does once it polls (workers/bootstrap.py)."""
    promoted = await asyncio.wait_for(promote(platform.client, version, asyncio.Event()), 60)
    assert promoted, f"{version} was not promoted"


async def test_a_rolling_deploy_under_load_hands_no_checkout_back_to_the_previous_release(
    platform: Platform,
) -> None:
    queue, deployment = "checkout-rollout-test", f"rollout-{uuid.uuid4().hex[:8]}"
    previous = _versioning(platform, queue, deployment, "2026.1.0")
    following = _versioning(platform, queue, deployment, "2026.2.0")
    load, mixed = Load(), [THREE_DS, "tok_visa"]
    async with _release(platform, CheckoutWorkflow, queue, PODS, previous, cache=CACHE):
        await _promote(platform, previous.version)
        waiting = await load.start(platform, queue, [THREE_DS] * WAITING)
        for handle in waiting:  # these wait across the deploy
            await platform.wait_recorded(handle, "requires_action", within_s=90)
        await load.start(platform, queue, ["tok_visa"] * IN_FLIGHT)
        # The surge: the next release's pods start and poll beside the previous release's.
        async with _release(platform, NextCheckoutWorkflow, queue, PODS, following, cache=CACHE):
            starting = asyncio.create_task(load.start(platform, queue, mixed * (DURING // 2)))
            await _promote(platform, following.version)
            await starting
            # What the API's readiness asks: the current version's pods poll the queue.
            assert await has_pollers(platform.client, queue)
            after = await load.start(platform, queue, mixed * (AFTER // 2))
        # The next release's pods are lost (a crash, a drained node) while the previous
        # release's keep polling: the checkouts they ran wait for a next-release pod.
        await asyncio.sleep(LOST_S)
        async with _release(platform, NextCheckoutWorkflow, queue, 1, following, cache=CACHE):
            approvals = load.approve(platform)
            ends = asyncio.gather(*(handle.result() for handle in load.handles))
            bodies = await asyncio.wait_for(ends, 180)
            await asyncio.gather(*approvals)
        # Both releases polled until every checkout had ended.

    assert len(bodies) == WAITING + IN_FLIGHT + DURING + AFTER
    assert all(body.status in FINAL for body in bodies), [b.status for b in bodies]
    assert [body.status for body in bodies] == ["completed"] * len(bodies)
    scan = await _scan(load.handles)
    old, new = previous.version.build_id, following.version.build_id
    log.info(
        "rollout.measured",
        checkouts=len(bodies),
        ended=sum(body.status in FINAL for body in bodies),
        non_deterministic=len(scan.non_deterministic),
        task_failures=scan.task_failures,
        moved=sum({old, new} <= set(built) for built in scan.build_ids.values()),
    )
    assert scan.non_deterministic == []
    assert scan.task_failures == 0
    for handle in load.handles:
        built = scan.build_ids[handle.id]
        # Never back: once a checkout ran on the next release, it stays there.
        assert built == sorted(built, key=[old, new].index), (handle.id, built)
    for handle in waiting:  # started before, ended after the deploy, on the old path
        assert (scan.build_ids[handle.id][0], scan.build_ids[handle.id][-1]) == (old, new)
        assert await _release_of(handle) is None
    for handle in after:  # started once the next release was current: only there
        assert set(scan.build_ids[handle.id]) == {new}, handle.id
        assert await _release_of(handle) == RELEASE
    assert await platform.invariants(*[body.checkout_id for body in bodies]) == []
    # A pod of the previous release that starts again never takes the queue back.
    assert not await promote(platform.client, previous.version, asyncio.Event())


async def test_without_versioning_the_same_rollout_hands_new_checkouts_to_old_workers(
    platform: Platform,
) -> None:
    queue, load = "checkout-unversioned-rollout-test", Load()
    urls: dict[str, str] = {}
    on_next: list[Handle] = []
    async with _release(platform, CheckoutWorkflow, queue, PODS, cache=CACHE):
        async with _release(platform, NextCheckoutWorkflow, queue, PODS, cache=CACHE):
            # Until some checkout's first task ran on a next-release pod (each goes to any pod).
            for _ in range(10):
                for handle in await load.start(platform, queue, [THREE_DS] * 4):
                    urls[handle.id] = await _next_action(platform, handle)
                    if await _release_of(handle) == RELEASE:
                        on_next.append(handle)
                if on_next:
                    break
            assert on_next, "no checkout started on a next-release pod"
        # The next release's pods are lost; only the previous release's poll.
        for handle in load.handles:
            await _approve(platform, handle, urls[handle.id])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len((scan := await _scan(on_next)).non_deterministic) < len(on_next):
            assert loop.time() < deadline, scan
            await asyncio.sleep(1)
    log.info(
        "rollout.unversioned_measured",
        checkouts=len(load.handles),
        started_on_next=len(on_next),
        non_deterministic=len(set(scan.non_deterministic)),
    )
    for handle in load.handles:  # those started on the next release never end on the previous
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")
    assert sorted(set(scan.non_deterministic)) == sorted(h.id for h in on_next)


# --- a worker process's own promotion and readiness -----------------------------------------


async def _namespace(platform: Platform) -> str:
    """A namespace of this test's own: a versioned `checkout` queue would stop the unversioned
    workers other tests run on it."""
    name = f"versioning-{uuid.uuid4().hex[:8]}"
    await platform.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    return name


async def _until(condition: Callable[[], Awaitable[bool]], within_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await condition():
        assert loop.time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.5)


def _ready(port: int) -> Callable[[], Awaitable[bool]]:
    """The versioned checkout worker's readiness probe, as its manifest runs it."""

    async def probe() -> bool:
        argv = ["ready", f"--port={port}", "--task-queue=checkout", "--current-version"]
        status: int = await asyncio.to_thread(worker_probe.main, argv)
        return status == 0

    return probe


async def test_a_release_s_worker_process_promotes_itself_and_is_ready_only_while_current(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_versioning, "WATCH_S", 0.5)
    namespace, deployment = await _namespace(platform), f"process-{uuid.uuid4().hex[:8]}"
    ports = {"2026.1.0": free_port(), "2026.2.0": free_port()}
    stops = {build_id: asyncio.Event() for build_id in ports}

    def release(build_id: str) -> asyncio.Task[None]:
        settings = platform.settings.updated(
            temporal={"namespace": namespace},
            relay={"enabled": False},
            worker={
                "versioning": True,
                "deployment_name": deployment,
                "build_id": build_id,
                "metrics_port": ports[build_id],
            },
        )
        return asyncio.create_task(run_workers(["checkout"], settings, stops[build_id]))

    async def namespace_ready() -> bool:
        try:
            await platform.client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
        except RPCError:
            return False
        return True

    await _until(namespace_ready)
    processes = [release("2026.1.0")]
    try:
        await _until(_ready(ports["2026.1.0"]))
        processes.append(release("2026.2.0"))
        await _until(_ready(ports["2026.2.0"]))
        # The previous release's process still polls, but is no longer ready: its version was
        # replaced (a Deployment rollout would now retire it).
        await _until(_not(_ready(ports["2026.1.0"])))
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.gather(*processes)


def _not(condition: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    async def negated() -> bool:
        return not await condition()

    return negated


# --- settings ---------------------------------------------------------------------------------


def test_versioning_is_off_unless_asked_and_needs_a_build_id_in_production() -> None:
    settings = Settings()
    assert deployment_config(settings, "checkout") is None  # `just up` and the tests
    versioned = settings.updated(worker={"versioning": True})
    config = deployment_config(versioned, "checkout")
    assert config is not None
    # Without WORKER_BUILD_ID: the installed package's version.
    assert config.version == WorkerDeploymentVersion(
        "checkout-platform-checkout", default_build_id()
    )
    assert config.default_versioning_behavior == VersioningBehavior.AUTO_UPGRADE
    with pytest.raises(ConfigurationError, match="WORKER_BUILD_ID"):
        deployment_config(versioned.updated(env="production"), "checkout")
    released = versioned.updated(env="production", worker={"build_id": "2026.2.0"})
    assert deployment_config(released, "checkout") is not None
