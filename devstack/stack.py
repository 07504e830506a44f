"""`just up` (`python -m devstack`): the whole platform on one machine, from PyPI wheels.

Each service is started only when its URL is not set in the environment. A child that exits is
restarted (devstack/supervisor.py); a crash loop stops the stack (exit 1). What this process
starts, it stops (reverse order, by pid) on Ctrl-C or SIGTERM. DATA_DIR/stack.json says what runs:
each child's name, pid, restart count and whether it is up (`just chaos` finds its targets there).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

from db.migrate import migrate
from devstack.processes import api_process, relay_process, sandbox_process, worker_process
from devstack.services.nats import nats_process
from devstack.services.postgres import postgres_process
from devstack.services.process import ManagedProcess, ServiceError
from devstack.services.temporal import DevServerConfig, temporal_process
from devstack.supervisor import Child, CrashLoop, Supervisor
from kit.logging import configure_logging, get_logger
from kit.settings import DOMAINS, Settings, get_settings
from sandbox.settings import get_sandbox_settings
from workflows.checkout.contract import TaskQueue

WORKER_DOMAINS = [queue.value for queue in TaskQueue]

log = get_logger(__name__)

# The NATS monitoring endpoint sits 4000 above the client port (4222 -> 8222), NATS's convention.
NATS_MONITOR_OFFSET = 4000
# Domains with no task queue still have an outbox to relay.
RELAY_ONLY_DOMAINS = ["accounts", "notifications"]
# Rewritten whenever a child starts, exits or is restarted: what runs, for observers such as
# `just chaos` (read-only introspection; nothing in the stack reads it back).
STATE_FILE = "stack.json"


class Shutdown(BaseException):
    """Raised from the signal handler to unwind whatever is running into the cleanup path."""


class AlreadyRunning(RuntimeError):
    """Another `just up` holds this data directory."""


def acquire_lock(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on DATA_DIR/up.lock for the life of this process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "up.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"`just up` is already running (pid {holder}) with data in {data_dir}; "
            "stop it (Ctrl-C or kill -TERM) before starting another"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def write_state(path: Path, children: list[Child]) -> None:
    """DATA_DIR/stack.json: this process's pid and each child's name, pid, restarts and whether
    it runs, replaced atomically (a reader never sees half a file)."""
    state = {
        "pid": os.getpid(),
        "updated_at": time.time(),
        "children": [
            {
                "name": child.name,
                "pid": child.process.pid,
                "restarts": child.restarts,
                "running": child.process.running(),
            }
            for child in children
        ],
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(state, indent=2))
    os.replace(partial, path)


class Stack:
    """The children of one `just up`, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.log_dir = data_dir / "logs"
        self.supervisor = Supervisor(
            on_change=lambda children: write_state(data_dir / STATE_FILE, children)
        )
        self.urls: list[tuple[str, str]] = []

    def _start(self, process: ManagedProcess) -> None:
        self.supervisor.start(process)

    def start(self) -> None:
        """Start every service whose URL the environment does not provide, and migrate."""
        self._start_postgres()
        migrate(self.settings)
        self._start_temporal()
        self._start_nats()
        self._start_sandbox()
        self._start_workers()
        self._start(relay_process(RELAY_ONLY_DOMAINS, self.settings, self.log_dir))
        self._start_api()
        self.urls.append(("Logs", str(self.log_dir)))

    def _start_postgres(self) -> None:
        settings = self.settings
        if not settings.starts_embedded("postgres"):
            log.info("stack.external", service="postgres")
        else:
            parts = urlsplit(settings.database.url)
            self._start(
                postgres_process(
                    self.data_dir / "postgres",
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or 5432,
                    log_dir=self.log_dir,
                )
            )
        self.urls.append(("PostgreSQL", f"{settings.database.url}  ({', '.join(DOMAINS)})"))

    def _start_temporal(self) -> None:
        settings = self.settings
        if not settings.starts_embedded("temporal"):
            log.info("stack.external", service="temporal")
        else:
            config = (
                DevServerConfig.load()
                .serving(settings.temporal.address)
                .with_codec_of(f"http://127.0.0.1:{settings.api.port}")
            )
            if not settings.is_explicit("temporal.ui_url"):
                # The API links to this UI and lets its origin call the payload codec.
                self.settings = settings.updated(temporal={"ui_url": config.ui_url})
            self._start(
                temporal_process(config, data_dir=self.data_dir / "temporal", log_dir=self.log_dir)
            )
            self.urls.append(("Temporal web UI", config.ui_url))
        self.urls.append(
            ("Temporal", f"{settings.temporal.address}  (namespace {settings.temporal.namespace})")
        )

    def _start_nats(self) -> None:
        settings = self.settings
        if not settings.starts_embedded("nats"):
            log.info("stack.external", service="nats")
        else:
            parts = urlsplit(settings.nats.url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 4222
            monitor = port + NATS_MONITOR_OFFSET
            self._start(
                nats_process(
                    self.data_dir / "nats",
                    host=host,
                    port=port,
                    monitor_port=monitor,
                    log_dir=self.log_dir,
                )
            )
            self.urls.append(("NATS monitoring", f"http://{host}:{monitor}"))
        self.urls.append(("NATS JetStream", settings.nats.url))

    def _start_sandbox(self) -> None:
        settings, sandbox = self.settings, get_sandbox_settings()
        if settings.starts_embedded("sandbox"):
            port = urlsplit(settings.psp.url).port or 8100
            webhook_url = sandbox.webhook_url
            carrier_url = sandbox.carrier_webhook_url
            # The provider and the carrier deliver to this stack's API, wherever API_PORT put it.
            api = f"http://127.0.0.1:{settings.api.port}"
            if not sandbox.is_explicit("webhook_url"):
                webhook_url = f"{api}/v1/webhooks/payments/stripe"
            if not sandbox.is_explicit("carrier_webhook_url"):
                carrier_url = f"{api}/v1/webhooks/carriers/easypost"
            self._start(
                sandbox_process(
                    port=port,
                    db_path=sandbox.db_path or self.data_dir / "sandbox" / "psp.sqlite",
                    webhook_url=webhook_url,
                    log_dir=self.log_dir,
                    extra_env={"SANDBOX_CARRIER_WEBHOOK_URL": carrier_url},
                )
            )
        self.urls.append(("Payment provider sandbox", f"{settings.psp.url}/v1/ledger"))
        # The sandbox also serves an OpenID provider; the API uses it when AUTH_ISSUER names it.
        self.urls.append(("OpenID provider sandbox", f"{settings.psp.url}/oidc"))

    def _start_workers(self) -> None:
        """WORKER_REPLICAS processes per domain, each holding only its own database's URL.

        Started together, then awaited (each is ready when Temporal sees it polling its queue).
        Metrics ports count up from WORKER_METRICS_BASE_PORT: the first replica of every domain,
        then the second, so the first replicas keep their ports whatever WORKER_REPLICAS says.
        """
        base, replicas = self.settings.worker.metrics_base_port, self.settings.worker.replicas
        workers = [
            worker_process(
                domain,
                self.settings,
                self.log_dir,
                metrics_port=base + r * len(WORKER_DOMAINS) + i if base else None,
                replica=r + 1 if replicas > 1 else None,
            )
            for r in range(replicas)
            for i, domain in enumerate(WORKER_DOMAINS)
        ]
        self.supervisor.start_group(*workers)
        self.urls.append(("Workers", f"{', '.join(WORKER_DOMAINS)}  ({replicas} per queue)"))
        if base:
            last = base + len(workers) - 1
            self.urls.append(
                ("Worker metrics", f"http://127.0.0.1:{base}/metrics (checkout) .. :{last}/metrics")
            )

    def _start_api(self) -> None:
        settings = self.settings
        self._start(api_process(settings, self.log_dir))
        api = f"http://{settings.api.host}:{settings.api.port}"
        self.urls.insert(
            0, ("HTTP API", f"{api}  (docs {api}/docs, health {api}/healthz, {api}/metrics)")
        )
        # The child inherits AUTH_* from this environment: provider mode when AUTH_ISSUER is set.
        tokens = (
            f"RS256/ES256 from {settings.auth.issuer} (audience {settings.auth.audience})"
            if settings.auth.issuer
            else f"HS256; development tokens from POST {api}/v1/dev/tokens"
        )
        self.urls.insert(1, ("Bearer tokens", tokens))

    def banner(self) -> str:
        """What a person needs to use the platform: every URL."""
        width = max(len(name) for name, _ in self.urls)
        lines = [f"  {name.ljust(width)}  {url}" for name, url in self.urls]
        return "\nThe platform is up:\n" + "\n".join(lines) + "\nCtrl-C stops everything.\n"

    def watch(self) -> int:
        """Restart children that exit until a crash loop (exit 1) or a signal (Shutdown)."""
        try:
            self.supervisor.run()
        except CrashLoop as exc:
            log.error("stack.giving_up", error=str(exc))
            return 1
        return 0

    def stop(self) -> None:
        """Stop every child, newest first, each by its pid; no restarts from here on."""
        self.supervisor.stop()


def main() -> int:
    """Run the stack until Ctrl-C or SIGTERM; the exit code says whether it ended cleanly."""
    settings = get_settings()
    configure_logging(settings)
    data_dir = settings.data_dir.resolve()
    try:
        lock = acquire_lock(data_dir)
    except AlreadyRunning as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2

    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return  # a second Ctrl-C must not interrupt the cleanup itself
        stopping = True
        raise Shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = Stack(settings, data_dir)
    code = 0
    try:
        stack.start()
        sys.stdout.write(stack.banner())
        sys.stdout.flush()
        code = stack.watch()
    except Shutdown as exc:
        log.info("stack.shutdown", signal=str(exc))
    except (ServiceError, OSError) as exc:
        log.error("stack.failed", error=str(exc))
        code = 1
    finally:
        stopping = True
        stack.stop()
        lock.close()
    log.info("stack.stopped", code=code)
    return code
