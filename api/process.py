"""The API as a child process of `just up`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kit.services.process import ManagedProcess, http_ok
from kit.settings import Settings


def api_process(settings: Settings, log_dir: Path) -> ManagedProcess:
    """`python -m api`, ready once /healthz answers 200 (every dependency and poller is up)."""
    health = f"http://{settings.api_host}:{settings.api_port}/healthz"

    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "NATS_URL": settings.nats_url,
        "PSP_URL": settings.psp_url,
        "DATABASE_URL": settings.database_url,
    }
    return ManagedProcess(
        name="api",
        argv=[sys.executable, "-m", "api"],
        log_path=log_dir / "api.log",
        ready=lambda: http_ok(health, timeout=3),
        ports=[(settings.api_host, settings.api_port)],
        env=env,
    )
