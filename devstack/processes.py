"""The platform's own processes as children of `just up` (and of the tests and the benchmark).

The API, the sandbox, the workers of each domain and the relays: how each is launched, what
environment it gets and when it counts as ready. Third-party services are in `services/`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from devstack.services.process import ManagedProcess, http_ok
from kit.settings import DOMAINS, Settings
from kit.temporal import WORKFLOW_QUEUES, connect

SANDBOX_HOST = "127.0.0.1"

# Database variables a worker of another domain must not inherit.
_DATABASE_VARIABLES = {"DATABASE_URL", *(f"{d.upper()}_DATABASE_URL" for d in DOMAINS)}


def api_process(settings: Settings, log_dir: Path) -> ManagedProcess:
    """`python -m api`, ready once /healthz answers 200 (every dependency and poller is up)."""
    health = f"http://{settings.api.host}:{settings.api.port}/healthz"

    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": settings.temporal.address,
        "TEMPORAL_UI_URL": settings.temporal.ui_url,
        "NATS_URL": settings.nats.url,
        "PSP_URL": settings.psp.url,
        "DATABASE_URL": settings.database.url,
    }
    return ManagedProcess(
        name="api",
        argv=[sys.executable, "-m", "api"],
        log_path=log_dir / "api.log",
        ready=lambda: http_ok(health, timeout=3),
        ports=[(settings.api.host, settings.api.port)],
        env=env,
    )


def sandbox_process(
    *,
    port: int,
    db_path: Path,
    webhook_url: str,
    carrier_webhook_url: str = "",
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> ManagedProcess:
    """`python -m sandbox` on SANDBOX_HOST:port, ready when /healthz answers 200."""
    health = f"http://{SANDBOX_HOST}:{port}/healthz"

    # The child reads its configuration through Settings; this only hands the environment on.
    env = {
        **os.environ,
        "PSP_URL": f"http://{SANDBOX_HOST}:{port}",
        "SANDBOX_DB_PATH": str(db_path),
        "SANDBOX_WEBHOOK_URL": webhook_url,
        # Empty: the carrier's tracking events are recorded but not sent.
        "SANDBOX_CARRIER_WEBHOOK_URL": carrier_webhook_url,
        **(extra_env or {}),
    }
    return ManagedProcess(
        name="sandbox",
        argv=[sys.executable, "-m", "sandbox"],
        log_path=log_dir / "sandbox.log",
        ready=lambda: http_ok(health),
        ports=[(SANDBOX_HOST, port)],
        env=env,
    )


def worker_env(settings: Settings, *domains: str) -> dict[str, str]:
    """The child's environment: the parent's, less every database URL but its own domains'."""
    env = {k: v for k, v in os.environ.items() if k not in _DATABASE_VARIABLES}
    for domain in domains:
        env[f"{domain.upper()}_DATABASE_URL"] = settings.domain_database_url(domain)
    env["TEMPORAL_ADDRESS"] = settings.temporal.address
    env["TEMPORAL_NAMESPACE"] = settings.temporal.namespace
    env["PSP_URL"] = settings.psp.url
    env["EASYPOST_API_BASE"] = settings.easypost.api_base
    env["NATS_URL"] = settings.nats.url
    return env


def _polled_by(settings: Settings, queue: str, pid: int | None) -> bool:
    """Whether the process `pid` polls `queue`, as Temporal sees it.

    By identity (the SDK's default, `<pid>@<host>`), not by "someone polls": after a restart,
    or with WORKER_REPLICAS > 1, another process's pollers must not make this one ready.
    """
    kind = (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if queue in WORKFLOW_QUEUES
        else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )

    async def check() -> bool:
        client = await connect(settings.temporal)
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=kind,
            )
        )
        return any(poller.identity.startswith(f"{pid}@") for poller in response.pollers)

    try:
        return asyncio.run(check())
    except Exception:
        return False


def worker_process(
    domain: str,
    settings: Settings,
    log_dir: Path,
    metrics_port: int | None = None,
    replica: int | None = None,
) -> ManagedProcess:
    """`python -m workers <domain>`, ready once Temporal sees this process polling its queue.

    `replica` (1, 2, ...) names one of several processes on the same queue: `worker-payments-2`.
    """
    env = worker_env(settings, domain)
    if metrics_port is not None:
        env["WORKER_METRICS_PORT"] = str(metrics_port)
    name = f"worker-{domain}" if replica is None else f"worker-{domain}-{replica}"
    process = ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "workers", domain],
        log_path=log_dir / f"{name}.log",
        # Called once started, by then `process` is bound: readiness of this very process.
        ready=lambda: _polled_by(settings, domain, process.pid),
        env=env,
        stop_timeout=settings.worker.shutdown_grace_s + 10,
    )
    return process


def relay_process(domains: list[str], settings: Settings, log_dir: Path) -> ManagedProcess:
    """Outbox relays of domains without a worker (accounts, notifications) in one process."""
    return ManagedProcess(
        name="relays",
        argv=[sys.executable, "-m", "workers", "relay", *domains],
        log_path=log_dir / "relays.log",
        ready=lambda: True,
        env=worker_env(settings, *domains),
    )
