"""Issue 21's scenarios: cancelling an order, returning part of one, an operator's refund."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tools.showcase.platform import CENT, Buyer, Platform, cents, check, money, until


def _bought(p: Platform, price: str, quantity: int, stock: int = 10) -> tuple[Buyer, str, Any]:
    """A buyer's completed order of `quantity` units of a new variant: buyer, variant, order."""
    buyer = p.buyer()
    variant = p.variant(price, stock)
    order = p.completed_order(buyer, p.cart(buyer, [(variant, quantity)]), "pm_card_visa")
    return buyer, variant, order


def cancel_before_pickup(p: Platform) -> None:
    """The buyer cancels before the carrier has the parcel: refunded in full, restocked."""
    buyer, variant, order = _bought(p, "29.90", 2)
    print(f"   inventory after the checkout: {p.stock(variant)}")
    p.ok("POST", f"/v1/orders/{order['id']}/cancel", buyer.headers, key=str(uuid.uuid4()))
    shown = p.order_showing(order["id"], "order cancelled", lambda o: o["status"] == "cancelled")
    print(f"   order: {shown['status']}, refunded_amount {shown['refunded_amount']}")
    stock = p.stock(variant)
    print(f"   inventory: {stock}")
    check(stock["total_stock"] == 10 and stock["available"] == 10, "both units back on the shelf")
    intent = p.ledger(order["checkout_id"])[0]
    print(f"   ledger: captured {intent['captured']} refunded {intent['refunded']}")
    check(intent["refunded"] == intent["captured"] > 0, "refunded = captured at the provider")
    check(money(shown["refunded_amount"]) == money(order["total_amount"]), "order refunded all")


def cancel_after_delivery(p: Platform) -> None:
    """Once the parcel is delivered, the buyer's cancel is refused and nothing moves."""
    buyer, variant, order = _bought(p, "29.90", 1)
    p.deliver(order)
    answer = p.call("POST", f"/v1/orders/{order['id']}/cancel", buyer.headers)
    refused = answer.status_code == 409 and answer.json().get("code") == "already_shipped"
    check(refused, "409 already_shipped")
    check(p.order(order["id"])["status"] == "delivered", "the order stays delivered")
    check(p.ledger(order["checkout_id"])[0]["refunded"] == 0, "nothing refunded")
    check(p.stock(variant)["total_stock"] == 9, "nothing restocked")


def line_share(item: Any, units: int) -> Decimal:
    """A line's pro-rata refund: (total - discount share + tax) x units / units bought."""
    paid = money(item["total_price"]) - money(item["discount_amount"]) + money(item["tax_amount"])
    bought = int(item["quantity"])
    return (paid * units / bought).quantize(CENT, rounding=ROUND_HALF_UP)


def _return(p: Platform, buyer: Buyer, order_id: str, item_id: str, units: int) -> Any:
    body = {"lines": [{"order_item_id": item_id, "quantity": units}], "reason": "too small"}
    return p.call(
        "POST", f"/v1/orders/{order_id}/returns", buyer.headers, json=body, key=str(uuid.uuid4())
    )


def return_discounted_line(p: Platform) -> None:
    """One unit of a line of a discounted order comes back: refunded at its share, restocked once;
    more units than are left of the line are refused."""
    buyer = p.buyer()
    shirt, socks = p.variant("19.99", 10), p.variant("7.45", 10)
    cart = p.cart(buyer, [(shirt, 2), (socks, 1)])
    order = p.completed_order(buyer, cart, "pm_card_visa", coupon_code=p.coupon("15"))
    p.deliver(order)
    item = next(i for i in order["items"] if i["variant_id"] == shirt)
    want = line_share(item, 1)
    print(
        f"   line {item['sku']}: {item['quantity']} x {item['unit_price']} = {item['total_price']},"
        f" discount {item['discount_amount']}, tax {item['tax_amount']}: 1 unit refunds {want}"
    )
    before = p.stock(shirt)["total_stock"]
    asked = _return(p, buyer, order["id"], item["id"], 1)
    check(asked.status_code == 201, "201: the return is requested")
    ret = asked.json()
    check(money(ret["refund_amount"]) == want, f"refund_amount {ret['refund_amount']} == {want}")
    p.ok("POST", f"/v1/ops/returns/{ret['id']}/approve", p.operator)
    until(lambda: p.ok("GET", f"/v1/returns/{ret['id']}", p.operator, quiet=True)["label"], "label")
    count = {"lines": [{"order_item_id": item["id"], "quantity": 1, "restock": True}]}
    p.ok("POST", f"/v1/ops/returns/{ret['id']}/receive", p.operator, json=count)
    again = p.call("POST", f"/v1/ops/returns/{ret['id']}/receive", p.operator, json=count)
    check(again.status_code in (200, 409), "a repeated receive restocks nothing more")
    done = until(
        lambda: (lambda r: r if r["status"] == "refunded" else None)(
            p.ok("GET", f"/v1/returns/{ret['id']}", buyer.headers, quiet=True)
        ),
        "the return refunded",
    )
    print(f"   return {done['id']}: {done['status']}, refund {done['refund_amount']}")
    after = p.stock(shirt)["total_stock"]
    check(after == before + 1, f"total_stock {before} -> {after}: restocked exactly once")
    shown = p.order(order["id"])
    print(f"   order: {shown['status']}, refunded_amount {shown['refunded_amount']}")
    check(money(shown["refunded_amount"]) == want, "the order shows the refund")
    check(p.ledger(order["checkout_id"])[0]["refunded"] == cents(want), "the provider refunded it")
    beyond = _return(p, buyer, order["id"], item["id"], 2)
    body = beyond.json()
    print(f"   {body.get('detail')} (available: {body.get('available')})")
    check(
        beyond.status_code == 422 and body.get("code") == "return_quantity_exceeded",
        "2 more units of the line: 422 return_quantity_exceeded",
    )
    check(body.get("available") == 1, "the answer says 1 unit is left to return")


def refund_replayed(p: Platform) -> None:
    """An operator's refund sent twice with one Idempotency-Key moves money once."""
    _, _, order = _bought(p, "45.00", 1)
    key, body = str(uuid.uuid4()), {"amount": "10.00", "reason": "late delivery"}
    path = f"/v1/ops/orders/{order['id']}/refunds"
    first = p.ok("POST", path, p.operator, json=body, key=key)
    second = p.ok("POST", path, p.operator, json=body, key=key)
    check(first["refund_id"] == second["refund_id"], "the same refund answered twice")
    refund_path = f"/v1/ops/refunds/{first['refund_id']}"
    settled = until(
        lambda: (lambda r: r if r["status"] != "pending" else None)(
            p.ok("GET", refund_path, p.operator, quiet=True)
        ),
        "the refund settled",
    )
    print(f"   refund {settled['refund_id']}: {settled['status']} {settled['amount']}")
    check(settled["status"] == "succeeded", "the refund succeeded")
    refunded = p.ledger(order["checkout_id"])[0]["refunded"]
    check(refunded == 1000, f"the provider refunded 1000 cents once (ledger: {refunded})")
    shown = p.order(order["id"])
    print(f"   order: {shown['status']}, refunded_amount {shown['refunded_amount']}")
    check(money(shown["refunded_amount"]) == Decimal("10.00"), "the order shows 10.00 refunded")


def over_refund(p: Platform) -> None:
    """A refund above what is left of the capture is refused and moves nothing."""
    _, _, order = _bought(p, "45.00", 1)
    total = money(order["total_amount"])
    body = {"amount": str(total + CENT), "reason": "goodwill"}
    path = f"/v1/ops/orders/{order['id']}/refunds"
    answer = p.call("POST", path, p.operator, json=body, key=str(uuid.uuid4()))
    refused = answer.status_code == 422 and answer.json().get("code") == "refund_exceeds_captured"
    check(refused, f"{total + CENT} of {total}: 422 refund_exceeds_captured")
    check(p.ledger(order["checkout_id"])[0]["refunded"] == 0, "nothing refunded at the provider")
    check(money(p.order(order["id"])["refunded_amount"]) == 0, "nothing refunded on the order")
