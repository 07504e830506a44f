"""The whole price: a chosen shipping rate charged and bought, tax calculated before the
authorization, recorded after the capture and reversed by the undo; the tax service down
failing closed (nothing held) or opening with zero tax; an untaxed checkout without a rate
running exactly the commands it always ran."""

from __future__ import annotations

from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType

from activities.payments import contract as payments
from activities.shipping import contract as shipping
from tests.workflows.fast.harness import Run, Shop
from tests.workflows.fast.world import Fail
from workflows.checkout.contract import FailureCode

pytestmark = pytest.mark.timeout(60)

TAX_STEPS = {payments.CALCULATE_TAX.name, payments.COMMIT_TAX.name, payments.REVERSE_TAX.name}


async def _whole_price_markers(run: Run) -> int:
    """How many times the history records the `whole-price` patch."""
    history = await run.handle.fetch_history()
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and b"whole-price" in e.marker_recorded_event_attributes.SerializeToString()
    )


def _domain_calls(calls: list[str]) -> list[str]:
    return [name for name in calls if not name.startswith("checkout.")]


async def test_a_taxed_checkout_with_a_rate_charges_the_whole_price(shop: Shop) -> None:
    run = await shop.start(coupon=True, tax=True, shipping=Decimal("7.50"), tax_percent=Decimal(20))

    body = await run.handle.result()

    assert (body.status, body.failure) == ("completed", None), body
    # 2 x 19.99 = 39.98, 10 % off: 4.00; the line after its share 35.98 taxed 20 %: 7.20;
    # shipping 7.50 taxed 1.50. 39.98 - 4.00 + 7.50 + 8.70 = 52.18.
    assert body.order is not None
    assert body.order.total_amount == Decimal("52.18")
    assert run.world.total == Decimal("52.18")
    assert run.world.captured == Decimal("52.18")
    assert run.world.completed(coupon=True) == []
    assert run.world.tax == "committed"
    assert run.world.bought_rate == run.input.shipping_rate_id
    calls = _domain_calls(run.world.calls)
    # Tax before anything is authorized; recorded only once the money is captured.
    assert calls.index(payments.CALCULATE_TAX.name) < calls.index(payments.AUTHORIZE.name)
    assert calls.index(payments.CAPTURE.name) < calls.index(payments.COMMIT_TAX.name)
    assert payments.REVERSE_TAX.name not in calls
    assert await _whole_price_markers(run) == 1


async def test_without_tax_or_rate_nothing_new_runs(shop: Shop) -> None:
    run = await shop.start(tax_percent=Decimal(20))

    body = await run.handle.result()

    assert body.status == "completed"
    assert run.world.total == Decimal("39.98")
    assert not TAX_STEPS & set(run.world.calls)
    assert run.world.bought_rate is None  # the cheapest service, free to the buyer
    # Not even the patch's marker: the history is as long as before.
    assert await _whole_price_markers(run) == 0


async def test_a_rate_without_tax_charges_shipping_only(shop: Shop) -> None:
    run = await shop.start(shipping=Decimal("5.25"))

    body = await run.handle.result()

    assert body.status == "completed"
    assert run.world.captured == Decimal("45.23")  # 39.98 + 5.25
    assert not TAX_STEPS & set(run.world.calls)
    assert run.world.bought_rate == run.input.shipping_rate_id


async def test_tax_service_down_fails_closed_holding_nothing(shop: Shop) -> None:
    run = await shop.start(
        coupon=True,
        tax=True,
        shipping=Decimal("7.50"),
        script={payments.CALCULATE_TAX.name: Fail(FailureCode.TAX_UNAVAILABLE)},
    )

    body = await run.handle.result()

    assert (body.status, body.failure and body.failure.code) == ("failed", "tax_unavailable")
    assert run.world.given_back() == []
    assert run.world.intent is None  # nothing was authorized
    assert run.world.order is None  # no order was created
    assert await run.compensations() == ["release_inventory", "release_coupon", "unlock_cart"]


async def test_tax_service_down_opens_with_zero_tax(shop: Shop) -> None:
    run = await shop.start(
        tax=True, shipping=Decimal("7.50"), tax_percent=Decimal(20), tax_down_open=True
    )

    body = await run.handle.result()

    assert body.status == "completed"
    assert run.world.captured == Decimal("47.48")  # 39.98 + 7.50, no tax
    assert run.world.tax == "untaxed"
    assert payments.COMMIT_TAX.name not in run.world.calls  # nothing to record


async def test_a_failure_after_the_commit_reverses_the_tax(shop: Shop) -> None:
    run = await shop.start(
        tax=True,
        shipping=Decimal("7.50"),
        tax_percent=Decimal(20),
        script={shipping.CREATE.name: Fail(FailureCode.ADDRESS_UNSERVICEABLE)},
    )

    body = await run.handle.result()

    assert (body.status, body.failure and body.failure.code) == (
        "failed",
        "address_unserviceable",
    )
    assert run.world.given_back() == []
    assert run.world.tax == "reversed"
    assert run.world.refunded == run.world.captured == Decimal("56.98")  # 47.48 + 9.50 tax
    undo = await run.compensations()
    assert undo.index("reverse_tax") < undo.index("void_payment")
