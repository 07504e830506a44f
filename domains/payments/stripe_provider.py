"""The payment provider through the official `stripe` package (async `StripeClient` on HTTPX).

In development and tests `api_base` is the sandbox, which speaks Stripe's wire protocol (its
objects validated against Stripe's by tests/sandbox/test_conformance.py); going live changes the
API base, the key and the webhook secret, nothing here.

Retries are Temporal's, not the SDK's (`max_network_retries=0`): an activity attempt is one
request, its timeout is ours, and every retry carries the same idempotency key. Stripe's errors
become the provider interface's three outcomes (domains/payments/provider.py):

- `CardError` (402): `ProviderRejected(card_error=True)` with the code, the decline code and
  the intent, back at `requires_payment_method`; the checkout ends `payment_declined`.
- `InvalidRequestError` (400, 404): `ProviderRejected`, never retried.
- `APIConnectionError`, `RateLimitError`, `APIError` (409, 5xx): `ProviderUnavailable`, retried.
- An intent whose status none of Stripe's known ones is (`UnknownIntentStatus`, a
  `ProviderUnavailable`): retried and counted, never read as another status.
- `IdempotencyError`, `AuthenticationError`, `PermissionError`: `ProviderMisuse`, retried and
  logged as the bug or misconfiguration it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar, cast

import stripe

from domains.payments.errors import ProviderUnavailable, UnknownIntentStatus
from domains.payments.provider import (
    COMPENSATION,
    PLATFORM,
    PURPOSE,
    REFUNDED_BY,
    Dispute,
    Intent,
    ProviderMisuse,
    ProviderRejected,
    Refund,
)
from domains.payments.statuses import INTENT_STATUSES
from kit.logging import get_logger
from kit.money import Money

log = get_logger(__name__)

T = TypeVar("T")

# Secret and restricted keys, test or live: what may call Stripe's API.
STRIPE_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
# What a restricted key (`rk_live_...`) needs, and nothing more: each of Stripe's permissions
# (as its errors name them, less the `rak_` prefix; write implies read) with the calls needing it.
RESTRICTED_KEY_PERMISSIONS: dict[str, tuple[str, ...]] = {
    # authorize (create + confirm), confirm again after a decline, capture, cancel; retrieve
    # and find_intent (search) read.
    "payment_intent_write": (
        "POST /v1/payment_intents",
        "POST /v1/payment_intents/:id/confirm",
        "POST /v1/payment_intents/:id/capture",
        "POST /v1/payment_intents/:id/cancel",
        "GET /v1/payment_intents/:id",
        "GET /v1/payment_intents/search",
    ),
    # refund (of a capture the checkout could not keep, or of a late capture).
    "refund_write": ("POST /v1/refunds",),
    # retrieve expands the intent's latest_charge, where Stripe keeps what was refunded.
    "charge_read": ("GET /v1/payment_intents/:id?expand[]=latest_charge",),
    # a dispute's reason, amount, status and deadline, re-read after its webhook.
    "dispute_read": ("GET /v1/disputes/:id",),
}
# Intents are re-read with their charge, where Stripe keeps what was refunded; the charge's
# refunds are listed only when asked for (Stripe no longer includes them by default).
EXPAND_CHARGE: stripe.params.PaymentIntentRetrieveParams = {
    "expand": ["latest_charge", "latest_charge.refunds"]
}


def _get(data: Mapping[str, Any] | None, *path: str) -> Any:
    node: Any = data
    for name in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(name)
    return node


def intent_of(data: Mapping[str, Any]) -> Intent:
    """A Stripe `payment_intent` object (as a dict) in the provider interface's terms;
    UnknownIntentStatus when its status is none of Stripe's known ones."""
    charge = data.get("latest_charge")
    # Stripe keeps refunds on the charge; the sandbox also reports them on the intent.
    refunded = _get(charge, "amount_refunded") if isinstance(charge, Mapping) else None
    if refunded is None:
        refunded = data.get("amount_refunded") or 0
    error = data.get("last_payment_error")
    status = str(data["status"])
    if status not in INTENT_STATUSES:
        raise UnknownIntentStatus(status, str(data["id"]))
    return Intent(
        id=str(data["id"]),
        status=status,
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        amount_capturable=int(data.get("amount_capturable") or 0),
        amount_received=int(data.get("amount_received") or 0),
        amount_refunded=int(refunded),
        redirect_url=_get(data, "next_action", "redirect_to_url", "url"),
        last_error_code=(_get(error, "decline_code") or _get(error, "code")) if error else None,
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        refunds=tuple(refund_of(r) for r in (_get(charge, "refunds", "data") or [])),
    )


def refund_of(data: Mapping[str, Any]) -> Refund:
    """A Stripe `refund` object (as a dict) in the provider interface's terms."""
    return Refund(
        id=str(data["id"]),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        status=str(data["status"]),
        reason=data.get("reason"),
        failure_reason=data.get("failure_reason"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def dispute_of(data: Mapping[str, Any]) -> Dispute:
    """A Stripe `dispute` object (as a dict) in the provider interface's terms."""
    due_by = _get(data, "evidence_details", "due_by")
    return Dispute(
        id=str(data["id"]),
        intent_id=str(data["payment_intent"]),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        reason=str(data.get("reason") or "general"),
        status=str(data["status"]),
        evidence_due_by=int(due_by) if due_by is not None else None,
    )


def _as_intent(resource: stripe.PaymentIntent) -> Intent:
    return intent_of(resource.to_dict())


def _rejection(exc: stripe.StripeError, *, card_error: bool) -> ProviderRejected:
    body = exc.json_body if isinstance(exc.json_body, Mapping) else {}
    found = body.get("error")
    error: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    intent = error.get("payment_intent")
    return ProviderRejected(
        # Stripe gives a generic invalid value no code: its type says what kind of refusal.
        str(error.get("code") or exc.code or error.get("type") or "unknown"),
        str(error.get("message") or exc.user_message or ""),
        status=exc.http_status or 400,
        decline_code=error.get("decline_code"),
        card_error=card_error,
        intent=intent_of(intent) if isinstance(intent, Mapping) and intent.get("id") else None,
    )


async def translated(operation: str, call: Awaitable[T]) -> T:
    """Await a Stripe call, its errors translated by class (module docstring)."""
    try:
        return await call
    except stripe.CardError as exc:
        raise _rejection(exc, card_error=True) from exc
    except stripe.IdempotencyError as exc:
        # Only a bug reuses a key for other parameters: the keys are derived per operation.
        log.error("payments.stripe.idempotency_error", operation=operation, error=str(exc))
        raise ProviderMisuse(f"{operation}: Stripe refused an idempotency key: {exc}") from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        log.error("payments.stripe.misconfigured", operation=operation, error=str(exc))
        raise ProviderMisuse(f"{operation}: Stripe refused the API key: {exc}") from exc
    except stripe.InvalidRequestError as exc:
        raise _rejection(exc, card_error=False) from exc
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        status = exc.http_status or type(exc).__name__
        raise ProviderUnavailable(f"{operation}: {status}") from exc


def stripe_client(
    api_key: str, api_base: str, timeout_s: float
) -> tuple[stripe.StripeClient, stripe.HTTPXClient]:
    """A `StripeClient` on its own HTTPX connection pool (the caller closes the pool), which never
    retries by itself: Temporal retries the activities, each call under the same idempotency key.
    A key that is not a secret or restricted key (a publishable one would fail every call) is
    refused at once, with ProviderMisuse."""
    if not api_key.startswith(STRIPE_KEY_PREFIXES):
        raise ProviderMisuse("STRIPE_API_KEY is not a Stripe secret or restricted key")
    http = stripe.HTTPXClient(timeout=timeout_s)
    client = stripe.StripeClient(
        api_key=api_key,
        base_addresses={"api": api_base.rstrip("/")},
        http_client=http,
        max_network_retries=0,
    )
    return client, http


class StripeProvider:
    """Stripe (or the sandbox) through `stripe.StripeClient`; owns its HTTPX connection pool."""

    name = "stripe"

    def __init__(
        self, *, api_key: str, api_base: str, timeout_s: float, return_url: str | None = None
    ) -> None:
        self._return_url = return_url
        self._client, self._http = stripe_client(api_key, api_base, timeout_s)
        self._intents = self._client.v1.payment_intents
        self._refunds = self._client.v1.refunds
        self._disputes = self._client.v1.disputes

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def authorize(
        self, amount: Money, *, payment_method: str, metadata: dict[str, str], key: str
    ) -> Intent:
        """Create and confirm a manual-capture card intent for `amount`."""
        # payment_method_types is sent as Stripe takes it, though this SDK's typed params omit
        # it: card only, so that no payment method needs a return URL to redirect to.
        params = cast(
            stripe.params.PaymentIntentCreateParams,
            {
                "amount": amount.to_minor_units(),
                "currency": amount.currency.lower(),
                "payment_method": payment_method,
                "payment_method_types": ["card"],
                "confirm": True,
                "capture_method": "manual",
                "metadata": metadata,
            },
        )
        if self._return_url is not None:
            # A card that must authenticate then answers next_action.redirect_to_url.
            params["return_url"] = self._return_url
        created = await translated(
            "authorize", self._intents.create_async(params, {"idempotency_key": key})
        )
        return _as_intent(created)

    async def confirm(self, intent_id: str, *, payment_method: str, key: str) -> Intent:
        """Confirm the same intent again with another payment method (after a decline)."""
        params: stripe.params.PaymentIntentConfirmParams = {"payment_method": payment_method}
        if self._return_url is not None:
            params["return_url"] = self._return_url
        confirmed = await translated(
            "confirm", self._intents.confirm_async(intent_id, params, {"idempotency_key": key})
        )
        return _as_intent(confirmed)

    async def retrieve(self, intent_id: str) -> Intent:
        """The intent as Stripe has it now, with its charge's refunds."""
        found = await translated("retrieve", self._intents.retrieve_async(intent_id, EXPAND_CHARGE))
        return _as_intent(found)

    async def find_intent(self, checkout_id: str) -> Intent | None:
        """The newest intent whose metadata names the checkout (Stripe's search, which may lag
        behind a creation by a minute, an hour in an outage; not offered to accounts in India)."""
        # A checkout id is a UUID: nothing in it can break out of the quoted value.
        query = f"metadata['checkout_id']:'{uuid.UUID(checkout_id)}'"
        found = await translated(
            "find_intent", self._intents.search_async({"query": query, "limit": 10})
        )
        intents = [_as_intent(intent) for intent in found.data]
        if len(intents) > 1:
            log.warning(
                "payments.stripe.several_intents",
                checkout_id=checkout_id,
                intents=[i.id for i in intents],
            )
        # One that holds or took money first: that is the one the checkout must account for.
        holding = [i for i in intents if i.status not in ("canceled", "requires_payment_method")]
        candidates = holding or intents
        return candidates[0] if candidates else None

    async def capture(self, intent_id: str, *, key: str) -> Intent:
        """Capture the whole authorized amount."""
        captured = await translated(
            "capture", self._intents.capture_async(intent_id, {}, {"idempotency_key": key})
        )
        return _as_intent(captured)

    async def cancel(self, intent_id: str, *, key: str) -> Intent:
        """Release the authorization (or an intent still waiting for the customer)."""
        canceled = await translated(
            "cancel", self._intents.cancel_async(intent_id, {}, {"idempotency_key": key})
        )
        return _as_intent(canceled)

    async def refund(
        self, intent_id: str, *, amount: Money | None, key: str, purpose: str = COMPENSATION
    ) -> str:
        """Refund captured money; without an amount whatever is left (a retry is identical).
        The refund's metadata says the platform made it, and why (`purpose`)."""
        params: stripe.params.RefundCreateParams = {
            "payment_intent": intent_id,
            "metadata": {REFUNDED_BY: PLATFORM, PURPOSE: purpose},
        }
        if amount is not None:
            params["amount"] = amount.to_minor_units()
        made = await translated(
            "refund", self._refunds.create_async(params, {"idempotency_key": key})
        )
        return made.id

    async def retrieve_dispute(self, dispute_id: str) -> Dispute:
        """The dispute as Stripe has it now."""
        found = await translated("retrieve_dispute", self._disputes.retrieve_async(dispute_id))
        return dispute_of(found.to_dict())
