"""Returns through HTTP against the whole platform: a buyer returns one line of a discounted,
delivered order and is refunded its pro-rata share, its unit goes back to stock once, and a second
return beyond what is left is refused; the carrier's delivery of a return label receives the
rest, with the shipping refunded once every unit is back."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text
from temporalio.worker import Replayer

from kit.codec import data_converter
from tests.api.conftest import Caller
from tests.api.shop import Body, Shop
from tests.api.test_aftersale import eventually
from tests.api.test_order_cancel import _advance, _carrier_id
from tests.platform import Platform
from workflows.returns.client import ReturnClient
from workflows.returns.workflow import ReturnWorkflow

pytestmark = pytest.mark.timeout(240)
T = TypeVar("T")
HISTORIES = Path(__file__).parents[1] / "workflows" / "histories"
# The change these paths were last recorded under (the first set, `returns`, keeps replaying).
RECORDED_AS = "return-ship-back-deadline"


@pytest.fixture
def shop(http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform) -> Shop:
    return Shop(http, operator, alice, platform)


async def _delivered_order(
    shop: Shop, lines: list[tuple[str, int]], coupon: str, token: str = "tok_visa"
) -> Body:
    """A checkout of `lines` with `coupon`, completed, its parcel delivered: the order."""
    checkout_id = await shop.checkout(await shop.cart(*lines), coupon_code=coupon, token=token)
    done = await shop.wait(checkout_id)
    assert done["status"] == "completed", done
    order_id = uuid.UUID(done["order"]["id"])
    carrier_id = await _carrier_id(shop.platform, order_id)
    for _ in range(3):  # in transit, out for delivery, delivered
        await _advance(shop.platform, carrier_id)

    async def delivered() -> Body | None:
        answer = await shop.http.get(f"/v1/orders/{order_id}", headers=shop.buyer.headers)
        body: Body = answer.json()
        return body if body["status"] == "delivered" else None

    order = await eventually(delivered)
    return order


async def _ask(shop: Shop, order_id: str, lines: list[tuple[str, int]], key: str) -> httpx.Response:
    return await shop.http.post(
        f"/v1/orders/{order_id}/returns",
        json={
            "lines": [{"order_item_id": i, "quantity": q} for i, q in lines],
            "reason": "does not fit",
        },
        headers={**shop.buyer.headers, "Idempotency-Key": key},
    )


async def _return(shop: Shop, return_id: str, status: str) -> Body:
    async def reached() -> Body | None:
        answer = await shop.http.get(f"/v1/returns/{return_id}", headers=shop.buyer.headers)
        assert answer.status_code == 200, answer.text
        body: Body = answer.json()
        return body if body["status"] == status else None

    return await eventually(reached)


async def _stock(platform: Platform, variant_id: str) -> int:
    async with platform.databases["inventory"].begin() as session:
        found = await session.scalar(
            text("SELECT total_stock FROM inventory_items WHERE variant_id = :v"),
            {"v": uuid.UUID(variant_id)},
        )
        return int(found)


async def _restocks(platform: Platform, return_id: str) -> list[tuple[Any, ...]]:
    async with platform.databases["inventory"].begin() as session:
        rows = await session.execute(
            text("SELECT order_item_id, quantity FROM inventory_restocks WHERE return_id = :r"),
            {"r": uuid.UUID(return_id)},
        )
        return [tuple(row) for row in rows]


async def _replays(platform: Platform, return_id: str, scenario: str) -> None:
    """The return's history replays on today's code. `RECORD_HISTORIES=1` keeps it as
    `tests/workflows/histories/return_<scenario>.<RECORDED_AS>.json` (never overwriting), which
    `tests/workflows/test_replay.py` replays from then on."""
    handle = ReturnClient(platform.client).handle(uuid.UUID(return_id))
    await handle.result()
    history = await handle.fetch_history()
    path = HISTORIES / f"return_{scenario}.{RECORDED_AS}.json"
    if os.environ.get("RECORD_HISTORIES") == "1" and not path.exists():
        path.write_text(history.to_json())
    replayer = Replayer(
        workflows=[ReturnWorkflow], data_converter=data_converter(platform.settings.temporal)
    )
    await replayer.replay_workflow(history)


async def test_a_returned_line_of_a_discounted_order_is_refunded_its_share_and_restocked_once(
    shop: Shop, platform: Platform
) -> None:
    shirt, socks = await shop.variant(price="30.00"), await shop.variant(price="10.00")
    coupon = await shop.coupon("fixed", "8.00")
    order = await _delivered_order(shop, [(shirt, 2), (socks, 1)], coupon)
    assert (order["total_amount"], order["discount_amount"]) == ("62.00", "8.00")
    line = {item["variant_id"]: item for item in order["items"]}
    # The discount pro rata to line value: 60.00 and 10.00 of 70.00 take 6.86 and 1.14.
    assert (line[shirt]["discount_amount"], line[socks]["discount_amount"]) == ("6.86", "1.14")
    sock_line = line[socks]["id"]
    assert await _stock(platform, socks) == 9

    key = uuid.uuid4().hex
    asked = await _ask(shop, order["id"], [(sock_line, 1)], key)
    assert asked.status_code == 201, asked.text
    first = asked.json()
    assert (first["status"], first["refund_amount"], first["order_id"]) == (
        "requested",
        "8.86",  # 10.00 less its 1.14 of the discount, no tax, no shipping back
        order["id"],
    )
    assert [(x["order_item_id"], x["quantity"]) for x in first["lines"]] == [(sock_line, 1)]
    # The same request again answers the same return; another body under the key is refused.
    again = await _ask(shop, order["id"], [(sock_line, 1)], key)
    assert (again.status_code, again.json()["id"]) == (201, first["id"])
    other = await _ask(shop, order["id"], [(line[shirt]["id"], 1)], key)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_mismatch")
    # A second return beyond what is left of the line is refused, nothing recorded.
    beyond = await _ask(shop, order["id"], [(sock_line, 1)], uuid.uuid4().hex)
    assert (beyond.status_code, beyond.json()["code"]) == (422, "return_quantity_exceeded")
    assert beyond.json()["available"] == 0  # how many units of the line are left to return
    listed = await shop.http.get(f"/v1/orders/{order['id']}/returns", headers=shop.buyer.headers)
    assert [r["id"] for r in listed.json()["data"]] == [first["id"]]

    ops = shop.operator.headers
    waiting = await shop.http.get("/v1/ops/returns?status=requested&limit=100", headers=ops)
    assert first["id"] in [r["id"] for r in waiting.json()["data"]]
    approved = await shop.http.post(f"/v1/ops/returns/{first['id']}/approve", headers=ops)
    assert (approved.status_code, approved.json()["status"]) == (200, "approved"), approved.text
    # Asked again, the approval answers as before; a rejection now is too late.
    twice = await shop.http.post(f"/v1/ops/returns/{first['id']}/approve", headers=ops)
    assert twice.status_code == 200, twice.text
    too_late = await shop.http.post(
        f"/v1/ops/returns/{first['id']}/reject", json={"note": "no"}, headers=ops
    )
    assert (too_late.status_code, too_late.json()["code"]) == (409, "return_not_awaiting")

    async def labelled() -> Body | None:
        body = (await shop.http.get(f"/v1/returns/{first['id']}", headers=ops)).json()
        return body if body["label"] else None

    assert (await eventually(labelled))["label"]["tracking_number"]
    receipt = {"lines": [{"order_item_id": sock_line, "quantity": 1, "restock": True}]}
    received = await shop.http.post(
        f"/v1/ops/returns/{first['id']}/receive", json=receipt, headers=ops
    )
    assert received.status_code == 200, received.text
    refunded = await _return(shop, first["id"], "refunded")
    assert [(x["received_quantity"], x["restocked_quantity"]) for x in refunded["lines"]] == [
        (1, 1)
    ]
    ledger = await platform.ledger(uuid.UUID(order["checkout_id"]))
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(6200, 886)]
    assert await _stock(platform, socks) == 10  # the unit is back on the shelf, once
    # The same receive again answers as before; another one is refused; nothing moves twice.
    same = await shop.http.post(f"/v1/ops/returns/{first['id']}/receive", json=receipt, headers=ops)
    assert same.status_code == 200, same.text
    late = await shop.http.post(
        f"/v1/ops/returns/{first['id']}/receive",
        json=receipt,
        headers={**ops, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert (late.status_code, late.json()["code"]) == (409, "return_not_awaiting")
    assert await _stock(platform, socks) == 10
    assert await _restocks(platform, first["id"]) == [(uuid.UUID(sock_line), 1)]

    async def partially_refunded() -> Body | None:
        body = (await shop.http.get(f"/v1/orders/{order['id']}", headers=ops)).json()
        return body if body["status"] == "partially_refunded" else None

    assert (await eventually(partially_refunded))["refunded_amount"] == "8.86"
    assert await platform.invariants(uuid.UUID(order["checkout_id"])) == []
    await _replays(platform, first["id"], "received_by_operator")


async def test_the_carriers_delivery_receives_the_rest_with_the_shipping(
    shop: Shop, platform: Platform
) -> None:
    shirt = await shop.variant(price="30.00")
    coupon = await shop.coupon("percentage", "10")
    order = await _delivered_order(shop, [(shirt, 3)], coupon)
    item = order["items"][0]["id"]
    one = await _ask(shop, order["id"], [(item, 1)], uuid.uuid4().hex)
    rest = await _ask(shop, order["id"], [(item, 2)], uuid.uuid4().hex)
    assert (one.status_code, rest.status_code) == (201, 201)
    # 81.00 for the line: one unit is 27.00, the last two take what is left.
    assert (one.json()["refund_amount"], rest.json()["refund_amount"]) == ("27.00", "54.00")
    rejected = await shop.http.post(
        f"/v1/ops/returns/{one.json()['id']}/reject",
        json={"note": "worn"},
        headers=shop.operator.headers,
    )
    assert (rejected.status_code, rejected.json()["status"]) == (200, "rejected")
    return_id = rest.json()["id"]
    approved = await shop.http.post(
        f"/v1/ops/returns/{return_id}/approve", headers=shop.operator.headers
    )
    assert approved.status_code == 200, approved.text

    async def label_shipment() -> str | None:
        async with platform.databases["shipping"].begin() as session:
            found: str | None = await session.scalar(
                text("SELECT carrier_shipment_id FROM label_purchases WHERE key = :k"),
                {"k": f"return:{return_id}"},
            )
        labelled = await shop.http.get(f"/v1/returns/{return_id}", headers=shop.buyer.headers)
        return found if labelled.json()["label"] else None

    carrier_id = await eventually(label_shipment)
    for _ in range(3):  # the return parcel travels to the warehouse
        await _advance(platform, carrier_id)
    refunded = await _return(shop, return_id, "refunded")
    assert [(x["received_quantity"], x["restocked_quantity"]) for x in refunded["lines"]] == [
        (2, 2)
    ]
    assert await _stock(platform, shirt) == 9  # 10, 3 sold, 2 back
    ledger = await platform.ledger(uuid.UUID(order["checkout_id"]))
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(8100, 5400)]
    # The rejected unit may be asked for again: it is all that is left.
    again = await _ask(shop, order["id"], [(item, 1)], uuid.uuid4().hex)
    assert (again.status_code, again.json()["refund_amount"]) == (201, "27.00")
    beyond = await _ask(shop, order["id"], [(item, 1)], uuid.uuid4().hex)
    assert (beyond.status_code, beyond.json()["code"]) == (422, "return_quantity_exceeded")
    assert await platform.invariants(uuid.UUID(order["checkout_id"])) == []
    await _replays(platform, return_id, "received_by_carrier")


async def test_an_order_not_delivered_or_past_the_window_is_not_returnable(
    shop: Shop, platform: Platform
) -> None:
    shirt = await shop.variant(price="30.00")
    checkout_id = await shop.checkout(await shop.cart((shirt, 1)))
    done = await shop.wait(checkout_id)
    order_id, item = done["order"]["id"], None
    order = (await shop.http.get(f"/v1/orders/{order_id}", headers=shop.buyer.headers)).json()
    item = order["items"][0]["id"]
    early = await _ask(shop, order_id, [(item, 1)], uuid.uuid4().hex)
    assert (early.status_code, early.json()["code"]) == (422, "order_not_returnable")
    no_key = await shop.http.post(
        f"/v1/orders/{order_id}/returns",
        json={"lines": [{"order_item_id": item, "quantity": 1}], "reason": "x"},
        headers=shop.buyer.headers,
    )
    assert (no_key.status_code, no_key.json()["code"]) == (400, "idempotency_key_required")
    delivered = await _delivered_order(shop, [(shirt, 1)], await shop.coupon("percentage", "5"))
    async with platform.databases["orders"].begin() as session:
        await session.execute(
            text(
                "UPDATE order_state_transitions SET changed_at = now() - interval '31 days'"
                " WHERE order_id = :o AND to_state = 'delivered'"
            ),
            {"o": uuid.UUID(delivered["id"])},
        )
    late = await _ask(shop, delivered["id"], [(delivered["items"][0]["id"], 1)], uuid.uuid4().hex)
    assert (late.status_code, late.json()["code"]) == (422, "return_window_closed")
    unknown = await _ask(shop, delivered["id"], [(str(uuid.uuid4()), 1)], uuid.uuid4().hex)
    assert unknown.status_code == 422


async def test_a_refund_the_provider_fails_waits_for_an_operator(
    shop: Shop, platform: Platform
) -> None:
    shirt = await shop.variant(price="20.00")
    coupon = await shop.coupon("percentage", "10")
    order = await _delivered_order(shop, [(shirt, 2)], coupon, token="pm_card_refundFail")
    item = order["items"][0]["id"]
    asked = await _ask(shop, order["id"], [(item, 1)], uuid.uuid4().hex)
    return_id, ops = asked.json()["id"], shop.operator.headers
    approved = await shop.http.post(f"/v1/ops/returns/{return_id}/approve", headers=ops)
    assert approved.status_code == 200, approved.text
    receipt = {"lines": [{"order_item_id": item, "quantity": 1, "restock": False}]}
    received = await shop.http.post(
        f"/v1/ops/returns/{return_id}/receive", json=receipt, headers=ops
    )
    assert received.status_code == 200, received.text
    # The provider accepts the refund, then fails it: the return waits for an operator.
    await _return(shop, return_id, "needs_attention")
    waiting = await shop.http.get("/v1/ops/returns?status=needs_attention&limit=100", headers=ops)
    assert return_id in [r["id"] for r in waiting.json()["data"]]
    assert await _restocks(platform, return_id) == []  # received, not restocked
    # The failed refund is listed for operators too, but only its return asks the provider
    # again: a retry in both places could give the money back twice.
    failed = await shop.http.get("/v1/ops/refunds/failed?limit=500", headers=ops)
    listed = [r for r in failed.json()["data"] if r["order_id"] == order["id"]]
    assert [(r["purpose"], r["return_id"]) for r in listed] == [("return", return_id)]
    mine = [r["id"] for r in listed]
    elsewhere = await shop.http.post(
        f"/v1/ops/refunds/{mine[0]}/retry", json={"note": "again?"}, headers=ops
    )
    assert elsewhere.status_code == 409, elsewhere.text
    assert elsewhere.json()["code"] == "refund_owned_by_return"
    assert elsewhere.json()["return_id"] == return_id
    resolved = await shop.http.post(
        f"/v1/ops/returns/{return_id}/resolve", json={"note": "bank transfer"}, headers=ops
    )
    assert resolved.status_code == 200, resolved.text
    done = await _return(shop, return_id, "refunded")
    assert done["note"] == "bank transfer"
    assert [t["to_state"] for t in done["transitions"]][-2:] == ["needs_attention", "refunded"]
    again = await shop.http.post(
        f"/v1/ops/returns/{return_id}/retry", headers={**ops, "Idempotency-Key": "late"}
    )
    assert (again.status_code, again.json()["code"]) == (409, "not_waiting_for_operator")
    await _replays(platform, return_id, "refund_failed_resolved")
