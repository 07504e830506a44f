"""After a checkout: every outbox drains, and the buyer is told, exactly once per event."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from kit.settings import DOMAINS
from tests.platform import Platform

pytestmark = pytest.mark.timeout(120)


async def _backlog(platform: Platform) -> dict[str, int]:
    counts = {}
    for domain in DOMAINS:
        if domain == "accounts":
            continue  # relayed by `just up`'s relay process, not by the test platform
        async with platform.databases[domain].begin() as session:
            counts[domain] = int(
                await session.scalar(
                    text("SELECT count(*) FROM domain_outbox_events WHERE NOT processed")
                )
                or 0
            )
    return counts


async def _notifications(platform: Platform, user_id: uuid.UUID) -> list[tuple[str, str]]:
    async with platform.databases["notifications"].begin() as session:
        rows = await session.execute(
            text("SELECT type, status FROM notifications WHERE user_id = :u ORDER BY type"),
            {"u": user_id},
        )
        return [(r.type, r.status) for r in rows]


async def test_a_completed_checkout_drains_every_outbox_and_notifies_the_buyer(
    platform: Platform,
) -> None:
    checkout, handle = await platform.checkout()
    assert (await handle.result()).status == "completed"

    expected = [
        ("order_confirmed", "sent"),
        ("payment_captured", "sent"),
        ("shipment_created", "sent"),
    ]
    for _ in range(300):
        backlog = await _backlog(platform)
        if (
            not any(backlog.values())
            and await _notifications(platform, checkout.user_id) == expected
        ):
            break
        await asyncio.sleep(0.1)
    assert await _backlog(platform) == dict.fromkeys(backlog, 0)
    assert await _notifications(platform, checkout.user_id) == expected
    mail = list((platform.settings.data_dir / "outbox-mail").glob("*.json"))
    assert len(mail) >= 3


async def test_a_failed_checkout_tells_the_buyer(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_declined")
    assert (await handle.result()).status == "failed"
    expected = [("checkout_failed", "sent")]
    for _ in range(300):
        if await _notifications(platform, checkout.user_id) == expected:
            break
        await asyncio.sleep(0.1)
    assert await _notifications(platform, checkout.user_id) == expected


async def test_a_redelivered_event_is_applied_once(platform: Platform) -> None:
    from datetime import UTC, datetime

    from kit.consumer import Envelope, EventConsumer
    from workers.consumers import CONSUMERS

    consumer = EventConsumer(
        "notifications",
        platform.databases["notifications"],
        None,  # type: ignore[arg-type]  # apply() never touches NATS
        CONSUMERS["notifications"]["notifications"],
    )
    user_id = uuid.uuid4()
    event = Envelope(
        id=uuid.uuid4(),
        domain="checkout",
        aggregate_type="checkout",
        aggregate_id=uuid.uuid4(),
        event_type="checkout.expired",
        seq=1,
        occurred_at=datetime.now(UTC),
        payload={
            "checkout_id": str(uuid.uuid4()),
            "user_id": str(user_id),
            "failure_code": "payment_timeout",
        },
    )

    # The relay crashed after publishing: the same event arrives twice.
    assert await consumer.apply(event) is True
    assert await consumer.apply(event) is False

    rows = await _notifications(platform, user_id)
    assert [kind for kind, _ in rows] == ["checkout_expired"]


async def test_every_consumer_keeps_its_durables_and_subject_filters() -> None:
    """Existing durable consumers resume only if their names and filters stay what they were."""
    from workers.consumers import CONSUMERS

    wiring = {
        name: [(s.stream, list(s.subjects)) for s in reactions.subscriptions()]
        for consumers in CONSUMERS.values()
        for name, reactions in consumers.items()
    }
    assert wiring == {
        "notifications": [
            ("DOMAIN_ORDERS", ["orders.order.order.created", "orders.order.order.paid"]),
            ("DOMAIN_PAYMENTS", ["payments.payment.payment.captured"]),
            (
                "DOMAIN_SHIPPING",
                ["shipping.shipment.shipment.created", "shipping.shipment.shipment.delivered"],
            ),
            (
                "DOMAIN_CHECKOUT",
                ["checkout.checkout.checkout.failed", "checkout.checkout.checkout.expired"],
            ),
        ],
        "order-tracking": [
            (
                "DOMAIN_SHIPPING",
                ["shipping.shipment.shipment.in_transit", "shipping.shipment.shipment.delivered"],
            )
        ],
        # Money after the sale came later: consumers of their own, so that the durables above
        # keep their filters.
        "notifications-after-sale": [
            (
                "DOMAIN_ORDERS",
                ["orders.order.order.partially_refunded", "orders.order.order.refunded"],
            ),
            ("DOMAIN_PAYMENTS", ["payments.payment.payment.dispute_opened"]),
        ],
        "notifications-cancellations": [("DOMAIN_ORDERS", ["orders.order.order.cancelled"])],
        "notifications-returns": [
            (
                "DOMAIN_ORDERS",
                [
                    f"orders.order_return.return.{status}"
                    for status in (
                        "requested",
                        "approved",
                        "rejected",
                        "received",
                        "refunded",
                        "needs_attention",
                    )
                ],
            )
        ],
        "order-refunds": [
            (
                "DOMAIN_PAYMENTS",
                [
                    "payments.payment.payment.refund_pending",
                    "payments.payment.payment.refund_succeeded",
                    "payments.payment.payment.refund_failed",
                    "payments.payment.payment.refund_canceled",
                ],
            )
        ],
    }
    assert {domain: list(consumers) for domain, consumers in CONSUMERS.items()} == {
        "notifications": [
            "notifications",
            "notifications-after-sale",
            "notifications-cancellations",
            "notifications-returns",
        ],
        "orders": ["order-tracking", "order-refunds"],
    }
