"""Property: whatever a buyer sends, every accepted checkout ends with the invariants true.

Hypothesis generates carts (prices with 0 included, quantities), coupons (percentages up to 100,
fixed amounts above the subtotal), payment methods (every sandbox behaviour the buyer can drive,
and unknown ones) and address text (control characters, very long, any Unicode). Each example goes
through the HTTP API of the real stack: refused with 422 and nothing recorded, or accepted and then
ended in a final status within a bounded time, its workflow run not Failed, and the invariants
(docs/reference/invariants.md) holding.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowExecutionStatus

from domains.payments.minimums import minimum_charge
from tests.api.conftest import caller
from tests.api.shop import Shop
from tests.api.test_routes import checkout_body
from tests.platform import Platform
from workflows.checkout.client import CheckoutClient
from workflows.checkout.contract import FINAL

pytestmark = pytest.mark.timeout(900)

# Behaviours a buyer drives on their own (tok_no_webhook waits the whole payment window: its
# expiry has its own test on the time-skipping server).
KNOWN = ["tok_visa", "tok_declined", "tok_insufficient_funds", "tok_3ds", "tok_3ds_fail"]
KNOWN += ["tok_async", "tok_flaky", "tok_capture_fails"]
PAYS = {"tok_visa", "tok_3ds", "tok_async", "tok_flaky"}
payment_methods = st.one_of(
    st.sampled_from(KNOWN),
    st.text(min_size=1, max_size=40).filter(lambda t: t not in KNOWN and t.strip() == t),
)
prices = st.one_of(
    st.just(Decimal("0.00")),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999.99"), places=2),
)
coupons = st.one_of(
    st.none(),
    st.tuples(st.just("percentage"), st.integers(min_value=1, max_value=100).map(str)),
    st.tuples(
        st.just("fixed"),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50000"), places=2).map(str),
    ),
)
# Any Unicode a person may write: every category but controls, surrogates and format characters.
printable = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cf")),
    min_size=1,
    max_size=120,
).filter(lambda t: t.strip() != "")
odd = st.one_of(
    st.text(min_size=1, max_size=60),
    st.sampled_from(["Ada\x00Lovelace", "\x1b[2J", "Zoë 山田 🚚", " ", "A" * 201, "\u202e"]),
)
# Mostly text a buyer could type, often text nobody should send.
address_text = st.one_of(printable, printable, printable, odd)


def _below_minimum(order: dict[str, Any] | None) -> bool:
    """Whether an order's total is positive but below the provider's minimum charge."""
    if order is None:
        return False
    minimum = minimum_charge(order["currency"])
    total = Decimal(order["total_amount"])
    return minimum is not None and 0 < total < minimum.amount


async def _drive(shop: Shop, checkout_id: str, within_s: float = 90) -> dict[str, Any]:
    """Follow a checkout to its end as the buyer would (approving 3-D Secure when asked)."""
    deadline = asyncio.get_running_loop().time() + within_s
    approved = False
    while True:
        body = await shop.status(checkout_id)
        if body["status"] in FINAL or body["step"] == "needs_attention":
            return body
        action = (body.get("payment") or {}).get("next_action")
        if action and not approved:
            async with httpx.AsyncClient() as browser:
                await browser.get(action["url"])
            approved = True
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"checkout {checkout_id} did not end: {body}")
        await asyncio.sleep(0.1)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    price=prices,
    quantity=st.integers(min_value=1, max_value=5),
    coupon=coupons,
    method=payment_methods,
    name=address_text,
    city=address_text,
)
async def test_every_accepted_checkout_ends_with_the_invariants_true(
    platform: Platform,
    price: Decimal,
    quantity: int,
    coupon: tuple[str, str] | None,
    method: str,
    name: str,
    city: str,
) -> None:
    async with httpx.AsyncClient(base_url=platform.api_url, timeout=30) as http:
        shop = Shop(http, caller(platform, "operator"), caller(platform, "customer"), platform)
        variant = await shop.variant(price=str(price), stock=quantity)
        cart_id = await shop.cart((variant, quantity))
        body = checkout_body(cart_id, method)
        body["shipping_address"].update(name=name, city=city)
        if coupon:
            body["coupon_code"] = await shop.coupon(*coupon)
        headers = {**shop.buyer.headers, "Idempotency-Key": uuid.uuid4().hex}

        answer = await http.post("/v1/checkouts", json=body, headers=headers)

        if answer.status_code == 422:
            event("refused: validation_error")
            assert answer.json()["code"] == "validation_error", answer.text
            mine = await http.get(f"/v1/carts/{cart_id}", headers=shop.buyer.headers)
            assert mine.json()["status"] == "active"
            return
        assert answer.status_code == 202, answer.text
        checkout_id = answer.json()["checkout_id"]
        done = await _drive(shop, checkout_id)
        event(f"ended: {done['status']} {(done.get('failure') or {}).get('code', '')}".strip())
        assert done["status"] in FINAL, done
        description = await CheckoutClient(platform.client).describe(uuid.UUID(checkout_id))
        assert description is not None
        for _ in range(50):  # the run closes right after the last record
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
            description = await CheckoutClient(platform.client).describe(uuid.UUID(checkout_id))
            assert description is not None
        assert description.status == WorkflowExecutionStatus.COMPLETED
        # Nothing to pay (free product, 100 % coupon, fixed coupon at or above the subtotal):
        # completed without a payment, whatever the payment method.
        free = done["order"] is not None and Decimal(done["order"]["total_amount"]) == 0
        if _below_minimum(done["order"]):
            # Refused before the provider: below the smallest amount Stripe charges.
            assert done["failure"]["code"] == "amount_below_minimum", done
        elif method in PAYS or free:
            assert done["status"] == "completed", done
        elif method not in KNOWN:
            assert done["failure"]["code"] == "payment_declined", done
        assert await shop.invariants(checkout_id) == []
