"""Every checkout ends (invariant 8): odd totals, odd input and odd timing, tried through
the HTTP API against the real stack, as a user found them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from domains.orders import service as orders
from domains.orders.statuses import OrderStatus
from tests.api.conftest import Caller
from tests.api.shop import Shop, injected_fault, release_fails
from tests.api.test_routes import assert_problem, checkout_body
from tests.platform import Platform
from tools.seed import new_input
from workflows.checkout.client import CheckoutClient
from workflows.checkout.contract import TaskQueue, workflow_id
from workflows.checkout.models import CheckoutInput
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def shop(http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform) -> Shop:
    return Shop(http, operator, alice, platform)


async def _scalar(platform: Platform, domain: str, sql: str, **params: object) -> object:
    async with platform.databases[domain].begin() as session:
        return (await session.execute(text(sql), params)).scalar()


# -- 1. a replay after retention answers from the database and changes nothing ----------------


async def test_a_replay_after_retention_changes_nothing(
    shop: Shop, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant = await shop.variant(stock=5)
    cart_id = await shop.cart((variant, 2))
    key = uuid.uuid4().hex
    checkout_id = await shop.checkout(cart_id, key=key)
    done = await shop.wait(checkout_id)
    assert done["status"] == "completed", done
    # After Temporal's retention the workflow id is free again: the API must not even try.
    starts: list[object] = []
    start = CheckoutClient.start

    async def counted(self: CheckoutClient, checkout: CheckoutInput) -> object:
        starts.append(checkout)
        return await start(self, checkout)

    monkeypatch.setattr(CheckoutClient, "start", counted)

    replay = await shop.start(cart_id, key=key)

    assert replay.status_code == 202, replay.text
    assert replay.json() == {"checkout_id": checkout_id, "status": "completed"}
    assert starts == []
    assert await _untouched(shop, platform, checkout_id, cart_id)


async def test_a_run_started_for_an_ended_checkout_answers_its_outcome(
    shop: Shop, platform: Platform
) -> None:
    """Defence in depth: a run started anyway (its id freed by retention) changes nothing."""
    variant = await shop.variant(stock=5)
    cart_id = await shop.cart((variant, 2))
    checkout_id = await shop.checkout(cart_id)
    done = await shop.wait(checkout_id)
    assert done["status"] == "completed", done
    first = CheckoutClient(platform.client).handle(uuid.UUID(checkout_id))
    replayed_input = await _input_of(platform.client, first)
    # The same checkout again, as a new run (under another id: the dev server keeps closed runs).
    again = await platform.client.start_workflow(
        CheckoutWorkflow.run,
        replayed_input,
        id=f"retention-{uuid.uuid4()}",
        task_queue=TaskQueue.CHECKOUT.value,
    )

    body = await again.result()

    assert body.status == "completed"
    assert body.order is not None
    assert str(body.order.id) == done["order"]["id"]
    scheduled = [
        e
        async for e in again.fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == []
    assert await _untouched(shop, platform, checkout_id, cart_id)


async def _input_of(client: Client, handle: WorkflowHandle[Any, Any]) -> CheckoutInput:
    """The run's input as the history keeps it: encrypted, decoded with the platform's keys."""
    async for event in handle.fetch_history_events():
        started = event.workflow_execution_started_event_attributes
        [decoded] = await client.data_converter.decode(
            list(started.input.payloads[:1]), [CheckoutInput]
        )
        assert isinstance(decoded, CheckoutInput)
        return decoded
    raise AssertionError("no history")


async def _untouched(shop: Shop, platform: Platform, checkout_id: str, cart_id: str) -> bool:
    """The completed checkout is as it was: shipped order, converted cart, nothing refunded."""
    await asyncio.sleep(1)  # a run started by mistake would be refunding by now
    assert (await shop.status(checkout_id))["status"] == "completed"
    order_status = await _scalar(
        platform, "orders", "SELECT status FROM orders WHERE checkout_id = :c", c=checkout_id
    )
    assert order_status in {"paid", "fulfilling", "shipped", "delivered"}
    cart_status = await _scalar(
        platform, "cart", "SELECT status FROM carts WHERE id = :c", c=cart_id
    )
    assert cart_status == "converted"
    ledger = await platform.ledger(uuid.UUID(checkout_id))
    assert [row.get("refunded", 0) for row in ledger] == [0]
    assert await shop.invariants(checkout_id) == []
    return True


# -- 2. zero totals complete without a payment; refused payment details end declined ----------


@pytest.mark.parametrize(
    ("price", "coupon"),
    [("12.50", ("percentage", "100")), ("12.50", ("fixed", "40.00")), ("0.00", None)],
    ids=["coupon_100_percent", "fixed_coupon_above_subtotal", "free_product"],
)
async def test_a_zero_total_completes_without_payment(
    shop: Shop, platform: Platform, price: str, coupon: tuple[str, str] | None
) -> None:
    variant = await shop.variant(price=price, stock=3)
    cart_id = await shop.cart((variant, 2))
    extra = {"coupon_code": await shop.coupon(*coupon)} if coupon else {}
    checkout_id = await shop.checkout(cart_id, **extra)

    done = await shop.wait(checkout_id)

    assert done["status"] == "completed", done
    assert done["order"]["total_amount"] == "0.00"
    assert done["payment"]["status"] == "not_required"
    assert await platform.ledger(uuid.UUID(checkout_id)) == []
    assert await shop.invariants(checkout_id) == []


@pytest.mark.parametrize("token", ["tok_unknown", "pm_card_nonexistent", "x" * 200])
async def test_unknown_payment_details_end_declined_with_everything_released(
    shop: Shop, token: str
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    checkout_id = await shop.checkout(cart_id, token=token)

    done = await shop.wait(checkout_id)

    assert (done["status"], done["failure"]["code"]) == ("failed", "payment_declined"), done
    assert await shop.invariants(checkout_id) == []


# -- 3. a compensation that fails for good waits for an operator ------------------------------


async def test_a_failed_compensation_waits_for_an_operator_then_retry_ends_it(
    shop: Shop, platform: Platform
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    async with release_fails(platform, variant):
        checkout_id = await shop.checkout(cart_id, token="tok_declined")
        waiting = await shop.wait_needs_attention(checkout_id)
        assert waiting["status"] == "processing"
        stuck = await shop.http.get("/v1/ops/checkouts/stuck", headers=shop.operator.headers)
        mine = [s for s in stuck.json()["data"] if s["checkout_id"] == checkout_id]
        assert mine, stuck.json()
        assert "needs_attention" in mine[0]["reasons"]
        assert "release_inventory" in str(mine[0])
    # The fault is mended; the operator runs the failed compensation again.
    retried = await shop.http.post(
        f"/v1/ops/checkouts/{checkout_id}/retry", headers=shop.operator.headers
    )
    assert retried.status_code == 202, retried.text

    done = await shop.wait(checkout_id)

    assert (done["status"], done["failure"]["code"]) == ("failed", "payment_declined")
    assert await shop.invariants(checkout_id) == []
    again = await shop.http.post(
        f"/v1/ops/checkouts/{checkout_id}/retry", headers=shop.operator.headers
    )
    assert_problem(again, 409, "checkout_ended")


async def test_an_operator_resolves_a_checkout_settled_by_hand(
    shop: Shop, platform: Platform
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    inventory = platform.databases["inventory"]
    async with release_fails(platform, variant):
        checkout_id = await shop.checkout(cart_id, token="tok_declined")
        await shop.wait_needs_attention(checkout_id)
    not_yet = await shop.http.post(
        f"/v1/ops/checkouts/{uuid.uuid4()}/resolve",
        json={"note": "x"},
        headers=shop.operator.headers,
    )
    assert not_yet.status_code == 404
    # Settled by hand: the operator releases the units, then records it.
    async with inventory.begin() as session:
        await session.execute(
            text(
                "UPDATE inventory_items SET reserved = reserved - r.quantity "
                "FROM inventory_reservations r WHERE r.checkout_id = :c AND r.status = 'active' "
                "AND inventory_items.variant_id = r.variant_id"
            ),
            {"c": checkout_id},
        )
        await session.execute(
            text(
                "UPDATE inventory_reservations SET status = 'released' "
                "WHERE checkout_id = :c AND status = 'active'"
            ),
            {"c": checkout_id},
        )
    resolved = await shop.http.post(
        f"/v1/ops/checkouts/{checkout_id}/resolve",
        json={"note": "released the two units by hand, ticket OPS-1"},
        headers=shop.operator.headers,
    )
    assert resolved.status_code == 202, resolved.text

    done = await shop.wait(checkout_id)

    assert done["status"] == "failed"
    note = await _scalar(
        platform,
        "checkout",
        "SELECT resolution_note FROM checkout_sessions WHERE id = :c",
        c=checkout_id,
    )
    assert note == "released the two units by hand, ticket OPS-1"
    assert await shop.invariants(checkout_id) == []


# -- 4. odd text is refused at the edge; a data error ends the checkout; a cancel interrupts ---


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Ada\x00Lovelace"),
        ("line1", "12 St James's\x1b[31m Square"),
        ("city", "Lon\u0007don"),
        ("line2", "\u202e"),
        ("name", "A" * 201),
        ("postal_code", "1" * 21),
        ("name", "   "),
        ("country", "XX"),
        ("phone", "+44\n20 7946 0000"),
    ],
)
async def test_odd_address_text_is_refused_and_changes_nothing(
    shop: Shop, platform: Platform, field: str, value: str
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    body = checkout_body(cart_id)
    body["shipping_address"][field] = value
    key = uuid.uuid4().hex

    answer = await shop.http.post(
        "/v1/checkouts", json=body, headers={**shop.buyer.headers, "Idempotency-Key": key}
    )

    assert_problem(answer, 422, "validation_error")
    count = await _scalar(
        platform,
        "checkout",
        "SELECT count(*) FROM checkout_sessions WHERE cart_id = :c",
        c=cart_id,
    )
    assert count == 0


async def test_unicode_addresses_are_accepted(shop: Shop) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    body = checkout_body(cart_id)
    body["shipping_address"].update(name="Zoë Ærøskøbing 山田 🚚", city="Zürich", line2="Straße 2")
    answer = await shop.http.post(
        "/v1/checkouts", json=body, headers={**shop.buyer.headers, "Idempotency-Key": "u1"}
    )
    assert answer.status_code == 202, answer.text
    done = await shop.wait(answer.json()["checkout_id"])
    assert done["status"] == "completed"


async def test_a_data_error_fails_the_checkout_instead_of_retrying(
    shop: Shop, platform: Platform
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    async with injected_fault(
        platform.databases["orders"],
        "orders",
        f"ROW.user_id = '{shop.buyer.user_id}'",
        sqlstate="22021",  # character_not_in_repertoire, what a NUL byte raises
        on="INSERT",
    ):
        checkout_id = await shop.checkout(cart_id)
        done = await shop.wait(checkout_id, within_s=30)

    assert (done["status"], done["failure"]["code"]) == ("failed", "invalid_input"), done
    assert await shop.invariants(checkout_id) == []


async def test_a_cancel_interrupts_a_step_that_keeps_retrying(
    shop: Shop, platform: Platform
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    async with injected_fault(
        platform.databases["orders"],
        "orders",
        f"ROW.user_id = '{shop.buyer.user_id}'",
        sqlstate="40001",  # serialization_failure: transient, retried
        on="INSERT",
    ):
        checkout_id = await shop.checkout(cart_id)
        await shop.wait(checkout_id, step="create_order")
        await asyncio.sleep(1.5)  # a few attempts have failed
        cancelled = await shop.http.post(
            f"/v1/checkouts/{checkout_id}/cancel", headers=shop.buyer.headers
        )
        assert cancelled.status_code == 202, cancelled.text
        done = await shop.wait(checkout_id, within_s=30)

    assert (done["status"], done["failure"]["code"]) == ("cancelled", "cancelled"), done
    assert await shop.invariants(checkout_id) == []


# -- 5. a cancel racing the capture is refused, never accepted and ignored --------------------


async def test_a_cancel_during_the_capture_is_refused(shop: Shop, platform: Platform) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    checkout_id = await shop.checkout(cart_id, token="tok_flaky")
    await shop.wait(checkout_id, step="capture_payment")

    answer = await shop.http.post(f"/v1/checkouts/{checkout_id}/cancel", headers=shop.buyer.headers)

    assert_problem(answer, 409, "already_captured")
    done = await shop.wait(checkout_id)
    assert done["status"] == "completed"
    assert await shop.invariants(checkout_id) == []
    after = await shop.http.post(f"/v1/checkouts/{checkout_id}/cancel", headers=shop.buyer.headers)
    assert_problem(after, 409, "checkout_ended")


# -- 6. Temporal visibility shows every final status ------------------------------------------


async def test_visibility_shows_completed_checkouts(shop: Shop, platform: Platform) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    checkout_id = await shop.checkout(cart_id)
    assert (await shop.wait(checkout_id))["status"] == "completed"
    query = f"WorkflowId = '{workflow_id(uuid.UUID(checkout_id))}' AND CheckoutStatus = 'completed'"
    for _ in range(100):  # visibility is eventually consistent
        found = [w async for w in platform.client.list_workflows(query)]
        if found and found[0].status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.1)
    assert [w.status for w in found] == [WorkflowExecutionStatus.COMPLETED]
    listed = await shop.http.get(
        "/v1/ops/checkouts", params={"status": "completed"}, headers=shop.operator.headers
    )
    assert checkout_id in {row["checkout_id"] for row in listed.json()["data"]}


# -- 7. a payment event counts as delivered only once the workflow has it ---------------------


async def test_a_payment_event_is_redelivered_until_the_workflow_has_it(
    shop: Shop, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    deliver = CheckoutClient.deliver_payment_event
    failures = {"left": 1}

    async def flaky_delivery(self: CheckoutClient, checkout_id: uuid.UUID, event: object) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RPCError("temporal is restarting", RPCStatusCode.UNAVAILABLE, b"")
        await deliver(self, checkout_id, event)  # type: ignore[arg-type]

    monkeypatch.setattr(CheckoutClient, "deliver_payment_event", flaky_delivery)
    checkout_id = await shop.checkout(cart_id, token="tok_3ds")
    waiting = await shop.wait(checkout_id, step="awaiting_payment")
    for _ in range(50):
        waiting = await shop.status(checkout_id)
        if waiting["payment"] and waiting["payment"].get("next_action"):
            break
        await asyncio.sleep(0.1)
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(waiting["payment"]["next_action"]["url"])
        assert approved.status_code < 400

    done = await shop.wait(checkout_id, within_s=20)

    assert failures["left"] == 0, "the first delivery failed"
    assert done["status"] == "completed", done
    assert await shop.invariants(checkout_id) == []


# -- 8. races after the capture: order transitions move forward only ---------------------------


async def test_tracking_ahead_of_the_checkout_satisfies_its_later_step(platform: Platform) -> None:
    _, handle = await platform.checkout()
    body = await handle.result()
    assert body.status == "completed"
    async with platform.databases["orders"].begin() as session:
        order = await orders.order_for_checkout(session, body.checkout_id, lock=True)
        # The carrier's tracking arrived first: the order is delivered already.
        await orders.advance(session, order, OrderStatus.DELIVERED, "carrier")
    async with platform.databases["orders"].begin() as session:
        # A late (retried) mark_paid / mark_fulfilling is satisfied, not refused.
        again = await orders.transition_checkout_order(
            session, body.checkout_id, OrderStatus.FULFILLING, "shipment_created"
        )
        assert again.status == OrderStatus.DELIVERED
        paid = await orders.transition_checkout_order(
            session, body.checkout_id, OrderStatus.PAID, "payment_captured"
        )
        assert paid.status == OrderStatus.DELIVERED
    assert await platform.invariants(body.checkout_id) == []


# -- 10. an operator's cancel after the capture ends cancelled, refunded, nothing booked -------


async def test_an_operator_cancel_during_the_shipment_refunds_and_cancels_the_booking(
    shop: Shop, platform: Platform
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    marker = f"Fault {uuid.uuid4().hex[:8]}"
    body = checkout_body(cart_id)
    body["shipping_address"]["name"] = marker
    async with injected_fault(
        platform.databases["shipping"],
        "shipments",
        f"ROW.ship_to->>'name' = '{marker}'",
        sqlstate="40001",  # the booking's record fails (transient): the carrier has booked
        on="INSERT",
    ):
        started = await shop.http.post(
            "/v1/checkouts",
            json=body,
            headers={**shop.buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        checkout_id = started.json()["checkout_id"]
        await shop.wait(checkout_id, step="create_shipment")
        await asyncio.sleep(1)
        cancelled = await shop.http.post(
            f"/v1/ops/checkouts/{checkout_id}/cancel", headers=shop.operator.headers
        )
        assert cancelled.status_code == 202, cancelled.text
        done = await shop.wait(checkout_id, within_s=30)

    assert (done["status"], done["failure"]["code"]) == ("cancelled", "cancelled"), done
    assert done["payment"]["status"] == "refunded"
    ledger = await platform.ledger(uuid.UUID(checkout_id))
    assert [(row["captured"], row["refunded"]) for row in ledger] == [(1250, 1250)]
    # The label the interrupted step bought (its record failed after the purchase) is voided
    # too: the carrier shipment was recorded before the purchase, and the compensation found it.
    async with platform.databases["shipping"].begin() as session:
        carrier_id = await session.scalar(
            text("SELECT carrier_shipment_id FROM label_purchases WHERE key = :k"),
            {"k": f"checkout:{checkout_id}"},
        )
    assert carrier_id is not None
    easypost = platform.settings.easypost
    async with httpx.AsyncClient(base_url=easypost.api_base) as carrier:
        now = await carrier.get(
            f"/shipments/{carrier_id}",
            headers={"Authorization": f"Bearer {easypost.api_key.get_secret_value()}"},
        )
    assert now.json()["postage_label"] is not None, now.text
    assert now.json()["refund_status"] == "submitted", now.text
    assert await shop.invariants(checkout_id) == []


# -- a cancellation from the Temporal UI: the run completes, the checkout ends or keeps waiting --


async def test_a_temporal_cancellation_completes_the_run_as_cancelled(
    shop: Shop, platform: Platform
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    checkout_id = await shop.checkout(cart_id, token="tok_3ds")
    await shop.wait(checkout_id, step="awaiting_payment")
    handle = CheckoutClient(platform.client).handle(uuid.UUID(checkout_id))

    await handle.cancel()

    body = await handle.result()  # completed, not Canceled: the status body
    assert (body.status, body.failure and body.failure.code) == ("cancelled", "cancelled")
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert await shop.invariants(checkout_id) == []


async def test_a_temporal_cancellation_does_not_end_a_checkout_waiting_for_an_operator(
    shop: Shop, platform: Platform
) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 1))
    async with release_fails(platform, variant):
        checkout_id = await shop.checkout(cart_id, token="tok_declined")
        await shop.wait_needs_attention(checkout_id)
        handle = CheckoutClient(platform.client).handle(uuid.UUID(checkout_id))
        await handle.cancel()
        await asyncio.sleep(1)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert (await shop.status(checkout_id))["step"] == "needs_attention"
    retried = await shop.http.post(
        f"/v1/ops/checkouts/{checkout_id}/retry", headers=shop.operator.headers
    )
    assert retried.status_code == 202, retried.text

    done = await shop.wait(checkout_id)

    assert done["status"] == "failed"
    assert await shop.invariants(checkout_id) == []


async def test_a_checkout_never_depends_on_one_webhook(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every provider event is lost: the workflow's periodic re-read still finds the approval."""

    async def lost(self: CheckoutClient, checkout_id: uuid.UUID, event: object) -> None:
        raise RPCError("lost on the way", RPCStatusCode.UNAVAILABLE, b"")

    monkeypatch.setattr(CheckoutClient, "deliver_payment_event", lost)
    variant = await platform.seed.variant(price="19.99", stock=3)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="tok_3ds")
    handle = await platform.start(checkout.model_copy(update={"payment_recheck_s": 1}))
    waiting = await platform.wait_status(handle, "requires_action")
    assert waiting.payment is not None
    assert waiting.payment.next_action is not None
    async with httpx.AsyncClient() as browser:
        await browser.get(waiting.payment.next_action.url)

    body = await handle.result()

    assert body.status == "completed"
    assert await platform.invariants(checkout.checkout_id) == []
