"""A domain worker as a child process of `just up`, holding only its own database's URL."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.client import Client

from kit.services.process import ManagedProcess
from kit.settings import DOMAINS, Settings
from kit.temporal import has_pollers

# Database variables a worker of another domain must not inherit.
_DATABASE_VARIABLES = {"DATABASE_URL", *(f"{d.upper()}_DATABASE_URL" for d in DOMAINS)}


def worker_env(settings: Settings, *domains: str) -> dict[str, str]:
    """The child's environment: the parent's, less every database URL but its own domains'."""
    env = {k: v for k, v in os.environ.items() if k not in _DATABASE_VARIABLES}
    for domain in domains:
        env[f"{domain.upper()}_DATABASE_URL"] = settings.domain_database_url(domain)
    env["TEMPORAL_ADDRESS"] = settings.temporal_address
    env["TEMPORAL_NAMESPACE"] = settings.temporal_namespace
    env["PSP_URL"] = settings.psp_url
    env["CARRIER_URL"] = settings.carrier_url
    env["NATS_URL"] = settings.nats_url
    return env


def _polled(settings: Settings, queue: str) -> bool:
    async def check() -> bool:
        client = await Client.connect(
            settings.temporal_address, namespace=settings.temporal_namespace
        )
        return await has_pollers(client, queue)

    try:
        return asyncio.run(check())
    except Exception:
        return False


def worker_process(
    domain: str, settings: Settings, log_dir: Path, metrics_port: int | None = None
) -> ManagedProcess:
    """`python -m workers <domain>`, ready once Temporal sees it polling its task queue."""
    env = worker_env(settings, domain)
    if metrics_port is not None:
        env["WORKER_METRICS_PORT"] = str(metrics_port)
    return ManagedProcess(
        name=f"worker-{domain}",
        argv=[sys.executable, "-m", "workers", domain],
        log_path=log_dir / f"worker-{domain}.log",
        ready=lambda: _polled(settings, domain),
        env=env,
        stop_timeout=settings.worker_shutdown_grace_s + 10,
    )


def relay_process(domains: list[str], settings: Settings, log_dir: Path) -> ManagedProcess:
    """Outbox relays of domains without a worker (accounts, notifications) in one process."""
    return ManagedProcess(
        name="relays",
        argv=[sys.executable, "-m", "workers", "relay", *domains],
        log_path=log_dir / "relays.log",
        ready=lambda: True,
        env=worker_env(settings, *domains),
    )
