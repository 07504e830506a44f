"""Cancelling an order after its checkout, through HTTP: before the carrier has the parcel the
label is voided, the payment refunded in full, the stock and the coupon given back; after, 409."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from easypost.easypost_client import EasyPostClient
from sqlalchemy import text
from temporalio.worker import Replayer

from activities.shipping.activities import ShippingActivities
from activities.shipping.contract import WithdrawInput
from api.auth import issue_token
from api.services.shipping import carrier
from domains.shipping.errors import ParcelWithCarrier
from kit.codec import data_converter
from tests.api.conftest import Caller
from tests.api.shop import release_fails
from tests.platform import Platform
from workflows.checkout.models import CheckoutInput
from workflows.order_cancel.client import OrderCancelClient
from workflows.order_cancel.workflow import OrderCancelWorkflow

pytestmark = pytest.mark.timeout(180)
HISTORIES = Path(__file__).parents[1] / "workflows" / "histories"
# Histories are recorded under the latest change to the workflow (0.1.0 first; then the
# cancellation's refund under its own provider key): every recorded one keeps replaying.
RECORDED_AS = "order-cancel-refund-key"


def _owner(platform: Platform, checkout: CheckoutInput) -> dict[str, str]:
    token = issue_token(platform.settings, checkout.user_id, ("customer",))
    return {"Authorization": f"Bearer {token}"}


async def _completed(platform: Platform, **kwargs: Any) -> tuple[CheckoutInput, uuid.UUID]:
    checkout, handle = await platform.checkout(**kwargs)
    body = await handle.result()
    assert body.status == "completed"
    assert body.order is not None
    return checkout, body.order.id


async def _order(http: httpx.AsyncClient, order_id: uuid.UUID, headers: dict[str, str]) -> Any:
    answer = await http.get(f"/v1/orders/{order_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _wait_order(
    http: httpx.AsyncClient, order_id: uuid.UUID, headers: dict[str, str], status: str
) -> Any:
    for _ in range(300):
        order = await _order(http, order_id, headers)
        if order["status"] == status:
            return order
        await asyncio.sleep(0.1)
    raise AssertionError(f"order still {order['status']}, not {status}")


async def _stock(platform: Platform, checkout_id: uuid.UUID) -> tuple[int, int]:
    """(total_stock, reserved) of the checkout's one variant."""
    async with platform.databases["inventory"].begin() as session:
        row = (
            await session.execute(
                text(
                    "SELECT i.total_stock, i.reserved FROM inventory_items i"
                    " JOIN inventory_reservations r ON r.variant_id = i.variant_id"
                    " WHERE r.checkout_id = :c"
                ),
                {"c": checkout_id},
            )
        ).one()
        return int(row.total_stock), int(row.reserved)


async def _carrier_id(platform: Platform, order_id: uuid.UUID) -> str:
    async with platform.databases["shipping"].begin() as session:
        found: str = await session.scalar(
            text("SELECT carrier_shipment_id FROM shipments WHERE order_id = :o"), {"o": order_id}
        )
        return found


async def _carrier_shipment(platform: Platform, carrier_id: str) -> Any:
    easypost = platform.settings.easypost
    client = EasyPostClient(easypost.api_key.get_secret_value(), api_base=easypost.api_base)
    return await asyncio.to_thread(client.shipment.retrieve, carrier_id)


async def _advance(platform: Platform, carrier_id: str) -> None:
    """The sandbox carrier moves the parcel on (and sends its tracking event)."""
    async with httpx.AsyncClient(base_url=platform.psp_url) as sandbox:
        moved = await sandbox.post(f"/v2/test_helpers/shipments/{carrier_id}/advance")
        assert moved.status_code == 200, moved.text


async def _told(platform: Platform, user_id: uuid.UUID, order_id: uuid.UUID) -> Any:
    """The buyer's `order_cancelled` notification of the order, once it is there (its payload
    but the order number and what its refunds added up to when the order was cancelled: the
    refund's own event may reach the order before or after)."""
    for _ in range(300):
        async with platform.databases["notifications"].begin() as session:
            payload = await session.scalar(
                text(
                    "SELECT payload FROM notifications WHERE user_id = :u"
                    " AND type = 'order_cancelled' AND payload->>'order_id' = :o"
                ),
                {"u": user_id, "o": str(order_id)},
            )
        if payload is not None:
            return {
                k: v for k, v in payload.items() if k not in ("order_number", "refunded_amount")
            }
        await asyncio.sleep(0.1)
    raise AssertionError("the buyer was not told of the cancellation")


async def _replays(platform: Platform, order_id: uuid.UUID, scenario: str) -> None:
    """The cancellation's history replays on today's code. `RECORD_HISTORIES=1` keeps it as
    `tests/workflows/histories/order_cancel_<scenario>.<RECORDED_AS>.json` (never overwriting),
    which `tests/workflows/test_replay.py` replays from then on."""
    handle = OrderCancelClient(platform.client).handle(order_id)
    await handle.result()
    history = await handle.fetch_history()
    path = HISTORIES / f"order_cancel_{scenario}.{RECORDED_AS}.json"
    if os.environ.get("RECORD_HISTORIES") == "1" and not path.exists():
        path.write_text(history.to_json())
    replayer = Replayer(
        workflows=[OrderCancelWorkflow], data_converter=data_converter(platform.settings.temporal)
    )
    await replayer.replay_workflow(history)


async def test_cancel_before_pickup_refunds_restocks_and_releases_the_coupon(
    http: httpx.AsyncClient, platform: Platform, bob: Caller
) -> None:
    code = await platform.seed.coupon(fixed="5.00", max_redemptions=1)
    checkout, order_id = await _completed(platform, coupon_code=code, quantity=2, price="20.00")
    owner = _owner(platform, checkout)
    assert await _stock(platform, checkout.checkout_id) == (98, 0)
    url = f"/v1/orders/{order_id}/cancel"

    assert (await http.post(url, headers=bob.headers)).status_code == 404  # not bob's order
    first = await http.post(url, headers=owner)
    assert first.status_code == 202, first.text
    assert first.json()["order_id"] == str(order_id)
    assert first.json()["status"] in ("cancelling", "cancelled")
    order = await _wait_order(http, order_id, owner, "cancelled")

    assert [t["to_state"] for t in order["transitions"]][-1] == "cancelled"
    assert order["transitions"][-1]["reason"] == "cancelled_by_buyer"
    assert order["shipments"][0]["status"] == "cancelled"
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(3500, 3500)]
    assert await _stock(platform, checkout.checkout_id) == (100, 0)  # both units back
    carrier = await _carrier_shipment(platform, await _carrier_id(platform, order_id))
    assert carrier.refund_status == "submitted"  # the label is voided
    # The coupon (one redemption only) is free again: another checkout redeems it.
    _, again = await _completed(platform, coupon_code=code)
    assert again != order_id

    # Asked again: the same answer, and still one refund.
    second = await http.post(url, headers=owner)
    assert (second.status_code, second.json()["status"]) == (202, "cancelled")
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(3500, 3500)]
    # The refund went out under the cancellation's own key, not under the checkout's.
    async with platform.databases["payments"].begin() as session:
        keys = (
            await session.scalars(
                text(
                    "SELECT t.idempotency_key FROM payment_transactions t JOIN payments p"
                    " ON p.id = t.payment_id WHERE p.checkout_id = :c AND t.type = 'refund'"
                ),
                {"c": checkout.checkout_id},
            )
        ).all()
    assert keys == [f"order-cancel-{order_id}:refund"]
    assert await _told(platform, checkout.user_id, order_id) == {
        "order_id": str(order_id),
        "reason": "cancelled_by_buyer",
        "total_amount": "35.00",
        "currency": "USD",
    }
    assert await platform.invariants(checkout.checkout_id) == []
    await _replays(platform, order_id, "coupon")


async def test_an_operator_cancels_any_order(
    http: httpx.AsyncClient, platform: Platform, operator: Caller
) -> None:
    _checkout, order_id = await _completed(platform)
    answer = await http.post(f"/v1/orders/{order_id}/cancel", headers=operator.headers)
    assert answer.status_code == 202, answer.text
    order = await _wait_order(http, order_id, operator.headers, "cancelled")
    assert order["transitions"][-1]["reason"] == "cancelled_by_operator"


async def test_a_delivered_order_is_refused(http: httpx.AsyncClient, platform: Platform) -> None:
    checkout, order_id = await _completed(platform)
    owner = _owner(platform, checkout)
    carrier_id = await _carrier_id(platform, order_id)
    for _ in range(3):  # in transit, out for delivery, delivered
        await _advance(platform, carrier_id)
    await _wait_order(http, order_id, owner, "delivered")

    refused = await http.post(f"/v1/orders/{order_id}/cancel", headers=owner)
    assert (refused.status_code, refused.json()["code"]) == (409, "already_shipped")
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(1999, 0)]


async def test_a_parcel_picked_up_while_the_cancel_is_asked_is_not_cancelled(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    """The carrier takes the parcel just before the cancel; its tracking event races it. The
    cancel is refused whichever arrives first, nothing is refunded, and the order follows the
    parcel."""
    checkout, order_id = await _completed(platform)
    owner = _owner(platform, checkout)
    await _advance(platform, await _carrier_id(platform, order_id))

    refused = await http.post(f"/v1/orders/{order_id}/cancel", headers=owner)
    assert (refused.status_code, refused.json()["code"]) == (409, "already_shipped")
    order = await _wait_order(http, order_id, owner, "shipped")
    assert order["shipments"][0]["status"] == "in_transit"
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(1999, 0)]
    # Asked again: the same answer.
    again = await http.post(f"/v1/orders/{order_id}/cancel", headers=owner)
    assert (again.status_code, again.json()["code"]) == (409, "already_shipped")
    if await OrderCancelClient(platform.client).status(order_id) is not None:
        await _replays(platform, order_id, "refused")  # the claim, not the API, refused it


async def test_a_cancellation_whose_refund_fails_leaves_it_owed_to_an_operator(
    http: httpx.AsyncClient, platform: Platform, operator: Caller
) -> None:
    """The card cannot take the refund back: the order is cancelled all the same, and the failed
    refund waits for an operator as money owed (the invariants count it so, not as a loss)."""
    checkout, order_id = await _completed(platform, token="tok_refundFail")
    owner = _owner(platform, checkout)
    accepted = await http.post(f"/v1/orders/{order_id}/cancel", headers=owner)
    assert accepted.status_code == 202, accepted.text
    await _wait_order(http, order_id, owner, "cancelled")
    for _ in range(300):
        listed = await http.get("/v1/ops/refunds/failed", headers=operator.headers)
        mine = [r for r in listed.json()["data"] if r["order_id"] == str(order_id)]
        if mine:
            break
        await asyncio.sleep(0.1)
    assert [(r["amount"], r["origin"], r["resolution"], r["purpose"]) for r in mine] == [
        ("19.99", "platform", None, "compensation")
    ]
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(1999, 0)]
    assert await _stock(platform, checkout.checkout_id) == (100, 0)
    assert await platform.invariants(checkout.checkout_id) == []
    # An operator refunds part of it again (the same card fails again): two failed refunds ask
    # for more than was captured between them; still nothing is lost, nothing is a violation.
    again = await http.post(
        f"/v1/ops/orders/{order_id}/refunds",
        json={"amount": "5.00", "reason": "goodwill"},
        headers={**operator.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert again.status_code == 202, again.text
    for _ in range(300):
        listed = await http.get("/v1/ops/refunds/failed", headers=operator.headers)
        mine = [r for r in listed.json()["data"] if r["order_id"] == str(order_id)]
        if len(mine) == 2:
            break
        await asyncio.sleep(0.1)
    assert sorted((r["amount"], r["purpose"]) for r in mine) == [
        ("19.99", "compensation"),
        ("5.00", "operator_refund"),
    ]
    assert await platform.invariants(checkout.checkout_id) == []
    for failed in mine:
        resolved = await http.post(
            f"/v1/ops/refunds/{failed['id']}/resolve",
            json={"note": "paid back by bank transfer"},
            headers=operator.headers,
        )
        assert resolved.status_code == 200, resolved.text
    assert await platform.invariants(checkout.checkout_id) == []


async def test_a_cancelled_checkout_s_order_is_not_cancellable(
    http: httpx.AsyncClient, platform: Platform, operator: Caller
) -> None:
    _checkout, handle = await platform.checkout(token="tok_insufficient_funds")
    body = await handle.result()
    assert body.status == "failed"
    assert body.order is not None
    refused = await http.post(f"/v1/orders/{body.order.id}/cancel", headers=operator.headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "order_not_cancellable")


async def test_a_step_failing_for_good_waits_for_an_operator(
    http: httpx.AsyncClient, platform: Platform, operator: Caller
) -> None:
    checkout, order_id = await _completed(platform)
    owner = _owner(platform, checkout)
    async with platform.databases["inventory"].begin() as session:
        variant_id = await session.scalar(
            text("SELECT variant_id FROM inventory_reservations WHERE checkout_id = :c"),
            {"c": checkout.checkout_id},
        )
    retry = f"/v1/ops/orders/{order_id}/cancel/retry"
    not_yet = await http.post(retry, headers=operator.headers)
    assert (not_yet.status_code, not_yet.json()["code"]) == (409, "not_waiting_for_operator")

    async with release_fails(platform, str(variant_id)):
        accepted = await http.post(f"/v1/orders/{order_id}/cancel", headers=owner)
        assert accepted.status_code == 202, accepted.text
        for _ in range(300):
            again = await http.post(f"/v1/orders/{order_id}/cancel", headers=owner)
            if again.json()["status"] == "needs_attention":
                break
            await asyncio.sleep(0.1)
        assert again.json()["status"] == "needs_attention"
        assert (await _order(http, order_id, owner))["status"] == "fulfilling"
        assert (await http.post(retry, headers=owner)).status_code == 403  # operators only
    retried = await http.post(retry, headers=operator.headers)
    assert retried.status_code == 202, retried.text
    await _wait_order(http, order_id, owner, "cancelled")
    assert await _stock(platform, checkout.checkout_id) == (100, 0)
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(1999, 1999)]
    await _replays(platform, order_id, "needs_attention_retry")


async def test_a_void_the_carrier_refuses_restores_the_shipment(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    """The carrier has the parcel but its tracking has not reached the platform yet: the claim
    succeeds, the void is refused, and the shipment takes back what tracking recorded."""
    checkout, order_id = await _completed(platform)
    owner = _owner(platform, checkout)
    await _advance(platform, await _carrier_id(platform, order_id))
    await _wait_order(http, order_id, owner, "shipped")
    async with platform.databases["shipping"].begin() as session:
        # As if the tracking event were still on its way: the shipment looks not picked up.
        await session.execute(
            text("UPDATE shipments SET status = 'label_created' WHERE order_id = :o"),
            {"o": order_id},
        )
    shipping = ShippingActivities(
        platform.databases["shipping"],
        carrier(platform.settings),
        warehouse=platform.settings.shipping.from_address,
    )

    with pytest.raises(ParcelWithCarrier):
        await shipping.withdraw_shipment(WithdrawInput(order_id=order_id))
    order = await _order(http, order_id, owner)
    assert order["shipments"][0]["status"] == "in_transit"
    assert order["status"] == "shipped"
    assert (
        await _carrier_shipment(platform, await _carrier_id(platform, order_id))
    ).refund_status == "rejected"
