"""Wiring of the event consumers: which consumer feeds which domain's reactions, in which process.

The rules live in the domains (`domains/<d>/reactions.py`); the streams and subjects follow from
the events those reactions name. A consumer's name prefixes its durable JetStream consumers
(`<name>-DOMAIN_<PRODUCER>`): renaming one starts it over from the first event.

- `notifications` (notifications process): what the buyer is told; `notifications-after-sale`
  and `notifications-cancellations` came later and have durables of their own.
- `order-tracking` (orders process): shipment tracking moves the order to shipped/delivered.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.js import JetStreamContext
from temporalio.common import MetricMeter

from domains.notifications import reactions as notifications
from domains.orders import reactions as orders
from kit.consumer import EventConsumer, Reactions
from kit.db import DomainDatabase
from kit.relay import StreamLimits, ensure_stream

# Per domain process: consumer name -> the reactions it feeds (applied in that domain's database).
CONSUMERS: dict[str, dict[str, Reactions]] = {
    "notifications": {
        "notifications": notifications.reactions,
        "notifications-after-sale": notifications.after_sale_reactions,
        "notifications-cancellations": notifications.cancellation_reactions,
        "notifications-returns": notifications.return_reactions,
    },
    "orders": {
        "order-tracking": orders.reactions,
        "order-refunds": orders.refund_reactions,
    },
}


async def consumers_for(
    domain: str,
    db: DomainDatabase,
    js: JetStreamContext,
    *,
    max_deliver: int = 10,
    meter: MetricMeter | None = None,
    limits: StreamLimits | None = None,
    on_applied: Callable[[], None] | None = None,
) -> list[EventConsumer]:
    """The consumers a domain's process runs (their streams created first if missing, with
    `limits`); an event whose reaction still fails at its `max_deliver`th delivery is
    dead-lettered; `on_applied` is called after each event a consumer applied."""
    consumers = []
    for name, reactions in CONSUMERS.get(domain, {}).items():
        for subscription in reactions.subscriptions():
            await ensure_stream(js, subscription.domain, limits)
        consumer = EventConsumer(
            name, db, js, reactions, max_deliver=max_deliver, meter=meter, on_applied=on_applied
        )
        consumers.append(consumer)
    return consumers
