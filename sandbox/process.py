"""The sandbox as a child process, for `kit.stack` and the tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kit.services.process import ManagedProcess, http_ok

HOST = "127.0.0.1"


def sandbox_process(
    *,
    port: int,
    db_path: Path,
    webhook_url: str,
    carrier_webhook_url: str = "",
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> ManagedProcess:
    """`python -m sandbox` on HOST:port, ready when /healthz answers 200."""
    health = f"http://{HOST}:{port}/healthz"

    # The child reads its configuration through Settings; this only hands the environment on.
    env = {
        **os.environ,
        "PSP_URL": f"http://{HOST}:{port}",
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
        ports=[(HOST, port)],
        env=env,
    )
