"""The platform under test: `python -m devstack` (the supervisor of `just up`) in its own DATA_DIR,
on free ports, with every service embedded, and what it runs (DATA_DIR/stack.json)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from devstack.services.process import ManagedProcess, ServiceError, free_port, http_ok
from devstack.stack import NATS_MONITOR_OFFSET, STATE_FILE
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.settings import DOMAINS, Settings, get_settings
from kit.temporal import connect
from tools.chaos.workload import PAYMENT_TIMEOUT_S
from workers.bootstrap import WORKER_DOMAINS

log = get_logger(__name__)

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# The Temporal web UI listens this far above the frontend (devstack keeps 7233 -> 8233).
TEMPORAL_UI_OFFSET = 1000

# What the platform under test runs with, on top of its defaults. Everything else is as `just up`.
CHAOS_ENV = {
    "ENV": "dev",  # POST /v1/dev/tokens mints the load's tokens
    "LOG_FORMAT": "json",
    # A checkout waiting for a payment action expires after 20 s instead of 15 minutes, so that
    # pm_sandbox_no_webhook checkouts end within a run; the intent is re-read every 5 s meanwhile.
    "CHECKOUT_PAYMENT_TIMEOUT": f"PT{PAYMENT_TIMEOUT_S}S",
    "CHECKOUT_PAYMENT_RECHECK_S": "5",
    # Parcels move every 4 s, so shipment_delivered notifications arrive within a run, and a
    # buyer cancelling an order just after the checkout finds the parcel moved or not yet.
    "SANDBOX_CARRIER_STEP_S": "4",
    # The carrier-slow fault holds each answer 6 s, past the platform's 5 s carrier timeout.
    "SANDBOX_CARRIER_HANG_S": "6",
    "EASYPOST_TIMEOUT_S": "5",
    # pm_sandbox_flaky hangs 6 s, past the platform's 5 s provider timeout (the defaults, 15 s and
    # 10 s, would only make every flaky checkout a minute long).
    "SANDBOX_FLAKY_HANG_S": "6",
    "STRIPE_TIMEOUT_S": "5",
    "PSP_TIMEOUT_S": "5",
    # Tokens outlive the longest soak.
    "AUTH_TOKEN_TTL_S": "86400",
    # Tax from the sandbox's tax service (orders shipped to a taxed state carry tax on the items
    # and the shipping); while the provider is down or killed the checkout goes on with zero tax
    # rather than ending `tax_unavailable`, so the load's expectations hold through those faults.
    "TAX_PROVIDER": "stripe",
    "TAX_ON_FAILURE": "open",
    # Stopping the stack at the end need not wait 30 s for activities in flight.
    "WORKER_SHUTDOWN_GRACE_S": "5",
}
# Inherited variables that would point the platform under test somewhere else.
_FOREIGN_PREFIXES = (
    "DATABASE_URL",
    "TEMPORAL_",
    "NATS_",
    "PSP_",
    "STRIPE_",
    "EASYPOST_",
    "SHIPPING_",
    "SANDBOX_",
    "API_",
    "WORKER_",
    "CHECKOUT_",
    "RELAY_",
    "DATA_DIR",
    "EMBEDDED_SERVICES",
)


def _foreign(name: str) -> bool:
    return name.startswith(_FOREIGN_PREFIXES) or name.endswith("_DATABASE_URL")


@dataclass(frozen=True)
class Child:
    """One child of the stack as DATA_DIR/stack.json describes it."""

    name: str
    pid: int | None
    restarts: int
    running: bool


class ChaosStack:
    """A whole platform started and stopped by this process (by pid), in `data_dir`."""

    def __init__(self, data_dir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = f"postgresql://postgres@{HOST}:{free_port()}"
        self.temporal_address = f"{HOST}:{free_port(TEMPORAL_UI_OFFSET)}"
        nats_port = free_port(NATS_MONITOR_OFFSET)
        self.nats_url = f"nats://{HOST}:{nats_port}"
        self.nats_monitor_url = f"http://{HOST}:{nats_port + NATS_MONITOR_OFFSET}"
        self.psp_url = f"http://{HOST}:{free_port()}"
        self.api_port = free_port()
        self.api_url = f"http://{HOST}:{self.api_port}"
        self.env = {k: v for k, v in os.environ.items() if not _foreign(k)}
        self.env.update(CHAOS_ENV)
        self.env.update(
            DATA_DIR=str(data_dir),
            DATABASE_URL=self.database_url,
            TEMPORAL_ADDRESS=self.temporal_address,
            NATS_URL=self.nats_url,
            PSP_URL=self.psp_url,
            API_PORT=str(self.api_port),
            WORKER_METRICS_BASE_PORT=str(free_port(length=len(WORKER_DOMAINS))),
            EMBEDDED_SERVICES="postgres,temporal,nats,sandbox",
        )
        self.env.update(extra_env or {})
        self.process = ManagedProcess(
            name="devstack",
            argv=[sys.executable, "-m", "devstack"],
            log_path=data_dir / "logs" / "devstack.log",
            ready=self._ready,
            env=self.env,
            cwd=REPO,
            ready_timeout=300,
            # Workers get WORKER_SHUTDOWN_GRACE_S (+10 s) each, PostgreSQL and Temporal their own.
            stop_timeout=180,
        )

    @property
    def settings(self) -> Settings:
        """Settings for this process's own clients of the stack (databases, Temporal, sandbox)."""
        return get_settings().updated(
            database={"url": self.database_url, "domain_urls": {}},
            temporal={"address": self.temporal_address, "namespace": "default"},
            nats={"url": self.nats_url},
            psp={"url": self.psp_url},
            api={"port": self.api_port},
            data_dir=self.data_dir,
        )

    def _ready(self) -> bool:
        return http_ok(f"{self.api_url}/healthz", timeout=3) and "api" in self.children()

    def start(self) -> None:
        """Start the stack and wait until /healthz is 200 (ServiceError if it never is)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # PostgreSQL runs as an unprivileged user when this runs as root: let it traverse.
        self.data_dir.chmod(0o755)
        log.info("chaos.stack.starting", data_dir=str(self.data_dir), api=self.api_url)
        self.process.start()
        log.info("chaos.stack.ready", pid=self.process.pid)

    def alive(self) -> bool:
        """Whether the devstack supervisor itself still runs (a crash loop ends it)."""
        return self.process.running()

    def children(self) -> dict[str, Child]:
        """Each child by name, as the supervisor last wrote DATA_DIR/stack.json ({} before)."""
        try:
            state = json.loads((self.data_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return {
            raw["name"]: Child(raw["name"], raw["pid"], int(raw["restarts"]), bool(raw["running"]))
            for raw in state.get("children", [])
        }

    def pid(self, name: str) -> int:
        """The pid of the running child `name` (ServiceError when it does not run)."""
        child = self.children().get(name)
        if child is None or child.pid is None or not child.running:
            raise ServiceError(f"{name} is not running")
        return child.pid

    def stop(self) -> None:
        """Stop the stack by its pid (it stops its children), resuming any child a fault paused."""
        for child in self.children().values():
            if child.pid is not None and child.running:
                try:
                    os.kill(child.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        self.process.stop()

    def databases(self) -> dict[str, DomainDatabase]:
        """A small pool per domain database (the caller disposes of them)."""
        settings = self.settings.updated(database={"pool_size": 2, "max_overflow": 2})
        return {
            domain: DomainDatabase.from_settings(domain, settings, "audit") for domain in DOMAINS
        }

    async def temporal(self) -> Client:
        """A client of the stack's Temporal speaking the platform's payloads."""
        return await connect(self.settings.temporal)
