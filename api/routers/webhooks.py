"""Provider webhooks: payments (verified, deduplicated, turned into workflow signals) and
carrier tracking (verified, recorded once, announced through the shipping outbox)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import PlatformDep
from api.errors import ApiError
from api.metrics import WEBHOOK_VERIFICATIONS
from domains.checkout import service as checkouts
from domains.checkout.errors import CheckoutNotFound
from domains.checkout.models import CheckoutStatus
from domains.payments import service as payments
from domains.shipping import service as shipping
from domains.shipping.errors import ShipmentNotFound
from domains.shipping.models import ShipmentStatus
from kit.logging import get_logger
from kit.webhooks import WebhookVerificationError, verify
from tools.checkouts import workflow_id
from workflows.checkout import TASK_QUEUE, CheckoutWorkflow
from workflows.models import PaymentEvent, SettleInput
from workflows.reconcile import ReconcilePaymentWorkflow

log = get_logger(__name__)
router = APIRouter(tags=["webhooks"])

PROVIDERS = frozenset({"sandbox"})
# The statuses a checkout ends in.
ENDED = checkouts.FINAL


def _verified(source: str, secrets: list[str], request: Request, body: bytes) -> str:
    """The webhook id of a genuine, fresh delivery; 400 `invalid_signature` otherwise (counted)."""
    try:
        webhook_id = verify(secrets, dict(request.headers), body)
    except WebhookVerificationError as exc:
        WEBHOOK_VERIFICATIONS.labels(source, "rejected").inc()
        log.warning("webhooks.rejected", source=source, reason=str(exc))
        raise ApiError(400, "invalid_signature", "the webhook signature is not valid") from exc
    WEBHOOK_VERIFICATIONS.labels(source, "verified").inc()
    return webhook_id


def _checkout_of(intent: dict[str, Any]) -> uuid.UUID | None:
    raw = (intent.get("metadata") or {}).get("checkout_id")
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


@router.post(
    "/v1/webhooks/payments/{provider}",
    responses={400: {"description": "bad signature or body"}},
)
async def receive(provider: str, request: Request, wired: PlatformDep) -> JSONResponse:
    """Verify the Standard Webhooks signature over the raw body, record, signal the checkout.

    Duplicates (same `webhook-id`) and events for unknown intents answer 200 without a signal;
    a bad or stale signature answers 400 and records nothing.
    """
    if provider not in PROVIDERS:
        raise ApiError(404, "unknown_provider", f"no payment provider {provider!r}")
    body = await request.body()
    settings = wired.settings
    secrets = [settings.payment_webhook_secret.get_secret_value()]
    if settings.payment_webhook_secret_previous is not None:
        secrets.append(settings.payment_webhook_secret_previous.get_secret_value())
    webhook_id = _verified(f"payments:{provider}", secrets, request, body)
    try:
        event = json.loads(body)
        event_type = str(event["type"])
        intent = dict(event["data"]["object"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "invalid_event", "the webhook body is not an event") from exc

    checkout_id = _checkout_of(intent)
    async with wired.databases["payments"].begin() as session:
        new = await payments.record_webhook(
            session,
            provider=provider,
            webhook_id=webhook_id,
            event_type=event_type,
            intent_id=str(intent.get("id")) if intent.get("id") else None,
            checkout_id=checkout_id,
            payload=event,
        )
    if not new:
        return JSONResponse({"received": True, "duplicate": True})
    if checkout_id is None:
        log.warning("webhooks.unknown_intent", provider=provider, event_type=event_type)
        return JSONResponse({"received": True, "duplicate": False})
    handle = wired.temporal.get_workflow_handle(workflow_id(checkout_id))
    try:
        await handle.signal(
            CheckoutWorkflow.payment_event,
            PaymentEvent(id=webhook_id, type=event_type, intent=str(intent.get("id"))),
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise  # Temporal unreachable: a 5xx makes the provider redeliver
        await _after_the_end(wired, checkout_id, str(intent.get("id") or ""), event_type)
    return JSONResponse({"received": True, "duplicate": False})


async def _after_the_end(
    wired: PlatformDep, checkout_id: uuid.UUID, intent_id: str, event_type: str
) -> None:
    """An event for a checkout whose workflow has ended: release what the intent still holds."""
    async with wired.databases["checkout"].begin() as session:
        try:
            row = await checkouts.get_session(session, checkout_id, None)
        except CheckoutNotFound:
            log.warning("webhooks.unknown_checkout", checkout_id=str(checkout_id))
            return
        status = CheckoutStatus(row.status)
    if status not in ENDED:
        # Recorded as running, yet no workflow: never settle money on a guess. The event stays in
        # the inbox; the checkout's own steps re-read the intent anyway.
        log.warning("webhooks.checkout_not_running", checkout_id=str(checkout_id))
        return
    completed = status == CheckoutStatus.COMPLETED
    if not intent_id:
        return
    log.warning("webhooks.after_checkout_end", checkout_id=str(checkout_id), event_type=event_type)
    try:
        await wired.temporal.start_workflow(
            ReconcilePaymentWorkflow.run,
            # A completed checkout's capture pays its order: only dangling holds are released.
            SettleInput(
                checkout_id=checkout_id, intent_id=intent_id, refund_captured=not completed
            ),
            id=f"reconcile-{intent_id}",
            task_queue=TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except WorkflowAlreadyStartedError:
        pass


CARRIERS = frozenset({"sandbox"})


@router.post(
    "/v1/webhooks/carriers/{carrier}",
    responses={400: {"description": "bad signature or body"}},
)
async def receive_tracking(carrier: str, request: Request, wired: PlatformDep) -> JSONResponse:
    """A carrier's tracking event: verified like payment webhooks, recorded once per event id.

    The shipment moves forward and its outbox announces it (`shipment.in_transit`, ...,
    `shipment.delivered`); the order follows through the order-tracking consumer.
    """
    if carrier not in CARRIERS:
        raise ApiError(404, "unknown_carrier", f"no carrier {carrier!r}")
    body = await request.body()
    secret = wired.settings.carrier_webhook_secret.get_secret_value()
    event_id = _verified(f"carriers:{carrier}", [secret], request, body)
    try:
        event = json.loads(body)
        status = ShipmentStatus(event["data"]["status"])
        shipment_id = str(event["data"]["object"]["id"])
        occurred_at = datetime.fromisoformat(str(event["data"]["occurred_at"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "invalid_event", "the webhook body is not a tracking event") from exc
    try:
        async with wired.databases["shipping"].begin() as session:
            new = await shipping.record_tracking(
                session,
                carrier=carrier,
                carrier_shipment_id=shipment_id,
                provider_event_id=event_id,
                status=status,
                occurred_at=occurred_at,
            )
    except ShipmentNotFound:
        log.warning("webhooks.unknown_shipment", carrier=carrier)
        return JSONResponse({"received": True, "duplicate": False})
    return JSONResponse({"received": True, "duplicate": not new})
