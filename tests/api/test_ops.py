"""Operators find a waiting checkout in visibility, see it stuck, and end it with nothing held."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from devstack.services.temporal import temporal_cli
from tests.api.conftest import Caller
from tests.api.test_routes import assert_problem
from tests.conftest import Service
from tests.platform import Platform
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(120)


async def test_customers_cannot_use_ops_routes(http: httpx.AsyncClient, alice: Caller) -> None:
    for method, path in (
        ("GET", "/v1/ops/checkouts"),
        ("GET", "/v1/ops/checkouts/stuck"),
        ("POST", f"/v1/ops/checkouts/{uuid.uuid4()}/cancel"),
    ):
        assert_problem(await http.request(method, path, headers=alice.headers), 403, "forbidden")


async def test_find_a_waiting_checkout_see_it_stuck_and_end_it(
    platform: Platform, operator: Caller, temporal: Service
) -> None:
    checkout, handle = await platform.checkout(token="tok_no_webhook")
    await platform.wait_status(handle, "requires_action")
    workflow = f"checkout-{checkout.checkout_id}"
    # An API whose payment window is one second: the waiting checkout is overdue at once.
    settings = platform.settings.updated(checkout={"payment_timeout": timedelta(seconds=1)})
    app = create_app(settings, temporal=platform.client)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        )
        listed: list[dict[str, object]] = []
        for _ in range(300):  # visibility is eventually consistent
            listed = (
                await http.get(
                    "/v1/ops/checkouts",
                    params={"status": "requires_action", "step": "awaiting_payment"},
                    headers=operator.headers,
                )
            ).json()["data"]
            if any(row["workflow_id"] == workflow for row in listed):
                break
            await asyncio.sleep(0.1)
        row = next(r for r in listed if r["workflow_id"] == workflow)
        assert row["customer_id"] == str(checkout.user_id)
        assert str(row["order_number"]).startswith("ORD-")
        assert str(row["ui_url"]).endswith(f"/namespaces/default/workflows/{workflow}")
        bad = await http.get(
            "/v1/ops/checkouts", params={"status": "lost"}, headers=operator.headers
        )
        assert_problem(bad, 422, "validation_error")

        await asyncio.sleep(1.2)
        stuck = (await http.get("/v1/ops/checkouts/stuck", headers=operator.headers)).json()["data"]
        mine = next(s for s in stuck if s["workflow_id"] == workflow)
        assert mine["reasons"] == ["payment_window_passed"]

        cancelled = await http.post(
            f"/v1/ops/checkouts/{checkout.checkout_id}/cancel", headers=operator.headers
        )
        assert cancelled.status_code == 202
        body = await handle.result()
        assert body.status == "cancelled"
        assert await handle.query(CheckoutWorkflow.compensations) == [
            "void_payment",
            "cancel_order",
            "release_inventory",
            "unlock_cart",
        ]
        again = await http.post(
            f"/v1/ops/checkouts/{checkout.checkout_id}/cancel", headers=operator.headers
        )
        assert_problem(again, 409, "checkout_ended")
    assert await platform.invariants(checkout.checkout_id) == []


async def test_the_stuck_list_goes_by_the_step_the_database_records(
    platform: Platform, operator: Caller, http: httpx.AsyncClient
) -> None:
    """Visibility's copy of a checkout's step can lag the checkout database (the status API): on
    a loaded server a checkout already answering `needs_attention` may still be indexed at its
    step before. The stuck policy goes by the database's step, so it lists what the status
    shows."""
    checkout, handle = await platform.checkout(token="tok_no_webhook")
    await platform.wait_status(handle, "requires_action")
    workflow = f"checkout-{checkout.checkout_id}"
    for _ in range(300):  # visibility is eventually consistent
        listed = (await http.get("/v1/ops/checkouts", headers=operator.headers)).json()["data"]
        if any(row["workflow_id"] == workflow for row in listed):
            break
        await asyncio.sleep(0.1)
    stuck = (await http.get("/v1/ops/checkouts/stuck", headers=operator.headers)).json()
    assert not any(s["workflow_id"] == workflow for s in stuck["data"])  # within its window
    # The database moves on ahead of visibility (here by hand: the lag, frozen).
    async with platform.databases["checkout"].begin() as session:
        await session.execute(
            text("UPDATE checkout_sessions SET step = 'needs_attention' WHERE id = :c"),
            {"c": checkout.checkout_id},
        )

    stuck = (await http.get("/v1/ops/checkouts/stuck", headers=operator.headers)).json()

    mine = [s for s in stuck["data"] if s["workflow_id"] == workflow]
    assert [(s["step"], s["reasons"]) for s in mine] == [("needs_attention", ["needs_attention"])]
    cancelled = await http.post(
        f"/v1/ops/checkouts/{checkout.checkout_id}/cancel", headers=operator.headers
    )
    assert cancelled.status_code == 202, cancelled.text
    assert (await handle.result()).status == "cancelled"
    assert await platform.invariants(checkout.checkout_id) == []


async def test_the_temporal_cli_finds_checkouts_by_status(
    platform: Platform, temporal: Service
) -> None:
    checkout, handle = await platform.checkout(token="tok_no_webhook")
    await platform.wait_status(handle, "requires_action")
    workflow = f"checkout-{checkout.checkout_id}"
    for _ in range(50):
        process = await asyncio.create_subprocess_exec(
            temporal_cli(),
            "workflow",
            "list",
            "--address",
            temporal.url,
            "--query",
            "CheckoutStatus='requires_action'",
            stdout=asyncio.subprocess.PIPE,
        )
        listed = (await process.communicate())[0].decode()
        if workflow in listed:
            break
        await asyncio.sleep(0.2)
    assert workflow in listed
    await handle.signal(CheckoutWorkflow.cancel)
    assert (await handle.result()).status == "cancelled"


async def test_shopctl_shows_and_cancels(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.ops import run

    checkout, handle = await platform.checkout(token="tok_no_webhook")
    await platform.wait_status(handle, "requires_action")
    checkout_id = str(checkout.checkout_id)

    async def cli(*argv: str) -> int:
        # The CLI is synchronous; run it off the loop that serves the API.
        return await asyncio.to_thread(run, ["--api", platform.api_url, *argv])

    def printed_json() -> dict[str, Any]:
        out = capsys.readouterr().out  # log lines of the in-process platform may precede it
        document: dict[str, Any] = json.loads(out[out.index("{\n") :])
        return document

    assert await cli("--json", "show", checkout_id) == 0
    shown = printed_json()
    assert shown["checkout"]["status"] == "requires_action"
    assert [s["step"] for s in shown["steps"]][:2] == ["lock_cart", "price_cart"]
    assert await cli("show", checkout_id) == 0
    assert "awaiting_payment" in capsys.readouterr().out
    assert await cli("cancel", checkout_id) == 0
    assert "cancel requested" in capsys.readouterr().out
    assert (await handle.result()).status == "cancelled"
    assert await cli("--json", "cancel", checkout_id) == 1
    assert printed_json()["code"] == "checkout_ended"
