"""Checkouts as the API offers them: an idempotent start, the current status, a cancel."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.shared import MoneyValue
from api.deps import Platform
from api.errors import ApiError
from api.metrics import CHECKOUT_STARTS
from api.schemas import CheckoutAccepted, CheckoutIn, PaymentIn, PaymentRetryIn, StripePaymentIn
from domains.cart import service as carts
from domains.cart.errors import CartEmpty
from domains.checkout import service as sessions
from domains.checkout.errors import (
    AlreadyCaptured,
    CheckoutHasEnded,
    NotAwaitingPaymentMethod,
    NotWaitingForOperator,
)
from domains.checkout.models import CheckoutSession
from domains.shipping import quotes
from domains.shipping.errors import ShippingRateExpired
from kit.errors import Conflict
from kit.logging import get_logger
from workflows.checkout.client import CheckoutNotRunning, UpdateRefused
from workflows.checkout.contract import FINAL, CheckoutStatus, FailureCode
from workflows.checkout.models import Address, CheckoutInput, CheckoutStatusBody

log = get_logger(__name__)
T = TypeVar("T")

# What the workflow's refusals of a request mean to the API's caller (all 409).
REFUSALS: dict[str, type[Conflict]] = {
    FailureCode.ALREADY_CAPTURED: AlreadyCaptured,
    FailureCode.CHECKOUT_ENDED: CheckoutHasEnded,
    FailureCode.NOT_WAITING_FOR_OPERATOR: NotWaitingForOperator,
    FailureCode.NOT_AWAITING_PAYMENT_METHOD: NotAwaitingPaymentMethod,
}

MAX_KEY_LENGTH = 255
MAX_WAIT_S = 20  # how long a request may be held for the status to leave `processing`


def fingerprint(body: CheckoutIn) -> str:
    """The request's identity for idempotency: its parsed content, not its bytes or key order.

    `on_decline` counts only when it is not the default, and `shipping_rate_id` and an
    address's `state` only when given, so the requests of clients that never send them keep the
    identity they had before they existed."""
    content = body.model_dump(mode="json")
    if content.get("on_decline") == "fail":
        del content["on_decline"]
    if content.get("shipping_rate_id") is None:
        del content["shipping_rate_id"]
    for address in (content["shipping_address"], content.get("billing_address")):
        if address is not None and address.get("state") is None:
            del address["state"]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def update_id(
    action: str, checkout_id: uuid.UUID, idempotency_key: str | None, *scope: object
) -> str:
    """The id of a request to a running checkout (an update): Temporal decides an update once
    per id and answers a repeat with the first answer, so a call retried after a timeout gets
    the result of the one that took effect instead of a 409.

    The caller's `Idempotency-Key` when given (400 when blank or too long); else derived from the
    action, the checkout and `scope` (what the request answers, e.g. which wait)."""
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > MAX_KEY_LENGTH:
            raise ApiError(
                400,
                "invalid_idempotency_key",
                f"an Idempotency-Key header has 1-{MAX_KEY_LENGTH} characters",
            )
        return f"{action}:{idempotency_key}"
    return ":".join([action, str(checkout_id), *(str(part) for part in scope)])


def _admit(wired: Platform, user_id: uuid.UUID, idempotency_key: str | None) -> str:
    """The request's Idempotency-Key, once it is valid (400) and within the rate limit (429)."""
    if not idempotency_key or not idempotency_key.strip() or len(idempotency_key) > MAX_KEY_LENGTH:
        raise ApiError(
            400,
            "idempotency_key_required",
            f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters is required",
        )
    wait = wired.checkout_limiter.take(str(user_id), idempotency_key)
    if wait:
        CHECKOUT_STARTS.labels("rate_limited").inc()
        raise ApiError(
            429,
            "rate_limited",
            "too many checkouts started; slow down",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    return idempotency_key


async def _session(
    wired: Platform, user_id: uuid.UUID, key: str, body: CheckoutIn, request_hash: str
) -> tuple[CheckoutSession, bool]:
    """The checkout session for (user, key): found, or created once the cart is known to have
    items and the chosen shipping rate to be valid for it (an empty cart, another user's, or a
    rate unknown, expired or quoted elsewhere is refused before anything starts)."""
    async with wired.databases["checkout"].begin() as session:
        existing = await sessions.find_by_key(session, user_id, key)
    if existing is None:
        async with wired.databases["cart"].begin() as session:
            cart, items = await carts.get_cart(session, body.cart_id, user_id)
        if not items:
            raise CartEmpty("the cart has no items")
        await _chosen_rate(wired, body, currency=cart.currency)
    async with wired.databases["checkout"].begin() as session:
        return await sessions.begin(
            session,
            user_id=user_id,
            cart_id=body.cart_id,
            idempotency_key=key,
            request_hash=request_hash,
        )


async def _chosen_rate(
    wired: Platform, body: CheckoutIn, currency: str | None = None
) -> MoneyValue | None:
    """The price of the shipping rate the request names (None without one).

    Given the cart's `currency` (a new checkout), the rate must still be choosable: quoted for
    this cart, to this address, in the cart's currency, and not expired (else 422
    `shipping_rate_expired`). Without it (the same request again), the rate the checkout was
    admitted with is read as it is, expired or not: the admission decided; None once it is
    gone (quotes are deleted a day after they expire)."""
    if body.shipping_rate_id is None:
        return None
    async with wired.databases["shipping"].begin() as session:
        if currency is None:
            quote = await quotes.get_quote(session, body.shipping_rate_id)
        else:
            address = body.shipping_address.model_dump(mode="json")
            quote = await quotes.quote_for_checkout(
                session, body.shipping_rate_id, body.cart_id, datetime.now(UTC), address
            )
    if quote is None and currency is None:
        return None
    if quote is None or quote.cart_id != body.cart_id:
        raise ShippingRateExpired("no such shipping rate for this cart: quote again")
    if currency is not None and quote.currency != currency:
        raise ShippingRateExpired(
            f"the shipping rate is in {quote.currency}, the cart in {currency}: quote again",
            rate_id=str(quote.id),
        )
    return MoneyValue(amount=quote.amount, currency=quote.currency)


def _input(
    wired: Platform, row: CheckoutSession, body: CheckoutIn, shipping: MoneyValue | None
) -> CheckoutInput:
    """What the workflow runs on, fixed now."""
    billing = body.billing_address
    return CheckoutInput(
        checkout_id=row.id,
        user_id=row.user_id,
        cart_id=body.cart_id,
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        coupon_code=body.coupon_code,
        shipping_address=Address.model_validate(body.shipping_address.model_dump()),
        billing_address=Address.model_validate(billing.model_dump()) if billing else None,
        payment_provider="stripe",
        payment_token=method_of(body.payment),
        payment_timeout_s=int(wired.settings.checkout.payment_timeout.total_seconds()),
        payment_recheck_s=wired.settings.checkout.payment_recheck_s,
        on_decline=body.on_decline,
        shipping_rate_id=body.shipping_rate_id,
        shipping=shipping,
        tax=wired.settings.tax.provider != "none",
    )


def method_of(payment: PaymentIn) -> str:
    """The payment method a request names, in either shape.

    Both shapes pay through Stripe: the older `{provider: "sandbox", token}` is an alias whose
    `tok_*` names the sandbox takes as payment methods (its `pm_*` aliases)."""
    return payment.payment_method if isinstance(payment, StripePaymentIn) else payment.token


async def _started(checkout_id: uuid.UUID, start: Awaitable[T]) -> T | None:
    """`start`, a start of the checkout's workflow (or a join of the running one, never a
    second): None when the checkout ran and ended (ids are never reused: the answer is its
    recorded outcome); Temporal not answering is 503 `temporal_unavailable`."""
    try:
        return await start
    except WorkflowAlreadyStartedError:
        return None
    except RPCError as exc:
        log.error("checkouts.start_failed", checkout_id=str(checkout_id), reason=str(exc))
        raise ApiError(
            503, "temporal_unavailable", "try again with the same Idempotency-Key"
        ) from exc


async def start(
    wired: Platform,
    user_id: uuid.UUID,
    idempotency_key: str | None,
    body: CheckoutIn,
    wait_s: float = 0,
) -> CheckoutAccepted:
    """Start a checkout of the user's cart, once per Idempotency-Key.

    The same key and body again answer the same checkout (its current status); the same key with
    another body is 422. However many identical requests race, one checkout and one workflow.
    With `wait_s`, held up to that many seconds for the status to leave `processing`: the start
    and the wait are one request to Temporal.
    """
    key = _admit(wired, user_id, idempotency_key)
    row, created = await _session(wired, user_id, key, body, fingerprint(body))
    CHECKOUT_STARTS.labels("started" if created else "replayed").inc()
    if ended(row):
        # Never run again: a replay, days later, answers the recorded outcome and changes nothing
        # (the workflow's history may be gone by now; the id would be free to reuse).
        return CheckoutAccepted(checkout_id=row.id, status=row.status)
    shipping = await _chosen_rate(wired, body)
    if body.shipping_rate_id is not None and shipping is None:
        # The same request again, long after it was admitted: its checkout runs (or ran) on the
        # rate it was admitted with, which is gone now; answer what is recorded.
        log.warning("checkouts.replay_rate_gone", checkout_id=str(row.id))
        return CheckoutAccepted(checkout_id=row.id, status=(await status_of(wired, row)).status)
    checkout = _input(wired, row, body, shipping)
    if wait_s > 0:
        deadline = time.monotonic() + wait_s
        wait = timedelta(seconds=wait_s)
        settled = await _started(row.id, wired.checkouts.start_and_wait(checkout, wait))
        if settled is None:
            settled = await _hold(wired, row.id, None, deadline)
        return CheckoutAccepted(checkout_id=row.id, status=settled.status)
    await _started(row.id, wired.checkouts.start(checkout))
    if created:
        # Just started: querying would cost a workflow task on the worker to learn "processing".
        return CheckoutAccepted(checkout_id=row.id, status=CheckoutStatus.PROCESSING.value)
    current = await status_of(wired, row)
    return CheckoutAccepted(checkout_id=row.id, status=current.status)


def ended(row: CheckoutSession) -> bool:
    """Whether the checkout database records the checkout as ended."""
    return CheckoutStatus(row.status) in FINAL


async def status_of(wired: Platform, row: CheckoutSession) -> CheckoutStatusBody:
    """The status body as the checkout database records it: no workflow task per read.

    The workflow records it whenever it changes in a way a buyer acts on (requires_action with
    its link, back to processing, the end: exact), and a step once it has lasted a second (a
    faster step shows with the next record); see `workflows/checkout/progress.py`.
    """
    return CheckoutStatusBody.of_record(row)


async def session_of(
    wired: Platform, checkout_id: uuid.UUID, owner: uuid.UUID | None
) -> CheckoutSession:
    """A checkout's session; `owner` restricts it to its buyer (None: an operator)."""
    async with wired.databases["checkout"].begin() as session:
        return await sessions.get_session(session, checkout_id, owner)


async def status(
    wired: Platform, checkout_id: uuid.UUID, owner: uuid.UUID | None, wait_s: float = 0
) -> CheckoutStatusBody:
    """A checkout's current status, for its buyer or an operator (404 for anybody else).

    One statement: clients poll this, and a read of one row needs no transaction. With `wait_s`,
    a checkout still `processing` is held up to that many seconds until its status leaves
    `processing`: its workflow answers the moment the new status is recorded (an update), so
    the database is not polled."""
    row = await _read(wired, checkout_id, owner)
    current = await status_of(wired, row)
    if wait_s <= 0 or current.status != CheckoutStatus.PROCESSING:
        return current
    deadline = time.monotonic() + wait_s
    try:
        settled = await wired.checkouts.wait_settled(row.id, timedelta(seconds=wait_s))
    except (CheckoutNotRunning, RPCError) as exc:
        log.warning("checkouts.wait_unserved", checkout_id=str(row.id), reason=str(exc))
        settled = None
    return settled or await _hold(wired, row.id, owner, deadline)


async def _hold(
    wired: Platform, checkout_id: uuid.UUID, owner: uuid.UUID | None, deadline: float
) -> CheckoutStatusBody:
    """The status once the workflow gave no answer: at once when the wait timed out or the
    status is recorded already; else (the workflow refused the wait: an operator must act
    first, or enough clients wait) held until `deadline` and read again."""
    current = await status_of(wired, await _read(wired, checkout_id, owner))
    left = deadline - time.monotonic()
    if current.status != CheckoutStatus.PROCESSING or left <= 0:
        return current
    await asyncio.sleep(left)
    return await status_of(wired, await _read(wired, checkout_id, owner))


async def _read(
    wired: Platform, checkout_id: uuid.UUID, owner: uuid.UUID | None
) -> CheckoutSession:
    async with sessions.autocommit(wired.databases["checkout"]) as session:
        return await sessions.get_session(session, checkout_id, owner)


async def asked(checkout_id: uuid.UUID, request: Awaitable[T]) -> T:
    """A request to a running checkout's workflow: its refusals as 409s with their codes."""
    try:
        return await request
    except UpdateRefused as exc:
        raise REFUSALS.get(exc.code, Conflict)(exc.message) from exc
    except CheckoutNotRunning as exc:
        raise CheckoutHasEnded("the checkout's workflow is not running") from exc
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        # Temporal, or the checkout's worker, did not answer in time: the same request may be
        # sent again (updates are decided once, in the workflow).
        log.error("checkouts.temporal_unavailable", checkout_id=str(checkout_id), reason=str(exc))
        raise ApiError(503, "temporal_unavailable", "try again") from exc


async def running_session(
    wired: Platform, checkout_id: uuid.UUID, owner: uuid.UUID | None
) -> CheckoutSession:
    """A checkout's session while it runs: 409 `checkout_ended` once it has ended."""
    row = await session_of(wired, checkout_id, owner)
    if ended(row):
        raise CheckoutHasEnded(f"the checkout has ended ({row.status})")
    return row


async def cancel(
    wired: Platform,
    checkout_id: uuid.UUID,
    owner: uuid.UUID | None,
    idempotency_key: str | None = None,
) -> CheckoutAccepted:
    """The buyer's cancel: 202 only when it will be honoured (the checkout then ends
    `cancelled`, nothing charged); 409 `already_captured` once the capture has started, 409
    `checkout_ended` after the end. The workflow decides, atomically."""
    request = update_id("cancel", checkout_id, idempotency_key)
    row = await running_session(wired, checkout_id, owner)
    if not await asked(row.id, wired.checkouts.request_cancel(row.id, request)):
        raise AlreadyCaptured("the payment is captured; the checkout can no longer be cancelled")
    return CheckoutAccepted(checkout_id=row.id, status=CheckoutStatus.PROCESSING.value)


async def retry_payment(
    wired: Platform,
    checkout_id: uuid.UUID,
    owner: uuid.UUID | None,
    body: PaymentRetryIn,
    idempotency_key: str | None = None,
) -> CheckoutAccepted:
    """The buyer's next payment method after a decline: 202 once the checkout (waiting at
    `requires_payment_method`) has taken it, the same intent then confirmed with it; 409
    `checkout_not_awaiting_payment_method` at any other time, `checkout_ended` after the end.

    With an Idempotency-Key, the same request again answers the first one's result; without
    one, a repeat after it was taken is a 409 (the checkout no longer waits)."""
    request = update_id("payment", checkout_id, idempotency_key) if idempotency_key else None
    row = await running_session(wired, checkout_id, owner)
    await asked(row.id, wired.checkouts.retry_payment(row.id, method_of(body.payment), request))
    return CheckoutAccepted(checkout_id=row.id, status=CheckoutStatus.PROCESSING.value)
