"""Provider webhooks: payments (verified, deduplicated, turned into workflow signals) and the
carrier's tracking (verified, recorded once, announced through the shipping outbox)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import PlatformDep
from api.services import webhooks

router = APIRouter(tags=["webhooks"])

# Checked before the body is read: an unknown sender is 404 whatever it sends.
Provider = Annotated[str, Depends(webhooks.known_provider)]
Carrier = Annotated[str, Depends(webhooks.known_carrier)]


@router.post(
    "/v1/webhooks/payments/{provider}",
    responses={400: {"description": "bad signature or body"}},
)
async def receive(provider: Provider, request: Request, wired: PlatformDep) -> JSONResponse:
    """A Stripe event: `Stripe-Signature` verified over the raw body, recorded once per event id,
    delivered to the checkout named in the intent's `metadata.checkout_id`.

    Duplicates (same event id), events for unknown intents and event types the platform does not
    act on answer 200 without a signal; a bad or stale signature answers 400 and records nothing;
    a delivery the workflow could not take answers 5xx, so Stripe sends the event again.
    """
    body = await request.body()
    receipt = await webhooks.receive_payment(wired, provider, request.headers, body)
    return JSONResponse(receipt.model_dump())


@router.post(
    "/v1/webhooks/carriers/{carrier}",
    responses={400: {"description": "bad signature or body"}},
)
async def receive_tracking(carrier: Carrier, request: Request, wired: PlatformDep) -> JSONResponse:
    """EasyPost's tracker events (`tracker.updated`): `X-Hmac-Signature` verified over the raw
    body with the `easypost` package, recorded once per event id; only `easypost` is known.

    The shipment moves forward and its outbox announces it (`shipment.in_transit`, ...,
    `shipment.delivered`); the order follows through the order-tracking consumer.
    """
    body = await request.body()
    receipt = await webhooks.receive_tracking(wired, carrier, request.headers, body)
    return JSONResponse(receipt.model_dump())
