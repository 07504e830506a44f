"""A checkout whose inventory worker is down shows in /stuck; restarting the worker finishes it."""

from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.auth import issue_token
from kit.temporal import connect
from tests.conftest import ISOLATED_NAMESPACE, Service
from tests.platform import PSP_TIMEOUT_S, Platform
from tests.workflows.test_worker_crash import WorkerProcess
from tools.seed import new_input
from workflows.checkout.client import CheckoutClient

pytestmark = pytest.mark.timeout(180)


async def test_stopped_inventory_worker_is_found_and_recovered(
    platform: Platform, temporal: Service, work_dir: Path
) -> None:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal.url,
        "TEMPORAL_NAMESPACE": ISOLATED_NAMESPACE,
        "PSP_URL": platform.psp_url,
        "EASYPOST_API_BASE": platform.psp_url + "/v2",
        "PSP_TIMEOUT_S": str(PSP_TIMEOUT_S),
        "STRIPE_TIMEOUT_S": str(PSP_TIMEOUT_S),
        "WORKER_SHUTDOWN_GRACE_S": "2",
        "RELAY_ENABLED": "false",
        "LOG_FORMAT": "json",
    }
    logs = work_dir / "logs"
    others = WorkerProcess(
        ["checkout", "cart", "products", "coupons", "orders", "payments", "shipping"],
        env,
        logs / "stopped-others.log",
    )
    inventory = WorkerProcess(["inventory"], env, logs / "stopped-inventory.log")
    client = await connect(
        platform.settings.updated(temporal={"namespace": ISOLATED_NAMESPACE}).temporal
    )
    settings = platform.settings.updated(
        temporal={"namespace": ISOLATED_NAMESPACE}, ops={"default_step_deadline_s": 1.0}
    )
    app = create_app(settings, temporal=client)
    operator = {"Authorization": f"Bearer {issue_token(settings, uuid.uuid4(), ['operator'])}"}
    others.start()
    try:
        variant = await platform.seed.variant(stock=5)
        user_id = uuid.uuid4()
        cart_id = await platform.seed.cart(user_id, [(variant, 1)])
        checkout = new_input(user_id=user_id, cart_id=cart_id)
        handle = await CheckoutClient(client).start(checkout)

        async with AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
            )
            mine: dict[str, object] | None = None
            for _ in range(150):
                stuck = (await http.get("/v1/ops/checkouts/stuck", headers=operator)).json()
                mine = next(
                    (s for s in stuck["data"] if s["checkout_id"] == str(checkout.checkout_id)),
                    None,
                )
                # A step shows (in visibility and the record) once it has lasted SLOW_STEP.
                if mine and mine["step"] == "reserve_inventory":
                    break
                await asyncio.sleep(0.2)
            assert mine is not None, "the checkout never showed as stuck"
            assert mine["step"] == "reserve_inventory"
            assert mine["reasons"] == ["step_deadline_passed"]
            assert [a["activity_type"] for a in mine["pending"]] == ["inventory.reserve"]
            shown = (
                await http.get(f"/v1/ops/checkouts/{checkout.checkout_id}", headers=operator)
            ).json()
            pending = [a["activity_type"] for a in shown["pending_activities"]]
            assert "inventory.reserve" in pending

        inventory.start()  # the worker comes back: the checkout carries on where it stood
        body = await asyncio.wait_for(handle.result(), timeout=90)
        assert body.status == "completed"
        assert await platform.invariants(checkout.checkout_id) == []
    finally:
        inventory.stop()
        others.stop()
