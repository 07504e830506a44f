"""What a producer publishes, its consumers can read.

A consuming domain declares its own model of each event it reads (it may not import the
producer's); this test holds the two sides together: a renamed field, event or aggregate type
fails here rather than as rejected events in production.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel

from domains.checkout.service import CheckoutEnded
from domains.orders import events as orders
from domains.payments import aftersale
from domains.payments import events as payments
from domains.shipping import events as shipping
from kit.consumer import Envelope, Reactions
from kit.subjects import EventName
from workers.consumers import CONSUMERS


def _shipment(status: str) -> shipping.ShipmentChanged:
    return shipping.ShipmentChanged(
        shipment_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        checkout_id=uuid.uuid4(),
        carrier="sandbox",
        tracking_number="TRK-1",
        status=status,
    )


def _checkout(status: str) -> CheckoutEnded:
    return CheckoutEnded(
        checkout_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        status=status,
        order_id=None,
        order_number=None,
        failure_code="card_declined",
    )


def _refund(status: str) -> aftersale.RefundChanged:
    return aftersale.RefundChanged(
        refund_id=uuid.uuid4(),
        provider_refund_id="re_1",
        payment_id=uuid.uuid4(),
        checkout_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        amount=Decimal("5.00"),
        currency="EUR",
        status=status,
        origin="dashboard",
        failure_reason=None,
        refunded_total=Decimal("5.00"),
        captured_amount=Decimal("42.00"),
    )


def _order_status(to_state: str) -> orders.OrderStatusChanged:
    return orders.OrderStatusChanged(
        order_id=uuid.uuid4(),
        order_number="ORD-100001",
        user_id=uuid.uuid4(),
        from_state="paid",
        to_state=to_state,
        total_amount=Decimal("42.00"),
        refunded_amount=Decimal("5.00"),
        currency="EUR",
    )


def _return(to_state: str) -> orders.ReturnChanged:
    return orders.ReturnChanged(
        return_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        order_number="ORD-100001",
        user_id=uuid.uuid4(),
        from_state="requested",
        to_state=to_state,
        refund_amount=Decimal("8.86"),
        currency="EUR",
    )


# (producing domain, event type) -> the producer's aggregate type and a payload it publishes.
PUBLISHED: dict[tuple[str, str], tuple[str, BaseModel]] = {
    ("orders", "order.created"): (
        orders.AGGREGATE,
        orders.OrderCreated(
            order_id=uuid.uuid4(),
            order_number="ORD-100001",
            checkout_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            total_amount=Decimal("42.00"),
            currency="EUR",
        ),
    ),
    ("orders", "order.paid"): (
        orders.AGGREGATE,
        orders.OrderStatusChanged(
            order_id=uuid.uuid4(),
            order_number="ORD-100001",
            user_id=uuid.uuid4(),
            from_state="pending_payment",
            to_state="paid",
        ),
    ),
    ("payments", "payment.captured"): (
        payments.AGGREGATE,
        payments.PaymentChanged(
            payment_id=uuid.uuid4(),
            checkout_id=uuid.uuid4(),
            order_id=uuid.uuid4(),
            status="captured",
            amount=Decimal("42.00"),
            captured_amount=Decimal("42.00"),
            refunded_amount=Decimal("0.00"),
            currency="EUR",
            provider_payment_id="pi_1",
        ),
    ),
    **{
        ("payments", f"payment.refund_{status}"): (payments.AGGREGATE, _refund(status))
        for status in ("pending", "succeeded", "failed", "canceled")
    },
    ("payments", "payment.dispute_opened"): (
        payments.AGGREGATE,
        aftersale.DisputeChanged(
            dispute_id=uuid.uuid4(),
            provider_dispute_id="dp_1",
            payment_id=uuid.uuid4(),
            checkout_id=uuid.uuid4(),
            order_id=uuid.uuid4(),
            amount=Decimal("42.00"),
            currency="EUR",
            reason="fraudulent",
            status="needs_response",
            evidence_due_by=datetime.now(UTC),
        ),
    ),
    ("orders", "order.partially_refunded"): (orders.AGGREGATE, _order_status("partially_refunded")),
    ("orders", "order.refunded"): (orders.AGGREGATE, _order_status("refunded")),
    ("orders", "order.cancelled"): (orders.AGGREGATE, _order_status("cancelled")),
    **{
        ("orders", f"return.{status}"): (orders.RETURN_AGGREGATE, _return(status))
        for status in ("requested", "approved", "rejected", "received", "refunded")
    },
    ("orders", "return.needs_attention"): (
        orders.RETURN_AGGREGATE,
        _return("needs_attention"),
    ),
    ("shipping", "shipment.created"): (shipping.AGGREGATE, _shipment("label_created")),
    ("shipping", "shipment.in_transit"): (shipping.AGGREGATE, _shipment("in_transit")),
    ("shipping", "shipment.delivered"): (shipping.AGGREGATE, _shipment("delivered")),
    # The checkout service appends its events under the aggregate type "checkout".
    ("checkout", "checkout.failed"): ("checkout", _checkout("failed")),
    ("checkout", "checkout.expired"): ("checkout", _checkout("expired")),
}

CASES = [
    pytest.param(reactions, event, id=f"{consumer}:{event.event_type}")
    for consumers in CONSUMERS.values()
    for consumer, reactions in consumers.items()
    for event in reactions.events
]


@pytest.mark.parametrize(("reactions", "event"), CASES)
def test_a_consumer_reads_what_its_producer_publishes(
    reactions: Reactions, event: EventName
) -> None:
    assert (event.domain, event.event_type) in PUBLISHED, f"no producer publishes {event}"
    aggregate_type, payload = PUBLISHED[(event.domain, event.event_type)]
    assert event.aggregate_type == aggregate_type
    published = Envelope(
        id=uuid.uuid4(),
        domain=event.domain,
        aggregate_type=aggregate_type,
        aggregate_id=uuid.uuid4(),
        event_type=event.event_type,
        seq=1,
        occurred_at=datetime.now(UTC),
        payload=payload.model_dump(mode="json"),  # as `kit.outbox.append_event` stores it
    )

    assert reactions.bind(published) is not None  # raises InvalidEvent if a field does not fit
