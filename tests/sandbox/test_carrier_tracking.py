"""The sandbox carrier's tracking: statuses on a durable timer, each a signed, retried webhook."""

from __future__ import annotations

import base64
import itertools
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kit.webhooks import WebhookVerificationError, verify
from tests.sandbox.conftest import (
    CarrierReceiver,
    Psp,
    SandboxFactory,
    Tracking,
)
from tests.sandbox.test_psp import error_code, post

pytestmark = pytest.mark.timeout(60)

STEP_S = 0.3
# Long enough that nothing moves on its own while a test advances a shipment by hand.
MANUAL_STEP_S = 60.0
ROUTE = ["in_transit", "out_for_delivery", "delivered"]
EVENT_ID = re.compile(r"^cev_[0-9a-f]{24}$")
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-carrier-secret-32-bytes!").decode()

# The two tables as the sandbox created them before tracking existed.
OLD_SCHEMA = """
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    payment_intent TEXT,
    created INTEGER NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX events_pending ON events (next_attempt_at) WHERE state = 'pending';
CREATE TABLE shipments (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL,
    ship_to TEXT NOT NULL,
    tracking_number TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('label_created', 'cancelled')),
    created INTEGER NOT NULL
);
"""


@pytest.fixture(scope="module")
def fast(start_sandbox: SandboxFactory, carrier_receiver: tuple[CarrierReceiver, str]) -> Psp:
    """A sandbox whose parcels move every STEP_S seconds."""
    return start_sandbox(
        webhook_url="", carrier_webhook_url=carrier_receiver[1], SANDBOX_CARRIER_STEP_S=str(STEP_S)
    )


@pytest.fixture(scope="module")
def manual(start_sandbox: SandboxFactory, carrier_receiver: tuple[CarrierReceiver, str]) -> Psp:
    """A sandbox whose parcels only move when a test advances them."""
    return start_sandbox(
        webhook_url="",
        carrier_webhook_url=carrier_receiver[1],
        SANDBOX_CARRIER_STEP_S=str(MANUAL_STEP_S),
    )


@pytest.fixture
def tracking_receiver(carrier_receiver: tuple[CarrierReceiver, str]) -> CarrierReceiver:
    """The shared receiver of tracking webhooks."""
    return carrier_receiver[0]


@asynccontextmanager
async def connect(psp: Psp) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of one sandbox."""
    async with httpx.AsyncClient(base_url=psp.url, timeout=10.0, trust_env=False) as http:
        yield http


async def book(client: httpx.AsyncClient) -> dict[str, Any]:
    """Book a shipment under a fresh reference."""
    request = {"reference": f"co_{uuid.uuid4().hex}", "ship_to": {"name": "Ada", "country": "DE"}}
    response = await post(client, "/v1/carrier/shipments", request)
    assert response.status_code == 201
    shipment: dict[str, Any] = response.json()
    assert shipment["status"] == "label_created"
    return shipment


async def advance(client: httpx.AsyncClient, shipment_id: str) -> httpx.Response:
    """The test helper that moves a shipment to its next status."""
    return await post(client, f"/v1/test_helpers/carrier/shipments/{shipment_id}/advance")


async def shipment_status(client: httpx.AsyncClient, shipment_id: str) -> str:
    """The shipment's status as GET answers it."""
    response = await client.get(f"/v1/carrier/shipments/{shipment_id}")
    assert response.status_code == 200
    return str(response.json()["status"])


async def tracking_events(client: httpx.AsyncClient, shipment_id: str) -> list[dict[str, Any]]:
    """The sandbox's tracking events about one shipment, newest first, with delivery state."""
    response = await client.get("/v1/carrier/events", params={"shipment": shipment_id})
    assert response.status_code == 200
    assert response.json()["object"] == "list"
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def in_order(deliveries: list[Tracking]) -> list[Tracking]:
    """The deliveries sorted by when their status occurred."""
    return sorted(deliveries, key=lambda d: d.occurred_at)


def assert_spaced(deliveries: list[Tracking], step_s: float) -> None:
    """Statuses follow the route, each one step after the previous (as scheduled)."""
    assert [d.status for d in deliveries] == ROUTE
    for before, after in itertools.pairwise(deliveries):
        gap = (after.occurred_at - before.occurred_at).total_seconds()
        assert abs(gap - step_s) < 0.01, (before.event, after.event)


async def test_booked_shipment_moves_on_its_own_with_signed_webhooks(
    fast: Psp, tracking_receiver: CarrierReceiver
) -> None:
    async with connect(fast) as client:
        shipment = await book(client)
        deliveries = in_order(await tracking_receiver.wait_for(shipment["id"], count=3))
        assert_spaced(deliveries, STEP_S)
        booked_at = deliveries[0].occurred_at - timedelta(seconds=STEP_S)
        assert booked_at.utcoffset() == timedelta(0)
        assert 0 <= booked_at.timestamp() - shipment["created"] < 1
        for delivery in deliveries:
            assert EVENT_ID.match(delivery.webhook_id)
            assert delivery.headers["content-type"] == "application/json"
            # Standard Webhooks with the carrier's secret, not Stripe's scheme or secret.
            assert (
                verify([tracking_receiver.secret], delivery.headers, delivery.body)
                == delivery.webhook_id
            )
            with pytest.raises(WebhookVerificationError):
                verify([OTHER_SECRET], delivery.headers, delivery.body)
            assert "stripe-signature" not in {name.lower() for name in delivery.headers}
            event = delivery.event
            assert set(event) == {"id", "object", "type", "created", "data"}
            assert (event["id"], event["object"], event["type"]) == (
                delivery.webhook_id,
                "event",
                "shipment.tracking",
            )
            assert isinstance(event["created"], int)
            assert set(event["data"]) == {"status", "occurred_at", "object"}
            assert delivery.shipment == {**shipment, "status": delivery.status}
            # Sent when the status changed, not before.
            assert delivery.received_at >= delivery.occurred_at.timestamp() - 0.01
        assert tracking_receiver.rejected == 0

        assert await shipment_status(client, shipment["id"]) == "delivered"
        listed = await tracking_events(client, shipment["id"])
        assert [e["data"]["status"] for e in listed] == ROUTE[::-1]
        assert [e["id"] for e in listed] == [d.webhook_id for d in deliveries[::-1]]
        for event in listed:
            assert event["shipment"] == shipment["id"]
            assert event["delivery"]["state"] == "delivered"
            assert event["delivery"]["attempts"] == 1
        # Tracking events are not payment events.
        payment_events = (await client.get("/v1/events")).json()["data"]
        assert not {e["id"] for e in listed} & {e["id"] for e in payment_events}

        late = await post(client, f"/v1/carrier/shipments/{shipment['id']}/cancel")
        assert late.status_code == 400
        assert error_code(late) == "shipment_unexpected_state"


async def test_cancelled_shipment_emits_nothing(
    fast: Psp, tracking_receiver: CarrierReceiver
) -> None:
    async with connect(fast) as client:
        cancelled = await book(client)
        response = await post(client, f"/v1/carrier/shipments/{cancelled['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        # Booked later, so its last status comes after the cancelled one's would have.
        control = await book(client)
        await tracking_receiver.wait_for(control["id"], count=3)
        assert tracking_receiver.about(cancelled["id"]) == []
        assert await tracking_events(client, cancelled["id"]) == []
        assert await shipment_status(client, cancelled["id"]) == "cancelled"
        refused = await advance(client, cancelled["id"])
        assert refused.status_code == 400
        assert error_code(refused) == "shipment_unexpected_state"


async def test_advance_moves_one_status_at_a_time_until_delivered(
    manual: Psp, tracking_receiver: CarrierReceiver
) -> None:
    async with connect(manual) as client:
        shipment = await book(client)
        for status in ROUTE:
            moved = await advance(client, shipment["id"])
            assert moved.status_code == 200
            assert moved.json() == {**shipment, "status": status}
            assert await shipment_status(client, shipment["id"]) == status
            if status == "in_transit":
                refused = await post(client, f"/v1/carrier/shipments/{shipment['id']}/cancel")
                assert refused.status_code == 400
                assert error_code(refused) == "shipment_unexpected_state"
        past = await advance(client, shipment["id"])
        assert past.status_code == 400
        assert error_code(past) == "shipment_unexpected_state"
        assert await shipment_status(client, shipment["id"]) == "delivered"

        deliveries = await tracking_receiver.wait_for(shipment["id"], count=3)
        assert [d.status for d in in_order(deliveries)] == ROUTE
        assert len(await tracking_events(client, shipment["id"])) == 3
        assert (await advance(client, "shp_000000000000000000000000")).status_code == 404


async def test_tracking_webhook_is_retried_after_a_500(
    manual: Psp, tracking_receiver: CarrierReceiver
) -> None:
    async with connect(manual) as client:
        shipment = await book(client)
        tracking_receiver.fail_next(shipment["id"], 1)
        assert (await advance(client, shipment["id"])).status_code == 200
        [delivered] = await tracking_receiver.wait_for(shipment["id"], count=1)
        attempts = tracking_receiver.about(shipment["id"])
        assert [d.answered for d in attempts] == [500, 200]
        assert attempts[0].webhook_id == attempts[1].webhook_id == delivered.webhook_id
        assert attempts[0].body == attempts[1].body
        [event] = await tracking_events(client, shipment["id"])
        assert event["id"] == delivered.webhook_id
        assert event["delivery"]["state"] == "delivered"
        assert event["delivery"]["attempts"] == 2


def stored_status(db_path: Path, shipment_id: str) -> str:
    """The shipment's status in the file of a stopped sandbox."""
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT status FROM shipments WHERE id = ?", (shipment_id,)).fetchone()
    return str(row[0])


async def test_restart_resumes_progression(
    start_sandbox: SandboxFactory, carrier_receiver: tuple[CarrierReceiver, str]
) -> None:
    receiver, url = carrier_receiver
    step_s = 1.0
    env = {"SANDBOX_CARRIER_STEP_S": str(step_s)}
    first = start_sandbox(webhook_url="", carrier_webhook_url=url, **env)
    async with connect(first) as client:
        shipment = await book(client)
        await receiver.wait_for(shipment["id"], count=1, wait_s=5)
    first.process.stop()
    assert stored_status(first.db_path, shipment["id"]) in ("in_transit", "out_for_delivery")

    second = start_sandbox(webhook_url="", carrier_webhook_url=url, db_path=first.db_path, **env)
    async with connect(second) as client:
        deliveries = in_order(await receiver.wait_for(shipment["id"], count=3, wait_s=10))
        assert_spaced(deliveries, step_s)
        assert await shipment_status(client, shipment["id"]) == "delivered"
    second.process.stop()


async def test_database_from_before_tracking_is_migrated(
    start_sandbox: SandboxFactory,
    carrier_receiver: tuple[CarrierReceiver, str],
    tmp_path: Path,
) -> None:
    receiver, url = carrier_receiver
    db_path = tmp_path / "old.sqlite"
    shipment_id = f"shp_{uuid.uuid4().hex[:24]}"
    with sqlite3.connect(db_path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO shipments VALUES (?, 'co_old', '{\"name\": \"Ada\"}', 'SBX000000000001',"
            " 'label_created', 1700000000)",
            (shipment_id,),
        )
        conn.execute(
            "INSERT INTO events (id, type, payment_intent, created, body, state, next_attempt_at)"
            " VALUES ('evt_old', 'payment_intent.succeeded', 'pi_old', 1700000000,"
            " '{\"id\": \"evt_old\"}', 'delivered', 1700000000)"
        )
    conn.close()

    psp = start_sandbox(
        webhook_url="", carrier_webhook_url=url, db_path=db_path, SANDBOX_CARRIER_STEP_S=str(STEP_S)
    )
    async with connect(psp) as client:
        assert await shipment_status(client, shipment_id) == "label_created"
        [old] = (await client.get("/v1/events", params={"payment_intent": "pi_old"})).json()["data"]
        assert old["id"] == "evt_old"
        assert old["delivery"]["state"] == "delivered"
        # The widened status CHECK accepts in_transit; from there the shipment moves on its own.
        moved = await advance(client, shipment_id)
        assert moved.status_code == 200
        assert moved.json()["status"] == "in_transit"
        deliveries = in_order(await receiver.wait_for(shipment_id, count=3))
        assert [d.status for d in deliveries] == ROUTE
    psp.process.stop()
    with sqlite3.connect(db_path) as conn:
        events = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        shipments = {row[1] for row in conn.execute("PRAGMA table_info(shipments)")}
    conn.close()
    assert {"target", "shipment"} <= events
    assert "due_at" in shipments
