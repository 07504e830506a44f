"""The platform's event consumers and the notification sender.

- `notifications`: order confirmed, payment captured, shipment created and delivered, checkout
  failed or expired become `notifications` rows; a sender delivers them with retries.
- `order-tracking` (in the orders worker): shipment events move the order to shipped/delivered.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession

from domains.notifications import service as notifications
from domains.notifications.models import Notification
from domains.orders import service as orders
from domains.orders.models import OrderStatus
from kit.consumer import Envelope, EventConsumer, NotYet, Subscription
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.relay import ensure_stream, stream_name
from kit.settings import Settings

log = get_logger(__name__)

SENDER_MAX_ATTEMPTS = 8


async def _notify(session: AsyncSession, event: Envelope) -> None:
    payload, kind = event.payload, event.event_type
    if kind == "order.created":
        await notifications.remember_recipient(
            session, uuid.UUID(payload["order_id"]), uuid.UUID(payload["user_id"])
        )
    elif kind == "order.paid":
        await notifications.notify(
            session,
            uuid.UUID(payload["user_id"]),
            "order_confirmed",
            {"order_id": payload["order_id"], "order_number": payload["order_number"]},
        )
    elif kind in ("payment.captured", "shipment.created", "shipment.delivered"):
        order_id = uuid.UUID(payload["order_id"])
        user_id = await notifications.recipient(session, order_id)
        if user_id is None:
            raise NotYet(f"order {order_id} not known yet")
        body = {"order_id": str(order_id)}
        if kind == "payment.captured":
            body |= {"amount": payload["captured_amount"], "currency": payload["currency"]}
        else:
            body |= {"carrier": payload["carrier"], "tracking_number": payload["tracking_number"]}
        await notifications.notify(session, user_id, kind.replace(".", "_"), body)
    elif kind in ("checkout.failed", "checkout.expired"):
        await notifications.notify(
            session,
            uuid.UUID(payload["user_id"]),
            kind.replace(".", "_"),
            {"checkout_id": payload["checkout_id"], "failure_code": payload["failure_code"]},
        )


NOTIFICATION_SUBSCRIPTIONS = [
    Subscription(stream_name("orders"), ["orders.order.order.created", "orders.order.order.paid"]),
    Subscription(stream_name("payments"), ["payments.payment.payment.captured"]),
    Subscription(
        stream_name("shipping"),
        ["shipping.shipment.shipment.created", "shipping.shipment.shipment.delivered"],
    ),
    Subscription(
        stream_name("checkout"),
        ["checkout.checkout.checkout.failed", "checkout.checkout.checkout.expired"],
    ),
]

# Carrier statuses that move an order forward.
TRACKING = {"in_transit": OrderStatus.SHIPPED, "delivered": OrderStatus.DELIVERED}


async def _track(session: AsyncSession, event: Envelope) -> None:
    target = TRACKING.get(event.payload.get("status", ""))
    if target is None:
        return
    order = await orders.order_for_checkout(
        session, uuid.UUID(event.payload["checkout_id"]), lock=True
    )
    if target == OrderStatus.DELIVERED and order.status == OrderStatus.FULFILLING:
        # Tracking may skip in_transit; the history still shows the order was shipped first.
        await orders.transition(session, order, OrderStatus.SHIPPED, "carrier")
    if OrderStatus(order.status) not in (OrderStatus.DELIVERED, OrderStatus.REFUNDED):
        await orders.transition(session, order, target, "carrier")


TRACKING_SUBSCRIPTIONS = [
    Subscription(
        stream_name("shipping"),
        ["shipping.shipment.shipment.in_transit", "shipping.shipment.shipment.delivered"],
    )
]


class DevSender:
    """Development delivery: a log line and a JSON file per message in DATA_DIR/outbox-mail."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, notification: Notification) -> None:
        """Write the message; raises on failure (the caller retries)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        document = {
            "id": str(notification.id),
            "user_id": str(notification.user_id),
            "type": notification.type,
            "payload": notification.payload,
        }
        path = self.directory / f"{notification.id}.json"
        await asyncio.to_thread(path.write_text, json.dumps(document, indent=2))
        log.info("notifications.sent", notification_id=str(notification.id), type=notification.type)


async def send_due(db: DomainDatabase, sender: DevSender) -> int:
    """One sender pass: deliver what is due, recording each attempt."""
    async with db.begin() as session:
        rows = await notifications.due(session)
        for row in rows:
            try:
                await sender.send(row)
                error = None
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            notifications.record_attempt(row, error, max_attempts=SENDER_MAX_ATTEMPTS)
        return len(rows)


async def run_sender(db: DomainDatabase, sender: DevSender, stop: asyncio.Event) -> None:
    """Send until `stop`."""
    while not stop.is_set():
        try:
            sent = await send_due(db, sender)
        except Exception:
            log.exception("notifications.sender_failed")
            sent = 0
        if not sent:
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass


async def consumers_for(
    domain: str, db: DomainDatabase, js: JetStreamContext, settings: Settings
) -> list[EventConsumer]:
    """The consumers a domain's process runs (streams declared first, idempotently)."""
    if domain == "notifications":
        for stream_domain in ("orders", "payments", "shipping", "checkout"):
            await ensure_stream(js, stream_domain)
        return [EventConsumer("notifications", db, js, NOTIFICATION_SUBSCRIPTIONS, _notify)]
    if domain == "orders":
        await ensure_stream(js, "shipping")
        return [EventConsumer("order-tracking", db, js, TRACKING_SUBSCRIPTIONS, _track)]
    return []
