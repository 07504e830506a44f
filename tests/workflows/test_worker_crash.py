"""A domain worker killed with SIGKILL in the middle of a checkout: restarted, the checkout
finishes and the buyer is charged once.

Runs real worker processes (`python -m workers ...`) in their own namespace, so that the
session's in-process workers cannot pick the work up instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.temporal import connect
from tests.conftest import ISOLATED_NAMESPACE, Service
from tests.platform import PSP_TIMEOUT_S, Platform
from tools.seed import new_input
from workflows.checkout.client import CheckoutClient
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """`python -m workers <domains>` as a child we can kill and restart."""

    def __init__(self, domains: list[str], env: dict[str, str], log: Path) -> None:
        self.domains, self.env, self.log = domains, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers", *self.domains],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker_env(platform: Platform, temporal: Service, work_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal.url,
        "TEMPORAL_NAMESPACE": ISOLATED_NAMESPACE,
        "PSP_URL": platform.psp_url,
        "EASYPOST_API_BASE": platform.psp_url + "/v2",
        "PSP_TIMEOUT_S": str(PSP_TIMEOUT_S),
        "STRIPE_TIMEOUT_S": str(PSP_TIMEOUT_S),
        "WORKER_SHUTDOWN_GRACE_S": "2",
        "LOG_FORMAT": "json",
    }


@pytest.fixture
def processes(worker_env: dict[str, str], work_dir: Path) -> Iterator[dict[str, WorkerProcess]]:
    logs = work_dir / "logs"
    others = ["checkout", "cart", "products", "coupons", "inventory", "orders", "shipping"]
    procs = {
        "payments": WorkerProcess(["payments"], worker_env, logs / "crash-payments.log"),
        "others": WorkerProcess(others, worker_env, logs / "crash-others.log"),
    }
    for proc in procs.values():
        proc.start()
    yield procs
    for proc in procs.values():
        proc.stop()


async def test_sigkilled_payments_worker_restarts_and_charges_once(
    platform: Platform, temporal: Service, processes: dict[str, WorkerProcess]
) -> None:
    client = await connect(
        platform.settings.updated(temporal={"namespace": ISOLATED_NAMESPACE}).temporal
    )
    variant = await platform.seed.variant(price="42.00", stock=3)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    # tok_flaky: the provider commits the authorization, then fails or hangs; the worker dies
    # while that call is in flight.
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="tok_flaky")
    handle = await CheckoutClient(client).start(checkout)

    for _ in range(300):
        if await platform.ledger(checkout.checkout_id):
            break
        await asyncio.sleep(0.05)
    else:
        logs = "".join(p.log.read_text()[-3000:] for p in processes.values())
        pytest.fail(f"the authorization never reached the provider:\n{logs}")
    processes["payments"].kill()
    body = await handle.query(CheckoutWorkflow.status)
    assert body.status == "processing"
    assert body.step == "authorize_payment"

    await asyncio.sleep(1)
    processes["payments"].start()
    result = await asyncio.wait_for(handle.result(), timeout=120)

    assert result.status == "completed", result
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["authorized"], r["captured"], r["refunded"]) for r in ledger] == [(4200, 4200, 0)]
    assert await platform.invariants(checkout.checkout_id) == []
