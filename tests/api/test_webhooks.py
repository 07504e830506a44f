"""Stripe's payment webhooks: verified over the raw body, deduplicated on the event id, signalled
once; events of other types, unknown intents and charges are handled as Stripe sends them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from domains.payments.stripe_provider import StripeProvider
from kit.money import Money
from sandbox.psp.signing import stripe_signature
from tests.api.conftest import Caller
from tests.api.test_routes import assert_problem, checkout_body, new_cart, new_variant
from tests.platform import Platform
from workflows.reconcile import ReconcilePaymentWorkflow

pytestmark = pytest.mark.timeout(120)
URL = "/v1/webhooks/payments/stripe"


def _secret(platform: Platform) -> str:
    return platform.settings.stripe.webhook_secret.get_secret_value()


def stripe_headers(body: bytes, *secrets: str, timestamp: int | None = None) -> dict[str, str]:
    """A delivery as Stripe signs it (the sandbox's signer), with every one of `secrets`."""
    signed = stripe_signature(secrets, body, timestamp)
    return {"Stripe-Signature": signed, "content-type": "application/json"}


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
        "object": "event",
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


async def test_forged_stale_tampered_and_reserialized_webhooks_are_refused(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    checkout_id, intent = await _waiting_checkout(http, platform, operator, alice)
    secret = _secret(platform)
    event = _event(checkout_id, intent)
    body = json.dumps(event).encode()
    msg_id = event["id"]
    now = int(time.time())
    good = stripe_headers(body, secret)
    cases = {
        "forged": (body, stripe_headers(body, "whsec_somebody_else")),
        "stale": (body, stripe_headers(body, secret, timestamp=now - 301)),
        "reserialized": (json.dumps(event, indent=2).encode(), good),
        "tampered": (body.replace(b"amount_capturable", b"amount_received_"), good),
        "unsigned": (body, {"content-type": "application/json"}),
        "garbled header": (body, {**good, "Stripe-Signature": "v1=deadbeef"}),
        "not utf-8": (body + b"\xff", stripe_headers(body + b"\xff", secret)),
    }
    for name, (payload, headers) in cases.items():
        response = await http.post(URL, content=payload, headers=headers)
        assert response.status_code == 400, name
        assert_problem(response, 400, "invalid_signature")
        assert await _inbox(platform, msg_id) == 0, name

    assert await _signals(platform, checkout_id) == 0
    await platform.client.get_workflow_handle(f"checkout-{checkout_id}").signal("cancel")


async def test_rotation_and_five_concurrent_duplicates(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    checkout_id, intent = await _waiting_checkout(http, platform, operator, alice)
    event = _event(checkout_id, intent)
    body = json.dumps(event).encode()
    # During a rotation Stripe signs with the old and the new secret; one match is enough.
    headers = stripe_headers(body, "whsec_old_secret_rotated_out", _secret(platform))

    answers = await asyncio.gather(
        *(http.post(URL, content=body, headers=headers) for _ in range(5))
    )

    assert [a.status_code for a in answers] == [200] * 5
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True, True]
    assert await _inbox(platform, event["id"]) == 1
    assert await _signals(platform, checkout_id) == 1
    # The intent is still waiting (tok_no_webhook): the workflow re-read it and kept waiting.
    status = (await http.get(f"/v1/checkouts/{checkout_id}", headers=alice.headers)).json()
    assert status["status"] == "requires_action"
    await platform.client.get_workflow_handle(f"checkout-{checkout_id}").signal("cancel")


async def test_unknown_intents_other_types_and_providers(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    secret = _secret(platform)
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": "pi_unknown", "object": "payment_intent", "metadata": {}}},
    }
    body = json.dumps(event).encode()
    ok = await http.post(URL, content=body, headers=stripe_headers(body, secret))
    assert ok.status_code == 200
    assert await _inbox(platform, event["id"]) == 1

    # A type the platform does not act on (enabled at Stripe by mistake): 200, nothing kept.
    other_type = {**event, "id": f"evt_{uuid.uuid4().hex}", "type": "customer.created"}
    body = json.dumps(other_type).encode()
    ignored = await http.post(URL, content=body, headers=stripe_headers(body, secret))
    assert ignored.status_code == 200
    assert await _inbox(platform, other_type["id"]) == 0

    # Genuine but not an event: 400 invalid_event, nothing kept.
    for junk in (b"[]", b"{}", b'{"id": "", "type": "x", "data": {"object": {}}}', b"nope"):
        refused = await http.post(URL, content=junk, headers=stripe_headers(junk, secret))
        assert_problem(refused, 400, "invalid_event")

    body = json.dumps(event).encode()
    unknown = await http.post(
        "/v1/webhooks/payments/acme", content=body, headers=stripe_headers(body, secret)
    )
    assert_problem(unknown, 404, "unknown_provider")


async def test_a_charge_event_reaches_the_checkout_of_its_intent(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    """`charge.refunded` carries a charge, not the intent: its `payment_intent` names it."""
    checkout_id, intent = await _waiting_checkout(http, platform, operator, alice)
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"ch_{uuid.uuid4().hex}",
                "object": "charge",
                "payment_intent": intent,
                "metadata": {},
            }
        },
    }
    body = json.dumps(event).encode()
    answer = await http.post(URL, content=body, headers=stripe_headers(body, _secret(platform)))
    assert answer.status_code == 200
    assert answer.json()["duplicate"] is False
    assert await _signals(platform, checkout_id) == 1
    await platform.client.get_workflow_handle(f"checkout-{checkout_id}").signal("cancel")


async def test_a_late_authorization_after_the_checkout_ended_is_released(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    checkout_id, _ = await _waiting_checkout(http, platform, operator, alice)
    handle = platform.client.get_workflow_handle(f"checkout-{checkout_id}")
    await handle.signal("cancel")
    await handle.result()
    # A second, stray authorization for the ended checkout shows up at the provider (a client
    # retried without its idempotency key), and its webhook arrives.
    provider = StripeProvider(
        api_key=platform.settings.stripe.api_key.get_secret_value(),
        api_base=platform.psp_url,
        timeout_s=5.0,
    )
    try:
        stray = await provider.authorize(
            Money(Decimal("12.50"), "USD"),
            payment_method="pm_card_visa",
            metadata={"checkout_id": checkout_id},
            key=uuid.uuid4().hex,
        )
    finally:
        await provider.aclose()
    assert stray.status == "requires_capture"
    event = _event(checkout_id, stray.id)
    body = json.dumps(event).encode()
    delivered = await http.post(URL, content=body, headers=stripe_headers(body, _secret(platform)))
    assert delivered.status_code == 200

    reconcile = platform.client.get_workflow_handle_for(
        ReconcilePaymentWorkflow.run, f"reconcile-{stray.id}"
    )
    settled = await reconcile.result()

    assert settled.action == "canceled"
    ledger = await platform.ledger(uuid.UUID(checkout_id))
    assert sorted(r["status"] for r in ledger) == ["canceled", "canceled"]
    assert await platform.invariants(uuid.UUID(checkout_id)) == []
