"""Money after the sale follows the provider, through the HTTP API and the sandbox: a refund made
in the dashboard (with the Stripe SDK, by someone else) reaches the order, a dispute reaches the
order and `/v1/ops/disputes`, and a failing refund waits for an operator until settled."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import stripe
from sqlalchemy import text
from temporalio.service import RPCError, RPCStatusCode

from api.services.webhooks import AFTER_SALE_EVENT_TYPES
from tests.api.conftest import Caller
from tests.api.shop import Body, Shop, injected_fault
from tests.api.test_webhooks import URL, _secret, stripe_headers
from tests.platform import Platform
from workflows.aftersale import after_sale_workflow_id, refund_retry_workflow_id

T = TypeVar("T")


@pytest.fixture
def shop(http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform) -> Shop:
    return Shop(http, operator, alice, platform)


async def eventually(probe: Callable[[], Awaitable[T | None]], within_s: float = 45) -> T:
    """Poll `probe` until it answers something."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.2)


async def completed(shop: Shop, token: str, price: str = "20.00") -> tuple[str, str, str]:
    """A completed checkout paid with `token`: its id, its order's id and its intent's id."""
    variant = await shop.variant(price=price)
    checkout_id = await shop.checkout(await shop.cart((variant, 1)), token=token)
    body = await shop.wait(checkout_id)
    assert body["status"] == "completed", body
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert len(ledger) == 1
    return checkout_id, str(body["order"]["id"]), ledger[0]["payment_intent"]


def dashboard(platform: Platform) -> stripe.StripeClient:
    """Someone else at the provider's dashboard: the Stripe SDK, the platform's account."""
    return stripe.StripeClient(
        api_key=platform.settings.stripe.api_key.get_secret_value(),
        base_addresses={"api": platform.psp_url},
        max_network_retries=0,
    )


async def order(shop: Shop, order_id: str) -> Body:
    answer = await shop.http.get(f"/v1/orders/{order_id}", headers=shop.operator.headers)
    assert answer.status_code == 200, answer.text
    body: Body = answer.json()
    return body


async def order_when(shop: Shop, order_id: str, check: Callable[[Body], bool]) -> Body:
    async def probe() -> Body | None:
        body = await order(shop, order_id)
        return body if check(body) else None

    return await eventually(probe)


async def refund_rows(platform: Platform, checkout_id: str) -> list[dict[str, Any]]:
    async with platform.databases["payments"].begin() as session:
        rows = await session.execute(
            text(
                "SELECT r.amount, r.status, r.origin, r.resolution FROM payment_refunds r "
                "JOIN payments p ON p.id = r.payment_id WHERE p.checkout_id = :c "
                "ORDER BY r.created_at"
            ),
            {"c": uuid.UUID(checkout_id)},
        )
        return [dict(r._mapping) for r in rows]


async def test_dashboard_refunds_partial_then_the_rest_reach_the_order(shop: Shop) -> None:
    checkout_id, order_id, intent = await completed(shop, "tok_visa")
    client = dashboard(shop.platform)

    await client.v1.refunds.create_async({"payment_intent": intent, "amount": 500})
    partial = await order_when(shop, order_id, lambda o: o["status"] == "partially_refunded")
    assert partial["refunded_amount"] == "5.00"

    await client.v1.refunds.create_async({"payment_intent": intent})
    full = await order_when(shop, order_id, lambda o: o["status"] == "refunded")
    assert full["refunded_amount"] == full["total_amount"] == "20.00"
    assert [t["to_state"] for t in full["transitions"]][-2:] == ["partially_refunded", "refunded"]

    rows = await refund_rows(shop.platform, checkout_id)
    assert [(str(r["amount"]), r["status"], r["origin"]) for r in rows] == [
        ("5.0000", "succeeded", "dashboard"),
        ("15.0000", "succeeded", "dashboard"),
    ]
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert ledger[0]["refunded"] == 2000
    assert await shop.invariants(checkout_id) == []


@pytest.mark.parametrize(
    ("evidence", "outcome", "payment"),
    [("winning_evidence", "won", "captured"), ("losing_evidence", "lost", "disputed")],
)
async def test_a_dispute_reaches_the_order_and_the_operators_until_decided(
    shop: Shop, evidence: str, outcome: str, payment: str
) -> None:
    checkout_id, order_id, _ = await completed(shop, "pm_card_createDispute")

    async def listed() -> Body | None:
        answer = await shop.http.get("/v1/ops/disputes", headers=shop.operator.headers)
        assert answer.status_code == 200, answer.text
        mine = [d for d in answer.json()["data"] if d["order_id"] == order_id]
        return mine[0] if mine else None

    dispute = await eventually(listed)
    assert dispute["status"] == "needs_response"
    assert dispute["amount"] == "20.00"
    assert dispute["currency"] == "USD"
    assert dispute["reason"]
    assert dispute["evidence_due_by"]
    assert dispute["order_number"].startswith("ORD-")
    shown = (await order(shop, order_id))["dispute"]
    assert shown["status"] == "needs_response"
    assert shown["amount"] == "20.00"
    assert await _payment_status(shop.platform, checkout_id) == "disputed"
    refused = await shop.http.get("/v1/ops/disputes", headers=shop.buyer.headers)
    assert refused.status_code == 403

    client = dashboard(shop.platform)
    await client.v1.disputes.update_async(
        dispute["provider_dispute_id"], {"evidence": {"uncategorized_text": evidence}}
    )
    decided = await order_when(shop, order_id, lambda o: o["dispute"]["status"] == outcome)
    # A dispute is not a refund: the order keeps its status and its refunded amount.
    assert decided["status"] in ("paid", "fulfilling", "shipped")
    assert decided["refunded_amount"] == "0.00"
    assert await _payment_status(shop.platform, checkout_id) == payment
    closed = await shop.http.get(
        "/v1/ops/disputes", params={"open": "true"}, headers=shop.operator.headers
    )
    assert all(d["order_id"] != order_id for d in closed.json()["data"])
    assert await _operator_notices(shop.platform, dispute["provider_dispute_id"]) == 1
    assert await shop.invariants(checkout_id) == []


async def _payment_status(platform: Platform, checkout_id: str) -> str:
    async with platform.databases["payments"].begin() as session:
        status: str = await session.scalar(
            text("SELECT status FROM payments WHERE checkout_id = :c"),
            {"c": uuid.UUID(checkout_id)},
        )
        return status


async def _operator_notices(platform: Platform, dispute_id: str) -> int:
    async def probe() -> int | None:
        async with platform.databases["notifications"].begin() as session:
            count = await session.scalar(
                text(
                    "SELECT count(*) FROM notifications WHERE type = 'payment_disputed' "
                    "AND user_id = '00000000-0000-0000-0000-000000000000' "
                    "AND payload->>'dispute' = :d"
                ),
                {"d": dispute_id},
            )
        return int(count) if count else None

    return await eventually(probe)


async def failed_refund_of(shop: Shop, checkout_id: str, skip: set[str]) -> Body:
    async def probe() -> Body | None:
        answer = await shop.http.get("/v1/ops/refunds/failed", headers=shop.operator.headers)
        assert answer.status_code == 200, answer.text
        mine = [
            r
            for r in answer.json()["data"]
            if r["checkout_id"] == checkout_id and r["id"] not in skip
        ]
        return mine[0] if mine else None

    return await eventually(probe)


async def test_a_failing_refund_waits_for_an_operator_until_retried_or_resolved(
    shop: Shop,
) -> None:
    checkout_id, order_id, intent = await completed(shop, "pm_card_refundFail")
    await dashboard(shop.platform).v1.refunds.create_async({"payment_intent": intent})

    failed = await failed_refund_of(shop, checkout_id, set())
    assert failed["status"] == "failed"
    assert failed["failure_reason"]
    assert failed["amount"] == "20.00"
    assert (failed["origin"], failed["purpose"], failed["return_id"]) == (
        "dashboard",
        "dashboard",
        None,
    )
    # The refund never succeeded: the order keeps its money and its status.
    assert (await order(shop, order_id))["refunded_amount"] == "0.00"

    retried = await shop.http.post(
        f"/v1/ops/refunds/{failed['id']}/retry",
        json={"note": "card replaced"},
        headers=shop.operator.headers,
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["refund"]["resolution"] == "retried"
    again = await shop.http.post(
        f"/v1/ops/refunds/{failed['id']}/retry", json={}, headers=shop.operator.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["new_provider_refund_id"] == retried.json()["new_provider_refund_id"]

    # The same card fails again: the new refund waits in its turn; an operator settles it by hand.
    second = await failed_refund_of(shop, checkout_id, {failed["id"]})
    assert (second["origin"], second["purpose"]) == ("platform", "operator_retry")
    resolved = await shop.http.post(
        f"/v1/ops/refunds/{second['id']}/resolve",
        json={"note": "paid back by bank transfer"},
        headers=shop.operator.headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolution"] == "resolved"
    twice = await shop.http.post(
        f"/v1/ops/refunds/{failed['id']}/resolve",
        json={"note": "x"},
        headers=shop.operator.headers,
    )
    assert twice.status_code == 409
    assert twice.json()["code"] == "refund_not_failed"
    missing = await shop.http.post(
        f"/v1/ops/refunds/{uuid.uuid4()}/resolve", json={"note": "x"}, headers=shop.operator.headers
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "refund_not_found"

    rows = await refund_rows(shop.platform, checkout_id)
    assert [(r["status"], r["origin"], r["resolution"]) for r in rows] == [
        ("failed", "dashboard", "retried"),
        ("failed", "platform", "resolved"),
    ]
    assert await shop.invariants(checkout_id) == []


async def test_duplicate_out_of_order_and_unknown_after_sale_events(shop: Shop) -> None:
    """The provider's events are re-read, never trusted: replayed in reverse order, twice, they
    change nothing; one about an unknown intent is acknowledged."""
    checkout_id, order_id, intent = await completed(shop, "tok_visa")
    await dashboard(shop.platform).v1.refunds.create_async({"payment_intent": intent})
    before = await order_when(shop, order_id, lambda o: o["status"] == "refunded")
    listed = await shop.http.get(
        f"{shop.platform.psp_url}/v1/events", params={"payment_intent": intent}
    )
    events = [e for e in listed.json()["data"] if e["type"] in AFTER_SALE_EVENT_TYPES]
    assert events
    secret = _secret(shop.platform)
    for event in events:
        document = {k: v for k, v in event.items() if k not in ("payment_intent", "delivery")}
        raw = json.dumps(document).encode()
        answer = await shop.http.post(URL, content=raw, headers=stripe_headers(raw, secret))
        assert answer.status_code == 200
        assert answer.json()["duplicate"] is True
    # The same events again under new ids, oldest last: each is re-read, none moves anything.
    for event in reversed(events):
        document = {k: v for k, v in event.items() if k not in ("payment_intent", "delivery")}
        raw = json.dumps({**document, "id": f"evt_{uuid.uuid4().hex}"}).encode()
        answer = await shop.http.post(URL, content=raw, headers=stripe_headers(raw, secret))
        assert answer.status_code == 200
        assert answer.json()["duplicate"] is False
    handle = shop.platform.client.get_workflow_handle(after_sale_workflow_id(intent))
    await handle.result()
    unknown = {**events[0], "id": f"evt_{uuid.uuid4().hex}"}
    unknown["data"] = {"object": {**events[0]["data"]["object"], "payment_intent": "pi_nobody"}}
    unknown.pop("delivery", None)
    raw = json.dumps(unknown).encode()
    answer = await shop.http.post(URL, content=raw, headers=stripe_headers(raw, secret))
    assert answer.status_code == 200
    assert answer.json()["duplicate"] is False
    after = await order(shop, order_id)
    assert after["transitions"] == before["transitions"]
    assert after["refunded_amount"] == before["refunded_amount"]
    assert await shop.invariants(checkout_id) == []


async def test_a_compensation_refund_that_fails_later_waits_for_an_operator(
    shop: Shop, platform: Platform
) -> None:
    """An operator cancels a checkout after its capture; its refund is accepted, then fails at the
    card network: the failed refund waits in `/v1/ops/refunds/failed` until resolved."""
    variant = await shop.variant(price="20.00")
    cart_id = await shop.cart((variant, 1))
    async with injected_fault(
        platform.databases["orders"],
        "orders",
        f"ROW.user_id = '{shop.buyer.user_id}' AND NEW.status = 'paid'",
        sqlstate="40001",  # serialization_failure: transient, retried: the checkout holds
    ):
        checkout_id = await shop.checkout(cart_id, token="pm_card_refundFail")
        await eventually(lambda: _captured(platform, checkout_id))
        await asyncio.sleep(1.0)  # confirming the order keeps failing, and is retried
        cancelled = await shop.http.post(
            f"/v1/ops/checkouts/{checkout_id}/cancel", headers=shop.operator.headers
        )
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["money"] == "refunded"
        done = await shop.wait(checkout_id)
    assert done["status"] == "cancelled"

    failed = await failed_refund_of(shop, checkout_id, set())
    assert (failed["origin"], failed["purpose"], failed["return_id"]) == (
        "platform",
        "compensation",
        None,
    )
    assert failed["amount"] == "20.00"
    ledger = await platform.ledger(uuid.UUID(checkout_id))
    assert (ledger[0]["captured"], ledger[0]["refunded"]) == (2000, 0)

    resolved = await shop.http.post(
        f"/v1/ops/refunds/{failed['id']}/resolve",
        json={"note": "refunded by bank transfer"},
        headers=shop.operator.headers,
    )
    assert resolved.status_code == 200, resolved.text
    listed = await shop.http.get("/v1/ops/refunds/failed", headers=shop.operator.headers)
    assert all(r["id"] != failed["id"] for r in listed.json()["data"])
    assert await shop.invariants(checkout_id) == []


def _card_network_answers(work_dir: Path, refund_id: str, after_s: float) -> None:
    """The sandbox fails a pending refund to pm_card_refundFail `after_s` from now (instead of two
    seconds after it was made): it holds its money as long as a test needs."""
    with sqlite3.connect(work_dir / "sandbox" / "psp.sqlite", timeout=30) as conn:
        conn.execute(
            "UPDATE refunds SET due_at = ? WHERE id = ? AND due_at IS NOT NULL",
            (time.time() + after_s, refund_id),
        )


async def _retry_started(platform: Platform, refund_id: str) -> bool:
    handle = platform.client.get_workflow_handle(refund_retry_workflow_id(uuid.UUID(refund_id)))
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def test_a_retry_of_a_failed_refund_whose_money_was_given_back_since_is_refused(
    shop: Shop, platform: Platform, work_dir: Path
) -> None:
    """A refund fails; the whole capture is then refunded again in the dashboard (pending at the
    card network): a retry of the failed refund would give back more than is left. It is 422
    `refund_exceeds_captured` before anything starts, as often as asked; the failed refund still
    waits, and an operator resolves it."""
    checkout_id, _, intent = await completed(shop, "pm_card_refundFail")
    client = dashboard(shop.platform)
    await client.v1.refunds.create_async({"payment_intent": intent})
    failed = await failed_refund_of(shop, checkout_id, set())
    again = await client.v1.refunds.create_async({"payment_intent": intent})
    await asyncio.to_thread(_card_network_answers, work_dir, again.id, 3600)

    async def reconciled() -> bool | None:
        rows = await refund_rows(platform, checkout_id)
        return True if [r["status"] for r in rows] == ["failed", "pending"] else None

    await eventually(reconciled)
    for _ in range(2):
        retried = await shop.http.post(
            f"/v1/ops/refunds/{failed['id']}/retry", json={}, headers=shop.operator.headers
        )
        assert retried.status_code == 422, retried.text
        assert retried.json()["code"] == "refund_exceeds_captured"
    assert not await _retry_started(platform, failed["id"])
    assert (await failed_refund_of(shop, checkout_id, set()))["id"] == failed["id"]

    resolved = await shop.http.post(
        f"/v1/ops/refunds/{failed['id']}/resolve",
        json={"note": "refunded again in the dashboard"},
        headers=shop.operator.headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolution"] == "resolved"
    # The dashboard's refund fails in its turn and waits for an operator like any other.
    await asyncio.to_thread(_card_network_answers, work_dir, again.id, 0)
    second = await failed_refund_of(shop, checkout_id, {failed["id"]})
    assert second["origin"] == "dashboard"
    rows = await refund_rows(platform, checkout_id)
    assert [(r["status"], r["resolution"]) for r in rows] == [
        ("failed", "resolved"),
        ("failed", None),
    ]
    assert await shop.invariants(checkout_id) == []


async def _captured(platform: Platform, checkout_id: str) -> bool | None:
    ledger = await platform.ledger(uuid.UUID(checkout_id))
    return True if ledger and ledger[0]["captured"] else None
