"""Payment steps of the checkout: authorize (compensated by void), re-read, capture.

Each provider call runs between two short transactions and carries an idempotency key derived
from the checkout, so a retry after a timeout replays the provider's answer instead of charging
again. Provider outages raise ProviderUnavailable and are retried by Temporal.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal, ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payments.contract import (
    AUTHORIZE,
    CAPTURE,
    CONFIRM,
    REFRESH,
    SETTLE_ENDED,
    VOID,
    AuthorizeInput,
    ConfirmInput,
    PaymentResult,
    SettleInput,
    VoidResult,
)
from activities.shared import CheckoutRef, MoneyValue, NextAction
from domains.payments import aftersale, service
from domains.payments.declines import (
    UNUSABLE_METHOD,
    UNUSABLE_METHOD_MESSAGE,
    buyer_code,
    buyer_error_type,
    buyer_message,
)
from domains.payments.errors import PaymentDeclined, ProviderUnavailable, UnknownIntentStatus
from domains.payments.minimums import check_minimum
from domains.payments.models import Payment, TransactionType
from domains.payments.provider import Intent, PaymentProvider, ProviderRejected
from domains.payments.statuses import PaymentStatus
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.money import Money

log = get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# Intents that still hold (or may still come to hold) money, or could still be confirmed, and
# are closed by a cancel.
CANCELLABLE = frozenset(
    {"requires_confirmation", "requires_action", "processing", "requires_capture"}
)
# A declined intent, cancelled by the undo of a checkout that took other methods after a decline.
DECLINED = frozenset({"requires_payment_method"})
# Counted by the payments worker (Prometheus, with the Temporal SDK's metrics), by status.
UNKNOWN_STATUS_METRIC = "payments_unknown_intent_status"


def counts_unknown_statuses(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An activity whose provider reported an unknown intent status: logged, counted, and
    re-raised so that Temporal retries it (it is a ProviderUnavailable)."""

    @functools.wraps(fn)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except UnknownIntentStatus as exc:
            log.error(
                "payments.intent_status.unknown",
                status=exc.status,
                intent_id=exc.intent_id,
                activity=activity.info().activity_type,
            )
            activity.metric_meter().create_counter(
                UNKNOWN_STATUS_METRIC, "provider intents with a status the platform does not know"
            ).add(1, {"status": exc.status})
            raise

    return counted


def _result(payment: Payment, intent: Intent) -> PaymentResult:
    failed = payment.status == PaymentStatus.FAILED.value
    return PaymentResult(
        status=payment.status,
        intent_id=intent.id,
        next_action=(
            NextAction(type="redirect_to_url", url=intent.redirect_url)
            if intent.redirect_url
            else None
        ),
        # What the buyer may be told; the payment keeps the issuer's own code for operators.
        error_code=buyer_code(payment.last_error_code),
        message=buyer_message(payment.last_error_code) if failed else None,
        error_type=buyer_error_type(payment.last_error_code) if failed else None,
    )


def _metadata(input: AuthorizeInput) -> dict[str, str]:
    return {"checkout_id": str(input.checkout_id), "order_id": str(input.order_id)}


def _authorize_request(input: AuthorizeInput) -> dict[str, object]:
    amount = input.amount.money()
    return {
        "amount": amount.to_minor_units(),
        "currency": amount.currency,
        # `token` is the payment method (named so since the first history; renaming would
        # change the recorded request hash of checkouts in flight).
        "token": input.token,
        "metadata": _metadata(input),
    }


class PaymentsActivities:
    """Activities on the `payments` task queue: the payments database and the provider."""

    def __init__(self, db: DomainDatabase, provider: PaymentProvider) -> None:
        self.db = db
        self.provider = provider

    async def _create_intent(self, input: AuthorizeInput) -> Intent:
        """Create (or, under the same key, replay) the authorization; ProviderRejected when the
        provider refuses the payment details. Under a key the provider may have forgotten (a
        retry days later), the intent an earlier attempt made is looked up and re-read first."""
        key = service.idempotency_key(input.checkout_id, "authorize")
        earlier = await self._made_before_the_key_expired(input, key)
        if earlier is not None:
            return earlier
        return await self.provider.authorize(
            input.amount.money(), payment_method=input.token, metadata=_metadata(input), key=key
        )

    async def _made_before_the_key_expired(self, input: AuthorizeInput, key: str) -> Intent | None:
        """The intent an earlier attempt made, when the provider may have forgotten the key."""
        async with self.db.begin() as session:
            age = await service.key_age(session, key)
        if age is None or age < service.KEY_MAY_HAVE_EXPIRED:
            return None  # the provider still replays its answer under the key
        found = await self.provider.find_intent(str(input.checkout_id))
        log.warning(
            "payments.authorize.key_may_have_expired",
            checkout_id=str(input.checkout_id),
            key_age_s=int(age.total_seconds()),
            found=found.id if found else None,
        )
        if found is None or found.metadata.get("checkout_id") != str(input.checkout_id):
            return None
        return await self.provider.retrieve(found.id)

    async def _refused(self, input: AuthorizeInput, refusal: ProviderRejected) -> Payment:
        """The provider refused the payment: nothing is held; the payment says why, with the
        failed intent when the provider made one (a declined card)."""
        key = service.idempotency_key(input.checkout_id, "authorize")
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, input.checkout_id, lock=True)
            if refusal.intent is None:
                return await service.record_refusal(session, payment, refusal.reason)
            return await service.apply_intent(
                session,
                payment,
                refusal.intent,
                key=key,
                kind=TransactionType.AUTHORIZE,
                succeeded=False,
                error_code=refusal.reason,
            )

    async def _authorized(
        self, checkout_id: uuid.UUID, intent: Intent, key: str, error_code: str | None = None
    ) -> PaymentResult:
        """Record what an authorization (or a confirmation with a new method) left the intent at,
        under its key, and answer it."""
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, checkout_id, lock=True)
            await service.apply_intent(
                session,
                payment,
                intent,
                key=key,
                kind=TransactionType.AUTHORIZE,
                succeeded=service.payment_status(intent) != PaymentStatus.FAILED,
                error_code=error_code,
            )
            return _result(payment, intent)

    async def _open(
        self, input: AuthorizeInput, operation: str, intent_id: str, key: str | None = None
    ) -> str:
        key = key or service.idempotency_key(input.checkout_id, operation)
        async with self.db.begin() as session:
            await service.open_call(session, key, {"intent": intent_id})
        return key

    @activity.defn(name=AUTHORIZE.name)
    @counts_unknown_statuses
    async def authorize_payment(self, input: AuthorizeInput) -> PaymentResult:
        """Authorize the total: authorized, requires_action, processing or failed.

        A total below the provider's minimum charge is refused first (AmountBelowMinimum, not
        retried): no payment row, no key and no intent exist, so nothing needs undoing.
        """
        key = service.idempotency_key(input.checkout_id, "authorize")
        amount = input.amount.money()
        check_minimum(amount)
        async with self.db.begin() as session:
            await service.open_call(session, key, _authorize_request(input))
            await service.ensure_payment(
                session,
                checkout_id=input.checkout_id,
                order_id=input.order_id,
                amount=amount,
                provider=input.provider,
            )
        try:
            intent = await self._create_intent(input)
        except ProviderRejected as exc:
            payment = await self._refused(input, exc)
            if exc.card_error and exc.intent is not None:
                # A declined card is an answer, not a fault: the workflow reads it as one.
                return _result(payment, exc.intent)
            raise ApplicationError(
                f"the provider refused the payment: {buyer_code(exc.reason)}",
                {"code": PaymentDeclined.code, "provider_code": exc.reason},
                type=PaymentDeclined.code,
                non_retryable=True,
            ) from exc
        return await self._authorized(input.checkout_id, intent, key)

    @activity.defn(name=CONFIRM.name)
    @counts_unknown_statuses
    async def confirm_payment(self, input: ConfirmInput) -> PaymentResult:
        """Confirm the checkout's intent again with a new payment method (after a decline).

        The same intent, never a second one: one payment per checkout. Each attempt has its key
        (`<checkout_id>:confirm:<attempt>`), so a retry replays the provider's answer. A declined
        card is an answer (status `failed`, with the buyer's error), not a fault, and so is a
        payment method the provider does not know (`payment_method_unusable`)."""
        key = service.idempotency_key(input.checkout_id, f"confirm:{input.attempt}")
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, input.checkout_id)
            intent_id = payment.provider_payment_id
            await service.open_call(
                session, key, {"intent": intent_id, "payment_method": input.payment_method}
            )
        if intent_id is None:
            raise ApplicationError("the payment has no intent yet", type="payment_not_authorized")
        refusal: ProviderRejected | None = None
        try:
            intent = await self.provider.confirm(
                intent_id, payment_method=input.payment_method, key=key
            )
        except ProviderRejected as exc:
            if exc.intent is not None:
                refusal, intent = exc, exc.intent
            elif exc.code == "resource_missing":
                # A payment method the provider does not know: the buyer may try another one.
                log.info("payments.confirm.unknown_method", checkout_id=str(input.checkout_id))
                return PaymentResult(
                    status=PaymentStatus.FAILED.value,
                    intent_id=intent_id,
                    message=UNUSABLE_METHOD_MESSAGE,
                    error_type=UNUSABLE_METHOD,
                )
            else:
                # The intent moved meanwhile (e.g. an earlier attempt's answer was lost): what
                # it is now decides.
                intent = await self.provider.retrieve(intent_id)
        return await self._authorized(
            input.checkout_id, intent, key, error_code=refusal.reason if refusal else None
        )

    @activity.defn(name=REFRESH.name)
    @counts_unknown_statuses
    async def refresh_payment(self, input: CheckoutRef) -> PaymentResult:
        """Re-read the intent from the provider (after a webhook) and record what it says."""
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, input.checkout_id)
            intent_id = payment.provider_payment_id
        if intent_id is None:
            raise ApplicationError("the payment has no intent yet", type="payment_not_authorized")
        intent = await self.provider.retrieve(intent_id)
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, input.checkout_id, lock=True)
            await service.mirror_intent(session, payment, intent)
            return _result(payment, intent)

    @activity.defn(name=CAPTURE.name)
    @counts_unknown_statuses
    async def capture_payment(self, input: CheckoutRef) -> PaymentResult:
        """Capture the authorized amount; `payment_declined` when the provider refuses."""
        key = service.idempotency_key(input.checkout_id, "capture")
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, input.checkout_id)
            intent_id = payment.provider_payment_id
            await service.open_call(
                session, key, {"intent": intent_id, "amount": str(payment.amount)}
            )
        assert intent_id is not None, "capture runs only after an authorization"
        declined: ProviderRejected | None = None
        try:
            intent = await self.provider.capture(intent_id, key=key)
        except ProviderRejected as exc:
            declined = exc
            intent = exc.intent or await self.provider.retrieve(intent_id)
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, input.checkout_id, lock=True)
            captured = intent.status == "succeeded"
            await service.apply_intent(
                session,
                payment,
                intent,
                key=key,
                kind=TransactionType.CAPTURE,
                succeeded=captured,
                error_code=declined.reason if declined and not captured else None,
            )
            result = _result(payment, intent)
        if not captured:
            code = declined.reason if declined else intent.status
            log.warning("payments.capture.declined", checkout_id=str(input.checkout_id), code=code)
            raise ApplicationError(
                "the provider declined the capture",
                {"code": PaymentDeclined.code, "provider_code": code},
                type=PaymentDeclined.code,
                non_retryable=True,
            )
        return result

    @activity.defn(name=VOID.name)
    @counts_unknown_statuses
    async def void_payment(self, input: AuthorizeInput) -> VoidResult:
        """Compensation of authorize: release the authorization, or refund what was captured.

        Reads the provider's current state first: a success that raced the compensation (a late
        webhook, an async authorization) is refunded, not kept. Nothing to undo is success.
        """
        async with self.db.begin() as session:
            payment = await service.find_payment(session, input.checkout_id)
            intent_id = payment.provider_payment_id if payment else None
        if payment is None:
            return VoidResult(action="nothing")
        if intent_id is None:
            # The authorization may have reached the provider with its answer lost: the same key
            # and request replay it (or create it, to be cancelled right away). Refused payment
            # details were never held: nothing to undo.
            try:
                intent = await self._create_intent(input)
            except ProviderRejected as exc:
                await self._refused(input, exc)
                return VoidResult(action="nothing")
        else:
            intent = await self.provider.retrieve(intent_id)

        cancellable = CANCELLABLE | (DECLINED if input.cancel_declined else frozenset())
        if intent.status in cancellable:
            key = await self._open(input, "void", intent.id)
            try:
                intent = await self.provider.cancel(intent.id, key=key)
            except ProviderRejected as exc:
                # It moved under us (e.g. captured meanwhile): look again on the next attempt.
                raise ProviderUnavailable(f"cancel refused: {exc.code}") from exc
            kind, action, refunded, ours = TransactionType.VOID, "canceled", None, []
        elif intent.status == "succeeded" and intent.amount_received > intent.amount_refunded:
            key = await self._open(input, "refund", intent.id, input.refund_key)
            remaining = intent.amount_received - intent.amount_refunded
            # No amount: "whatever is left", so a retry sends the very same request.
            ours = [await self.provider.refund(intent.id, amount=None, key=key)]
            intent = await self.provider.retrieve(intent.id)
            kind, action = TransactionType.REFUND, "refunded"
            refunded = Money.from_minor_units(remaining, intent.currency)
        else:
            async with self.db.begin() as session:
                locked = await service.payment_for_checkout(session, input.checkout_id, lock=True)
                await service.mirror_intent(session, locked, intent)
            return VoidResult(action="nothing")

        async with self.db.begin() as session:
            locked = await service.payment_for_checkout(session, input.checkout_id, lock=True)
            await service.apply_intent(session, locked, intent, key=key, kind=kind, amount=refunded)
            await aftersale.record_refunds(session, locked, intent.refunds, ours=ours)
        log.info("payments.compensated", checkout_id=str(input.checkout_id), action=action)
        return VoidResult(action=action, refunded=MoneyValue.of(refunded) if refunded else None)

    @activity.defn(name=SETTLE_ENDED.name)
    @counts_unknown_statuses
    async def settle_ended(self, input: SettleInput) -> VoidResult:
        """An event about a checkout that already ended: release or refund what the intent holds.

        A late authorization is cancelled and a late capture refunded, never kept: the checkout
        that would have used the money is gone. The intent is re-read, and only touched if it
        names this checkout.
        """
        intent = await self.provider.retrieve(input.intent_id)
        if intent.metadata.get("checkout_id") != str(input.checkout_id):
            log.warning("payments.settle.foreign_intent", checkout_id=str(input.checkout_id))
            return VoidResult(action="nothing")
        refunded: Money | None = None
        ours: list[str] = []
        if intent.status in CANCELLABLE:
            intent = await self.provider.cancel(intent.id, key=f"{intent.id}:late-void")
            action: Literal["canceled", "refunded"] = "canceled"
        elif (
            input.refund_captured
            and intent.status == "succeeded"
            and intent.amount_received > intent.amount_refunded
        ):
            refunded = Money.from_minor_units(
                intent.amount_received - intent.amount_refunded, intent.currency
            )
            ours = [
                await self.provider.refund(intent.id, amount=None, key=f"{intent.id}:late-refund")
            ]
            intent = await self.provider.retrieve(intent.id)
            action = "refunded"
        else:
            return VoidResult(action="nothing")
        async with self.db.begin() as session:
            payment = await service.find_payment(session, input.checkout_id)
            if payment is not None and payment.provider_payment_id == intent.id:
                await service.mirror_intent(session, payment, intent)
                await aftersale.record_refunds(session, payment, intent.refunds, ours=ours)
        log.warning("payments.settled_late", checkout_id=str(input.checkout_id), action=action)
        return VoidResult(action=action, refunded=MoneyValue.of(refunded) if refunded else None)
