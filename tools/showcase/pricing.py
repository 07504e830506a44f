"""Issue 20's scenarios: the whole price (a chosen shipping rate, a coupon, tax) and its
refusals: an unknown or foreign rate, the tax service down."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tools.showcase.platform import US_ADDRESS, Platform, cents, check, money

CENT = Decimal("0.01")
# The sandbox's Stripe Tax rate for California (the scenarios' address).
CALIFORNIA = Decimal("0.0725")


def california_tax(amount: Decimal) -> Decimal:
    return (amount * CALIFORNIA).quantize(CENT, rounding=ROUND_HALF_UP)


def _rates(p: Platform, buyer_headers: dict[str, str], cart_id: str, address: Any) -> Any:
    body = {"shipping_address": address}
    rates = p.ok("POST", f"/v1/carts/{cart_id}/shipping-rates", buyer_headers, json=body)["rates"]
    for rate in rates:
        print(f"   rate {rate['service']:22} {rate['amount']} {rate['currency']} id {rate['id']}")
    return rates


def priced_checkout(p: Platform) -> None:
    """Shipping rates for a cart, a checkout with the chosen one and a coupon: the order's total
    is subtotal - discount + shipping + tax, and exactly that is captured."""
    buyer = p.buyer()
    cart = p.cart(buyer, [(p.variant("19.99", 5), 2), (p.variant("7.45", 5), 1)])
    rates = _rates(p, buyer.headers, cart, US_ADDRESS)
    check(len(rates) > 1, "several services quoted")
    chosen = rates[-1]  # not the cheapest: the order must carry the one chosen
    code = p.coupon("10")
    order = p.completed_order(
        buyer, cart, "pm_card_visa", shipping_rate_id=chosen["id"], coupon_code=code
    )
    subtotal, discount = money(order["subtotal"]), money(order["discount_amount"])
    shipping, tax = money(order["shipping_amount"]), money(order["tax_amount"])
    total = money(order["total_amount"])
    print(
        f"   order {order['order_number']}: subtotal {subtotal} - discount {discount} "
        f"+ shipping {shipping} + tax {tax} = total {total}"
    )
    check(subtotal == Decimal("47.43"), "subtotal 2 x 19.99 + 7.45 = 47.43")
    check(discount == Decimal("4.74"), "10 % coupon: 4.74 (half-up)")
    check(shipping == money(chosen["amount"]), f"shipping is the chosen rate's {chosen['amount']}")
    lines_tax = sum(
        (
            california_tax(money(i["total_price"]) - money(i["discount_amount"]))
            for i in order["items"]
        ),
        Decimal(0),
    )
    want_tax = lines_tax + california_tax(shipping)
    check(tax == want_tax, f"tax at 7.25 % per line and on shipping: {want_tax}")
    check(
        total == subtotal - discount + shipping + tax,
        "total = subtotal - discount + shipping + tax",
    )
    intents = p.ledger(order["checkout_id"])
    print(f"   ledger: {[(i['status'], i['authorized'], i['captured']) for i in intents]}")
    check(len(intents) == 1 and intents[0]["captured"] == cents(total), "captured exactly total")


def rate_expired(p: Platform) -> None:
    """A rate the platform never quoted, or quoted for another address, is refused before
    anything starts."""
    buyer = p.buyer()
    cart = p.cart(buyer, [(p.variant("15.00", 5), 1)])
    elsewhere = {**US_ADDRESS, "city": "New York", "state": "NY", "postal_code": "10001"}
    other = _rates(p, buyer.headers, cart, elsewhere)[0]["id"]
    for rate_id, what in (
        (str(uuid.uuid4()), "an unknown rate"),
        (other, "another address's rate"),
    ):
        body = {
            "cart_id": cart,
            "shipping_address": US_ADDRESS,
            "payment": {"provider": "stripe", "payment_method": "pm_card_visa"},
            "shipping_rate_id": rate_id,
        }
        answer = p.call("POST", "/v1/checkouts", buyer.headers, json=body, key=str(uuid.uuid4()))
        refused = answer.status_code == 422 and answer.json().get("code") == "shipping_rate_expired"
        check(refused, f"{what}: 422 shipping_rate_expired")
    shown = p.ok("GET", f"/v1/carts/{cart}", buyer.headers)
    check(shown["status"] == "active", "the cart is untouched (active)")


def tax_down(p: Platform) -> None:
    """Stripe Tax down: the checkout fails `tax_unavailable` with nothing held."""
    buyer = p.buyer()
    variant = p.variant("22.00", 5)
    cart = p.cart(buyer, [(variant, 2)])
    code = p.coupon("10")
    p.tax_fault("error")
    try:
        checkout_id = p.start_checkout(buyer, cart, "pm_card_visa", coupon_code=code)
        ended = p.settled(buyer, checkout_id)
    finally:
        p.tax_fault("none")
    check(
        ended["status"] == "failed" and ended["failure"]["code"] == "tax_unavailable",
        "the checkout failed: tax_unavailable",
    )
    stock = p.stock(variant)
    print(f"   inventory: {stock}")
    check(stock["available"] == 5 and stock["reserved"] == 0, "all 5 units available again")
    shown = p.ok("GET", f"/v1/carts/{cart}", buyer.headers)
    check(shown["status"] == "active", "the cart is active again")
    coupon = p.ok("GET", f"/v1/coupons/{code}", p.operator)
    check(coupon["redeemed"] == 0, "the coupon is not redeemed")
    intents = p.ledger(checkout_id)
    print(f"   ledger: {intents}")
    check(all(i["captured"] == 0 for i in intents), "nothing captured at the provider")
