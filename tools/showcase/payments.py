"""Issue 19's scenarios: declines, a retried payment, refunds and disputes after a checkout."""

from __future__ import annotations

import uuid

from tools.showcase.platform import (
    CENT,
    Platform,
    check,
    money,
)

WAITING = frozenset({"requires_payment_method"})


def decline_then_retry(p: Platform) -> None:
    """A declined card, then another one through `POST /v1/checkouts/{id}/payment`: completed
    with one intent, captured once for the order's total."""
    buyer = p.buyer()
    cart = p.cart(buyer, [(p.variant("24.50", 5), 2)])
    checkout_id = p.start_checkout(buyer, cart, "pm_card_chargeDeclined", on_decline="retry")
    waiting = p.settled(buyer, checkout_id, WAITING | {"completed", "failed"})
    check(waiting["status"] == "requires_payment_method", "the checkout waits for another card")
    error = waiting["payment"]["last_error"]
    print(f"   payment.last_error: {error}")
    check(error["code"] == "card_declined", "last_error.code is card_declined")
    retry = {"payment": {"provider": "stripe", "payment_method": "pm_card_visa"}}
    p.ok("POST", f"/v1/checkouts/{checkout_id}/payment", buyer.headers, json=retry)
    done = p.settled(buyer, checkout_id)
    check(done["status"] == "completed", "the retried checkout completed")
    total = money(done["order"]["total_amount"])
    intents = p.ledger(checkout_id)
    print(f"   ledger: {[(i['payment_intent'], i['status'], i['captured']) for i in intents]}")
    check(len(intents) == 1, "one payment intent at the provider")
    check(intents[0]["captured"] == int(total * 100), f"captured once, {total} (in cents)")
    check(intents[0]["refunded"] == 0, "nothing refunded")


def stolen_card(p: Platform) -> None:
    """A stolen card's decline reads as a generic decline: the buyer never sees why."""
    buyer = p.buyer()
    cart = p.cart(buyer, [(p.variant("12.00", 5), 1)])
    checkout_id = p.start_checkout(
        buyer, cart, "pm_card_chargeDeclinedStolenCard", on_decline="retry"
    )
    waiting = p.settled(buyer, checkout_id, WAITING | {"completed", "failed"})
    answer = p.call("GET", f"/v1/checkouts/{checkout_id}", buyer.headers)
    error = answer.json()["payment"]["last_error"]
    print(f"   payment.last_error: {error}")
    check(waiting["status"] == "requires_payment_method", "the checkout waits for another card")
    check(error["decline_code"] == "generic_decline", "decline_code generic_decline")
    check("stolen" not in answer.text.lower(), 'no "stolen" anywhere in the answer')
    p.ok("POST", f"/v1/checkouts/{checkout_id}/cancel", buyer.headers)
    ended = p.settled(buyer, checkout_id)
    check(ended["status"] == "cancelled", "the buyer gave up: cancelled")
    check("stolen" not in str(ended).lower(), 'no "stolen" in the final answer either')


def dashboard_refund(p: Platform) -> None:
    """Part of a payment refunded in the provider's dashboard shows on the order."""
    buyer = p.buyer()
    order = p.completed_order(buyer, p.cart(buyer, [(p.variant("40.00", 5), 1)]), "pm_card_visa")
    total = money(order["total_amount"])
    intent = p.ledger(order["checkout_id"])[0]["payment_intent"]
    part = (total / 4).quantize(CENT)
    check(p.dashboard_refund(intent, part) == "succeeded", "the dashboard refund succeeded")
    shown = p.order_showing(
        order["id"],
        f"order refunded_amount {part}",
        lambda o: money(o["refunded_amount"]) == part,
    )
    print(f"   order: {shown['status']}, refunded_amount {shown['refunded_amount']} of {total}")
    check(shown["status"] == "partially_refunded", "the order is partially_refunded")


def dispute(p: Platform) -> None:
    """A chargeback opened by the buyer's bank reaches the operators' dispute list."""
    buyer = p.buyer()
    cart = p.cart(buyer, [(p.variant("31.00", 5), 1)])
    order = p.completed_order(buyer, cart, "pm_card_createDispute")
    found = p.ops_listed("/v1/ops/disputes", order["id"])
    print(
        f"   GET /v1/ops/disputes: {found['provider_dispute_id']} {found['status']} "
        f"{found['reason']} {found['amount']} {found['currency']}"
    )
    check(money(found["amount"]) == money(order["total_amount"]), "the dispute is for the total")
    check(found["status"] == "needs_response", "it needs a response")
    shown = p.order(order["id"])
    check((shown.get("dispute") or {}).get("status") == "needs_response", "the order shows it")


def failing_refund(p: Platform) -> None:
    """A refund the provider fails waits for an operator, who settles it by hand."""
    buyer = p.buyer()
    order = p.completed_order(
        buyer, p.cart(buyer, [(p.variant("18.00", 5), 1)]), "pm_card_refundFail"
    )
    body = {"amount": "5.00", "reason": "showcase: damaged box"}
    asked = p.ok(
        "POST",
        f"/v1/ops/orders/{order['id']}/refunds",
        p.operator,
        json=body,
        key=str(uuid.uuid4()),
    )
    print(f"   refund {asked['refund_id']}: {asked['status']} {asked['amount']}")
    failed = p.ops_listed("/v1/ops/refunds/failed", order["id"])
    print(
        f"   GET /v1/ops/refunds/failed: {failed['id']} {failed['status']} {failed['amount']} "
        f"({failed['failure_reason']})"
    )
    check(failed["status"] == "failed", "the refund failed at the provider and waits")
    note = {"note": "showcase: paid back by bank transfer"}
    resolved = p.ok("POST", f"/v1/ops/refunds/{failed['id']}/resolve", p.operator, json=note)
    print(
        f"   resolved: {resolved['status']} {resolved['resolution']}: {resolved['resolution_note']}"
    )
    answer = p.call("GET", "/v1/ops/refunds/failed?limit=500", p.operator)
    gone = all(r["id"] != failed["id"] for r in answer.json()["data"])
    check(gone, "no longer waiting for an operator")
