"""Webhook intake: Stripe's payment events (verified, kept once in the payments inbox, delivered
to the checkout, settled after its end) and EasyPost's tracker events (verified, recorded once,
announced)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
from easypost.errors.general.signature_verification_error import SignatureVerificationError
from easypost.util import validate_webhook

from activities.payments.contract import SettleInput
from api.deps import Platform
from api.errors import ApiError
from api.metrics import STRIPE_API_VERSION_MISMATCHES, WEBHOOK_VERIFICATIONS
from api.schemas import WebhookReceipt
from api.services.checkouts import ended, session_of
from domains.checkout.errors import CheckoutNotFound
from domains.payments import service as payments
from domains.shipping import service as shipping
from domains.shipping.errors import ShipmentNotFound
from domains.shipping.statuses import TRACKER_STATUSES, ShipmentStatus
from kit.logging import get_logger
from kit.settings import Settings
from workflows.aftersale import AfterSaleEvent, AfterSaleStart
from workflows.aftersale_client import deliver_after_sale
from workflows.checkout.client import CheckoutNotRunning
from workflows.checkout.contract import CheckoutStatus
from workflows.checkout.models import PaymentEvent
from workflows.returns.client import ReturnClient

log = get_logger(__name__)

# How old a Stripe signature's timestamp may be (Stripe's own default tolerance).
TOLERANCE_S = 300
# A provider's events are taken at /v1/webhooks/payments/<provider>.
PAYMENT_PROVIDERS = frozenset({"stripe"})
CARRIERS = frozenset({"easypost"})
# The EasyPost events the platform acts on; others are acknowledged and ignored.
TRACKER_UPDATED = "tracker.updated"
EASYPOST_SIGNATURE = "X-Hmac-Signature"
# The Stripe events a checkout acts on (README, "Going live"); others are acknowledged, ignored, so
# that enabling more types at Stripe never turns into redeliveries.
CHECKOUT_EVENT_TYPES = frozenset(
    {
        "payment_intent.amount_capturable_updated",
        "payment_intent.payment_failed",
        "payment_intent.succeeded",
        "payment_intent.canceled",
        "charge.refunded",
    }
)
# The Stripe events about money after the sale (refunds, whoever made them, and disputes): they
# go to the intent's PaymentAfterSaleWorkflow whatever the checkout's state.
AFTER_SALE_EVENT_TYPES = frozenset(
    {
        "charge.refunded",
        "charge.refund.updated",
        "refund.failed",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
    }
)
PAYMENT_EVENT_TYPES = CHECKOUT_EVENT_TYPES | AFTER_SALE_EVENT_TYPES
# Objects that name their payment intent in `payment_intent` (an intent's own events carry it).
NAMES_ITS_INTENT = frozenset({"charge", "refund", "dispute"})


async def known_provider(provider: str) -> str:
    """A payment provider whose webhooks the platform takes (404 `unknown_provider` otherwise).
    A coroutine, as every dependency of the API: no worker thread per request."""
    if provider not in PAYMENT_PROVIDERS:
        raise ApiError(404, "unknown_provider", f"no payment provider {provider!r}")
    return provider


async def known_carrier(carrier: str) -> str:
    """A carrier whose tracking webhooks the platform takes (404 `unknown_carrier` otherwise)."""
    if carrier not in CARRIERS:
        raise ApiError(404, "unknown_carrier", f"no carrier {carrier!r}")
    return carrier


def _rejected(source: str, reason: str) -> ApiError:
    WEBHOOK_VERIFICATIONS.labels(source, "rejected").inc()
    log.warning("webhooks.rejected", source=source, reason=reason)
    return ApiError(400, "invalid_signature", "the webhook signature is not valid")


def _stripe_secrets(settings: Settings) -> list[str]:
    """The current signing secret, and the previous one while a rotation is under way."""
    secrets = [settings.stripe.webhook_secret.get_secret_value()]
    if settings.stripe.webhook_secret_previous is not None:
        secrets.append(settings.stripe.webhook_secret_previous.get_secret_value())
    return secrets


def verified_stripe_event(secrets: list[str], headers: Mapping[str, str], body: bytes) -> None:
    """Check `Stripe-Signature` over the raw body with the `stripe` package (300 s tolerance);
    400 `invalid_signature` unless one of `secrets` signed it (counted)."""
    source = "payments:stripe"
    header = headers.get("stripe-signature")
    if not header:
        raise _rejected(source, "no Stripe-Signature header")
    try:
        payload = body.decode("utf-8")  # Stripe signs UTF-8 JSON; anything else is not its
    except UnicodeDecodeError:
        raise _rejected(source, "the body is not UTF-8") from None
    reason = "no secret"
    for secret in secrets:
        try:
            # What stripe.Webhook.construct_event checks, without building an Event we discard.
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=TOLERANCE_S)
        except stripe.SignatureVerificationError as exc:
            reason = str(exc)
            continue
        WEBHOOK_VERIFICATIONS.labels(source, "verified").inc()
        return
    raise _rejected(source, reason)


@dataclass(frozen=True)
class IntentEvent:
    """What the platform reads of a Stripe event about a payment intent (or its charge)."""

    id: str
    type: str
    object: dict[str, Any]
    document: dict[str, Any]

    @classmethod
    def parse(cls, body: bytes) -> IntentEvent:
        """The event in a webhook body; 400 `invalid_event` when it is not one."""
        try:
            document = json.loads(body)
            event = cls(
                str(document["id"]),
                str(document["type"]),
                dict(document["data"]["object"]),
                document,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "invalid_event", "the webhook body is not an event") from exc
        if not event.id.strip():
            raise ApiError(400, "invalid_event", "the event has no id")
        return event

    @property
    def intent_id(self) -> str | None:
        """The provider's id of the payment intent (a charge, refund or dispute names it)."""
        if self.object.get("object") in NAMES_ITS_INTENT:
            value = self.object.get("payment_intent")
        else:
            value = self.object.get("id")
        return str(value) if isinstance(value, str) and value else None

    @property
    def checkout_id(self) -> uuid.UUID | None:
        """The checkout the intent was created for (its metadata), if it says."""
        raw = (self.object.get("metadata") or {}).get("checkout_id")
        try:
            return uuid.UUID(str(raw)) if raw else None
        except ValueError:
            return None


def check_api_version(event: IntentEvent) -> None:
    """Log and count an event of another Stripe API version than the pinned SDK's.

    The endpoint's version is chosen at Stripe (per webhook endpoint, or the account's default)
    and may differ from `stripe.api_version` after an upgrade on either side. The event is still
    taken when it parses: the fields the platform reads (id, type, the object's id, metadata and
    status) have been stable across versions, and the intent is re-read through the SDK anyway.
    """
    version = event.document.get("api_version")
    if isinstance(version, str) and version and version != stripe.api_version:
        STRIPE_API_VERSION_MISMATCHES.labels(version).inc()
        log.warning(
            "webhooks.stripe.api_version_mismatch",
            event_id=event.id,
            event_type=event.type,
            event_api_version=version,
            sdk_api_version=stripe.api_version,
        )


async def receive_payment(
    wired: Platform, provider: str, headers: Mapping[str, str], body: bytes
) -> WebhookReceipt:
    """Verify the signature over the raw body, record the event once, deliver it to the checkout.

    An event counts as delivered only once the workflow has it: the inbox row and the delivery
    commit together (the row stays locked while the workflow is signalled), so a failed signal
    leaves no row and the provider's redelivery (after our 5xx) delivers it again, while
    concurrent duplicates wait for the first and then answer 2xx without a second signal.
    Events for unknown intents and of types the platform does not act on are received without
    a signal; a bad or stale signature is 400 and records nothing.
    """
    verified_stripe_event(_stripe_secrets(wired.settings), headers, body)
    event = IntentEvent.parse(body)
    check_api_version(event)
    if event.type not in PAYMENT_EVENT_TYPES:
        log.info("webhooks.ignored_type", provider=provider, event_type=event.type)
        return WebhookReceipt(duplicate=False)
    async with wired.databases["payments"].begin() as session:
        checkout_id = event.checkout_id
        if checkout_id is None and event.intent_id is not None:
            # A charge's event, or an intent made elsewhere: whose intent is it, if ours?
            checkout_id = await payments.checkout_of_intent(session, event.intent_id)
        new = await payments.record_webhook(
            session,
            provider=provider,
            webhook_id=event.id,
            event_type=event.type,
            intent_id=event.intent_id,
            checkout_id=checkout_id,
            payload=event.document,
        )
        if not new:
            return WebhookReceipt(duplicate=True)
        if checkout_id is None or event.intent_id is None:
            log.warning("webhooks.unknown_intent", provider=provider, event_type=event.type)
            return WebhookReceipt(duplicate=False)
        if event.type in AFTER_SALE_EVENT_TYPES:
            await _after_sale(wired, checkout_id, event.intent_id, event)
        if event.type in CHECKOUT_EVENT_TYPES:
            await _deliver(wired, checkout_id, event)
    return WebhookReceipt(duplicate=False)


async def _after_sale(
    wired: Platform, checkout_id: uuid.UUID, intent_id: str, event: IntentEvent
) -> None:
    """Hand a refund or dispute event to the intent's after-sale workflow (started with it when
    none runs). A Temporal failure propagates: the inbox row rolls back, the provider redelivers."""
    object_id = event.object.get("id")
    await deliver_after_sale(
        wired.temporal,
        AfterSaleStart(checkout_id=checkout_id, intent_id=intent_id),
        AfterSaleEvent(
            id=event.id,
            type=event.type,
            object_id=object_id if isinstance(object_id, str) else None,
        ),
    )


async def _deliver(wired: Platform, checkout_id: uuid.UUID, event: IntentEvent) -> None:
    """Hand the event to the checkout's workflow, or settle it if the checkout has ended.

    Any other Temporal failure propagates: the transaction rolls back and the provider's
    redelivery tries again.
    """
    signal = PaymentEvent(id=event.id, type=event.type, intent=str(event.intent_id))
    try:
        await wired.checkouts.deliver_payment_event(checkout_id, signal)
    except CheckoutNotRunning:
        await _after_the_end(wired, checkout_id, event)


async def _after_the_end(wired: Platform, checkout_id: uuid.UUID, event: IntentEvent) -> None:
    """An event for a checkout whose workflow has ended: release what the intent still holds."""
    try:
        row = await session_of(wired, checkout_id, None)
    except CheckoutNotFound:
        log.warning("webhooks.unknown_checkout", checkout_id=str(checkout_id))
        return
    if not ended(row):
        # Recorded as running, yet no workflow: never settle money on a guess. The event stays in
        # the inbox; the checkout's own steps re-read the intent anyway.
        log.warning("webhooks.checkout_not_running", checkout_id=str(checkout_id))
        return
    if not event.intent_id:
        return
    log.warning("webhooks.after_checkout_end", checkout_id=str(checkout_id), event_type=event.type)
    # A completed checkout's capture pays its order: only dangling holds are released.
    await wired.checkouts.settle_after_end(
        SettleInput(
            checkout_id=checkout_id,
            intent_id=event.intent_id,
            refund_captured=row.status != CheckoutStatus.COMPLETED,
        )
    )


def _easypost_secrets(settings: Settings) -> list[str]:
    """The current webhook secret, and the previous one while a rotation is under way."""
    secrets = [settings.easypost.webhook_secret.get_secret_value()]
    previous = settings.easypost.webhook_secret_previous
    if previous is not None and previous.get_secret_value():
        secrets.append(previous.get_secret_value())
    return secrets


def verified_easypost_event(
    secrets: list[str], headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """The event of a genuine EasyPost webhook: `X-Hmac-Signature` checked over the raw body with
    the `easypost` package against each of `secrets`; 400 `invalid_signature` otherwise (counted),
    400 `invalid_event` for a genuine body that is not a JSON object."""
    source = "carriers:easypost"
    signature = headers.get(EASYPOST_SIGNATURE.lower()) or headers.get(EASYPOST_SIGNATURE)
    if not signature:
        raise _rejected(source, f"no {EASYPOST_SIGNATURE} header")
    for secret in secrets:
        try:
            # The package reads the header under its exact name.
            document = validate_webhook(body, {EASYPOST_SIGNATURE: signature}, secret)
        except SignatureVerificationError:
            continue
        except ValueError as exc:  # signed, yet not JSON
            raise ApiError(400, "invalid_event", "the webhook body is not an event") from exc
        WEBHOOK_VERIFICATIONS.labels(source, "verified").inc()
        if not isinstance(document, dict):
            raise ApiError(400, "invalid_event", "the webhook body is not an event")
        return document
    raise _rejected(source, "no secret matches the signature")


@dataclass(frozen=True)
class TrackingEvent:
    """An EasyPost `tracker.updated` event: where one shipment's parcel stands, and since when."""

    id: str
    shipment_id: str
    tracker_status: str
    occurred_at: datetime

    @classmethod
    def parse(cls, document: dict[str, Any]) -> TrackingEvent:
        """The event's tracker; 400 `invalid_event` when it is not one."""
        try:
            tracker = document["result"]
            details = tracker.get("tracking_details") or []
            when = details[-1]["datetime"] if details else tracker["updated_at"]
            event = cls(
                id=str(document["id"]),
                shipment_id=str(tracker["shipment_id"]),
                tracker_status=str(tracker["status"]),
                occurred_at=datetime.fromisoformat(str(when)),
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ApiError(400, "invalid_event", "the webhook body is not a tracker event") from exc
        if not event.id.strip() or tracker.get("object") != "Tracker":
            raise ApiError(400, "invalid_event", "the webhook body is not a tracker event")
        return event


async def receive_tracking(
    wired: Platform, carrier: str, headers: Mapping[str, str], body: bytes
) -> WebhookReceipt:
    """An EasyPost tracker event: verified with the `easypost` package, recorded once per event.

    The shipment moves forward and its outbox announces it (`shipment.in_transit`, ...,
    `shipment.delivered`); the order follows through the order-tracking consumer. Other event
    types, tracker statuses that move nothing, and return labels' trackers are acknowledged.
    """
    document = verified_easypost_event(_easypost_secrets(wired.settings), headers, body)
    if document.get("description") != TRACKER_UPDATED:
        log.info("webhooks.ignored_type", carrier=carrier, event_type=document.get("description"))
        return WebhookReceipt(duplicate=False)
    event = TrackingEvent.parse(document)
    status = TRACKER_STATUSES.get(event.tracker_status)
    if status is None:
        log.info("webhooks.ignored_status", carrier=carrier, status=event.tracker_status)
        return WebhookReceipt(duplicate=False)
    return await _record_tracking(wired, carrier, event, status)


async def _record_tracking(
    wired: Platform, carrier: str, event: TrackingEvent, status: ShipmentStatus
) -> WebhookReceipt:
    try:
        async with wired.databases["shipping"].begin() as session:
            new = await shipping.record_tracking(
                session,
                carrier=carrier,
                carrier_shipment_id=event.shipment_id,
                provider_event_id=event.id,
                status=status,
                occurred_at=event.occurred_at,
            )
    except ShipmentNotFound as exc:
        async with wired.databases["shipping"].begin() as session:
            purchase = await shipping.purchase_of(session, event.shipment_id)
        if purchase is not None and purchase.kind == "return":
            # A return label's parcel: the returns flow follows it, not the order's shipment.
            log.info("webhooks.return_tracking", carrier=carrier, status=status.value)
            if status == ShipmentStatus.DELIVERED:
                await _return_delivered(wired, purchase.key)
            return WebhookReceipt(duplicate=False)
        # Tracking can overtake the purchase's own record (the carrier answers the purchase,
        # then reports the parcel before our row is committed): refuse it unrecorded, so the
        # carrier redelivers it once the shipment exists, instead of acknowledging and losing it.
        log.warning("webhooks.unknown_shipment", carrier=carrier, status=status.value)
        raise ApiError(
            503,
            "shipment_not_yet_known",
            "no shipment with this id yet; deliver the event again later",
            headers={"Retry-After": "5"},
        ) from exc
    return WebhookReceipt(duplicate=not new)


async def _return_delivered(wired: Platform, purchase_key: str) -> None:
    """The carrier delivered a return label's parcel to the warehouse: the return (named by the
    purchase's key, `return:<return_id>`) is received, every unit restocked. A Temporal failure
    propagates (5xx: the carrier redelivers); a return that no longer runs ignores it."""
    try:
        return_id = uuid.UUID(purchase_key.removeprefix("return:"))
    except ValueError:
        log.warning("webhooks.return_tracking.unknown_key", key=purchase_key)
        return
    waiting = await ReturnClient(wired.temporal).carrier_delivered(return_id)
    log.info("webhooks.return_delivered", return_id=str(return_id), signalled=waiting)
