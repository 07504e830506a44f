"""Payment webhooks: verified over the raw body, deduplicated on webhook-id, signalled once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kit.webhooks import headers_for, sign
from tests.api.conftest import Caller
from tests.api.test_routes import assert_problem, checkout_body, new_cart, new_variant
from tests.platform import Platform
from workflows.reconcile import ReconcilePaymentWorkflow

pytestmark = pytest.mark.timeout(120)
URL = "/v1/webhooks/payments/sandbox"


async def _waiting_checkout(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> tuple[str, str]:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id)
    started = await http.post(
        "/v1/checkouts",
        json=checkout_body(cart_id, token="tok_no_webhook"),
        headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    checkout_id = started.json()["checkout_id"]
    handle = platform.client.get_workflow_handle(f"checkout-{checkout_id}")
    await platform.wait_status(handle, "requires_action", within_s=60)
    intent = (await platform.ledger(uuid.UUID(checkout_id)))[0]["payment_intent"]
    return checkout_id, intent


def _event(checkout_id: str, intent: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.amount_capturable_updated",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "metadata": {"checkout_id": checkout_id},
            }
        },
    }


async def _inbox(platform: Platform, webhook_id: str) -> int:
    async with platform.databases["payments"].begin() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM payment_webhook_events WHERE webhook_id = :w"),
            {"w": webhook_id},
        )
        return int(count or 0)


async def _signals(platform: Platform, checkout_id: str) -> int:
    history = await platform.client.get_workflow_handle(f"checkout-{checkout_id}").fetch_history()
    return sum(
        1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    )


async def test_forged_stale_future_and_reserialized_webhooks_are_refused(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    checkout_id, intent = await _waiting_checkout(http, platform, operator, alice)
    secret = platform.settings.psp.webhook_secret.get_secret_value()
    event = _event(checkout_id, intent)
    body = json.dumps(event).encode()
    msg_id = event["id"]
    now = int(time.time())
    forged = headers_for("whsec_" + "c29tZWJvZHktZWxzZQ==", msg_id, body)
    cases = {
        "forged": (body, forged),
        "stale": (body, headers_for(secret, msg_id, body, timestamp=now - 301)),
        "future": (body, headers_for(secret, msg_id, body, timestamp=now + 301)),
        "reserialized": (json.dumps(event, indent=2).encode(), headers_for(secret, msg_id, body)),
        "unsigned": (body, {}),
    }
    for name, (payload, headers) in cases.items():
        response = await http.post(
            URL, content=payload, headers={**headers, "content-type": "application/json"}
        )
        assert response.status_code == 400, name
        assert_problem(response, 400, "invalid_signature")
        assert await _inbox(platform, msg_id) == 0

    assert await _signals(platform, checkout_id) == 0
    await platform.client.get_workflow_handle(f"checkout-{checkout_id}").signal("cancel")


async def test_rotation_and_five_concurrent_duplicates(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    checkout_id, intent = await _waiting_checkout(http, platform, operator, alice)
    secret = platform.settings.psp.webhook_secret.get_secret_value()
    event = _event(checkout_id, intent)
    body = json.dumps(event).encode()
    headers = headers_for(secret, event["id"], body)
    ts = int(headers["webhook-timestamp"])
    # During a rotation the sender signs with the old and the new secret; one match is enough.
    old = sign("whsec_" + "b2xkLXNlY3JldC1yb3RhdGVkLW91dA==", event["id"], ts, body)
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"

    answers = await asyncio.gather(
        *(
            http.post(URL, content=body, headers={**headers, "content-type": "application/json"})
            for _ in range(5)
        )
    )

    assert [a.status_code for a in answers] == [200] * 5
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True, True]
    assert await _inbox(platform, event["id"]) == 1
    assert await _signals(platform, checkout_id) == 1
    # The intent is still waiting (tok_no_webhook): the workflow re-read it and kept waiting.
    status = (await http.get(f"/v1/checkouts/{checkout_id}", headers=alice.headers)).json()
    assert status["status"] == "requires_action"
    await platform.client.get_workflow_handle(f"checkout-{checkout_id}").signal("cancel")


async def test_unknown_intents_and_providers(http: httpx.AsyncClient, platform: Platform) -> None:
    secret = platform.settings.psp.webhook_secret.get_secret_value()
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": "pi_unknown", "metadata": {}}},
    }
    body = json.dumps(event).encode()
    ok = await http.post(URL, content=body, headers=headers_for(secret, event["id"], body))
    assert ok.status_code == 200
    assert await _inbox(platform, event["id"]) == 1
    other = await http.post(
        "/v1/webhooks/payments/acme", content=body, headers=headers_for(secret, event["id"], body)
    )
    assert_problem(other, 404, "unknown_provider")


async def test_a_late_authorization_after_the_checkout_ended_is_released(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    checkout_id, _ = await _waiting_checkout(http, platform, operator, alice)
    handle = platform.client.get_workflow_handle(f"checkout-{checkout_id}")
    await handle.signal("cancel")
    await handle.result()
    # A second, stray authorization for the ended checkout shows up at the provider (a client
    # retried without its idempotency key), and its webhook arrives.
    async with httpx.AsyncClient(base_url=platform.psp_url) as psp:
        stray = (
            await psp.post(
                "/v1/payment_intents",
                json={
                    "amount": 1250,
                    "currency": "usd",
                    "token": "tok_visa",
                    "capture_method": "manual",
                    "metadata": {"checkout_id": checkout_id},
                },
            )
        ).json()
    assert stray["status"] == "requires_capture"
    event = _event(checkout_id, stray["id"])
    body = json.dumps(event).encode()
    secret = platform.settings.psp.webhook_secret.get_secret_value()
    delivered = await http.post(URL, content=body, headers=headers_for(secret, event["id"], body))
    assert delivered.status_code == 200

    reconcile = platform.client.get_workflow_handle_for(
        ReconcilePaymentWorkflow.run, f"reconcile-{stray['id']}"
    )
    settled = await reconcile.result()

    assert settled.action == "canceled"
    ledger = await platform.ledger(uuid.UUID(checkout_id))
    assert sorted(r["status"] for r in ledger) == ["canceled", "canceled"]
    assert await platform.invariants(uuid.UUID(checkout_id)) == []
