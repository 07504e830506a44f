"""An operator refunds part of an order through HTTP: once per Idempotency-Key (a replay moves
no more money), never more than is left of the capture (even two at once), every bad request
refused with its code and nothing changed; a refund the provider fails waits for an operator."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.worker import Replayer

from kit.codec import data_converter
from tests.api.conftest import Caller
from tests.api.shop import Body, Shop
from tests.api.test_aftersale import completed, eventually, order_when
from tests.platform import Platform
from workflows.order_refund.client import OrderRefundClient
from workflows.order_refund.workflow import OrderRefundWorkflow

pytestmark = pytest.mark.timeout(180)
HISTORIES = Path(__file__).parents[1] / "workflows" / "histories"
# The change that added the workflow: its histories are recorded under this name.
RECORDED_AS = "order-refund"


@pytest.fixture
def shop(http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform) -> Shop:
    return Shop(http, operator, alice, platform)


async def refund(
    shop: Shop, order_id: str, body: dict[str, Any], key: str | None, caller: Caller | None = None
) -> httpx.Response:
    headers = dict((caller or shop.operator).headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await shop.http.post(f"/v1/ops/orders/{order_id}/refunds", json=body, headers=headers)


async def requests_of(platform: Platform, order_id: str) -> list[dict[str, Any]]:
    """The payments database's refund requests of an order, oldest first."""
    async with platform.databases["payments"].begin() as session:
        rows = await session.execute(
            text(
                "SELECT id, amount, status, reason, requested_by FROM payment_refund_requests "
                "WHERE order_id = :o ORDER BY created_at"
            ),
            {"o": uuid.UUID(order_id)},
        )
        return [dict(r._mapping) for r in rows]


async def refund_notices(
    shop: Shop, order_id: str, count: int
) -> list[tuple[str, str, str, str]] | None:
    """The buyer's refund notifications of the order (type, refunded, total, currency), once
    there are `count` of them."""
    async with shop.platform.databases["notifications"].begin() as session:
        rows = await session.execute(
            text(
                "SELECT type, payload FROM notifications WHERE user_id = :u"
                " AND payload->>'order_id' = :o AND type LIKE 'order_%refunded'"
                " ORDER BY created_at"
            ),
            {"u": shop.buyer.user_id, "o": order_id},
        )
        found = [
            (r.type, r.payload["refunded_amount"], r.payload["total_amount"], r.payload["currency"])
            for r in rows
        ]
    return found if len(found) >= count else None


async def settled(shop: Shop, refund_id: str, status: str) -> Body:
    async def probe() -> Body | None:
        answer = await shop.http.get(f"/v1/ops/refunds/{refund_id}", headers=shop.operator.headers)
        assert answer.status_code == 200, answer.text
        body: Body = answer.json()
        return body if body["status"] == status else None

    return await eventually(probe)


async def test_bad_requests_are_refused_with_their_code_and_change_nothing(
    shop: Shop, alice: Caller
) -> None:
    checkout_id, order_id, _ = await completed(shop, "tok_visa")
    good = {"amount": "5.00", "reason": "damaged in transit"}
    cases: list[tuple[dict[str, Any], str | None, int, str]] = [
        (good, None, 400, "idempotency_key_required"),
        (good, "", 400, "idempotency_key_required"),
        (good, "k" * 256, 400, "idempotency_key_required"),
        ({**good, "amount": "0"}, "k1", 422, "validation_error"),
        ({**good, "amount": "-1.00"}, "k2", 422, "validation_error"),
        ({**good, "amount": "abc"}, "k3", 422, "validation_error"),
        ({**good, "amount": "1.005"}, "k4", 422, "invalid_money"),
        ({**good, "currency": "EUR"}, "k5", 422, "refund_currency_mismatch"),
        ({**good, "currency": "XXY"}, "k6", 422, "validation_error"),
        ({**good, "reason": ""}, "k7", 422, "validation_error"),
        ({**good, "reason": "r" * 201}, "k8", 422, "validation_error"),
        ({**good, "reason": "bell\x07"}, "k9", 422, "validation_error"),
        ({"amount": "5.00"}, "k10", 422, "validation_error"),
        ({**good, "extra": 1}, "k11", 422, "validation_error"),
    ]
    for body, key, status, code in cases:
        answer = await refund(shop, order_id, body, key)
        assert answer.status_code == status, (body, key, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == code, (body, key, answer.text)

    missing = await refund(shop, str(uuid.uuid4()), good, "k12")
    assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")
    buyer = await refund(shop, order_id, good, "k13", caller=alice)
    assert buyer.status_code == 403
    unknown = await shop.http.get(f"/v1/ops/refunds/{uuid.uuid4()}", headers=shop.operator.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "refund_not_found")

    assert await requests_of(shop.platform, order_id) == []
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert ledger[0]["refunded"] == 0


async def test_a_replayed_refund_moves_money_once_and_an_over_refund_is_refused(
    shop: Shop,
) -> None:
    checkout_id, order_id, _ = await completed(shop, "tok_visa", price="20.00")
    body = {"amount": "5.00", "reason": "damaged in transit"}
    key = f"refund-{uuid.uuid4()}"

    first = await refund(shop, order_id, body, key)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["order_id"] == order_id
    assert (answer["amount"], answer["currency"]) == ("5.00", "USD")
    assert answer["reason"] == "damaged in transit"
    assert answer["requested_by"] == str(shop.operator.user_id)
    assert answer["status"] in ("pending", "succeeded")

    again = await refund(shop, order_id, body, key)
    assert again.status_code == 202, again.text
    assert again.json()["refund_id"] == answer["refund_id"]
    # Same key, same amount written otherwise: the same refund.
    same = await refund(shop, order_id, {**body, "amount": "5", "currency": "usd"}, key)
    assert same.status_code == 202, same.text
    assert same.json()["refund_id"] == answer["refund_id"]
    other = await refund(shop, order_id, {**body, "amount": "6.00"}, key)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_mismatch")

    done = await settled(shop, answer["refund_id"], "succeeded")
    assert done["provider_refund_id"]
    partial = await order_when(shop, order_id, lambda o: o["status"] == "partially_refunded")
    assert partial["refunded_amount"] == "5.00"
    assert partial["transitions"][-1]["to_state"] == "partially_refunded"
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(2000, 500)]

    over = await refund(shop, order_id, {**body, "amount": "15.01"}, f"refund-{uuid.uuid4()}")
    assert (over.status_code, over.json()["code"]) == (422, "refund_exceeds_captured")
    rest = await refund(shop, order_id, {**body, "amount": "15.00"}, f"refund-{uuid.uuid4()}")
    assert rest.status_code == 202, rest.text
    full = await order_when(shop, order_id, lambda o: o["status"] == "refunded")
    assert full["refunded_amount"] == "20.00"
    nothing_left = await refund(shop, order_id, {**body, "amount": "0.01"}, f"r-{uuid.uuid4()}")
    assert (nothing_left.status_code, nothing_left.json()["code"]) == (
        422,
        "refund_exceeds_captured",
    )

    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(2000, 2000)]
    told = await eventually(lambda: refund_notices(shop, order_id, 2))
    assert told == [
        ("order_partially_refunded", "5.00", "20.00", "USD"),
        ("order_refunded", "20.00", "20.00", "USD"),
    ]
    rows = await requests_of(shop.platform, order_id)
    assert [(str(r["amount"]), r["status"]) for r in rows] == [
        ("5.0000", "sent"),
        ("15.0000", "sent"),
    ]
    assert await shop.invariants(checkout_id) == []
    await _replays(shop.platform, order_id, key, "partial")


async def test_two_refunds_at_once_never_exceed_the_capture(shop: Shop) -> None:
    checkout_id, order_id, _ = await completed(shop, "tok_visa", price="20.00")
    answers = await asyncio.gather(
        *(
            refund(shop, order_id, {"amount": "12.00", "reason": "goodwill"}, f"k-{n}")
            for n in range(2)
        )
    )
    codes = sorted((a.status_code, a.json().get("code")) for a in answers)
    assert codes == [(202, None), (422, "refund_exceeds_captured")], [a.text for a in answers]
    accepted = next(a.json() for a in answers if a.status_code == 202)
    await settled(shop, accepted["refund_id"], "succeeded")
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(2000, 1200)]
    assert len(await requests_of(shop.platform, order_id)) == 1
    assert await shop.invariants(checkout_id) == []


async def test_an_order_whose_payment_captured_nothing_is_not_refunded(shop: Shop) -> None:
    variant = await shop.variant(price="20.00")
    checkout_id = await shop.checkout(await shop.cart((variant, 1)), token="tok_3ds")
    waiting = await shop.wait(checkout_id, step="awaiting_payment")
    assert waiting["status"] == "requires_action", waiting
    order_id = waiting["order"]["id"]
    answer = await refund(shop, order_id, {"amount": "1.00", "reason": "x"}, "k")
    assert (answer.status_code, answer.json()["code"]) == (409, "payment_not_captured")
    assert await requests_of(shop.platform, order_id) == []

    # A free order (a 100% coupon) took no money at all.
    free = await shop.coupon("percentage", "100")
    checkout_id = await shop.checkout(await shop.cart((variant, 1)), coupon_code=free)
    body = await shop.wait(checkout_id)
    assert body["status"] == "completed", body
    answer = await refund(shop, body["order"]["id"], {"amount": "1.00", "reason": "x"}, "k")
    assert (answer.status_code, answer.json()["code"]) == (409, "payment_not_captured")


async def test_a_refund_the_provider_fails_waits_for_an_operator(shop: Shop) -> None:
    checkout_id, order_id, _ = await completed(shop, "pm_card_refundFail", price="20.00")
    answer = await refund(shop, order_id, {"amount": "4.00", "reason": "late"}, "fail-1")
    assert answer.status_code == 202, answer.text
    refund_id = answer.json()["refund_id"]
    failed = await settled(shop, refund_id, "failed")
    assert failed["failure_reason"]

    listed = await shop.http.get("/v1/ops/refunds/failed", headers=shop.operator.headers)
    assert listed.status_code == 200, listed.text
    mine = [r for r in listed.json()["data"] if r["id"] == refund_id]
    assert [
        (r["amount"], r["order_id"], r["origin"], r["purpose"], r["return_id"]) for r in mine
    ] == [("4.00", order_id, "platform", "operator_refund", None)]
    assert (failed["purpose"], failed["return_id"]) == ("operator_refund", None)
    # The failed refund holds nothing: the whole capture may be refunded still.
    rest = await refund(shop, order_id, {"amount": "20.00", "reason": "late"}, "fail-2")
    assert rest.status_code == 202, rest.text
    # This card fails every refund: once the provider has said so (and not while its answer is
    # still on the way, when the ledger is ahead of the payments database), all holds.
    await settled(shop, rest.json()["refund_id"], "failed")
    assert await shop.invariants(checkout_id) == []


async def _replays(platform: Platform, order_id: str, key: str, scenario: str) -> None:
    """The refund's history replays on today's code. `RECORD_HISTORIES=1` keeps it as
    `tests/workflows/histories/order_refund_<scenario>.<RECORDED_AS>.json` (never overwriting),
    which `tests/workflows/test_replay.py` replays from then on."""
    handle = OrderRefundClient(platform.client).handle(uuid.UUID(order_id), key)
    await handle.result()
    history = await handle.fetch_history()
    path = HISTORIES / f"order_refund_{scenario}.{RECORDED_AS}.json"
    if os.environ.get("RECORD_HISTORIES") == "1" and not path.exists():
        path.write_text(history.to_json())
    replayer = Replayer(
        workflows=[OrderRefundWorkflow], data_converter=data_converter(platform.settings.temporal)
    )
    await replayer.replay_workflow(history)
