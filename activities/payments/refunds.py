"""Refunds asked for after the sale (an operator's partial refund, a return's): recorded against
what is left of the capture, then sent to the provider under the request's own key."""

from __future__ import annotations

from temporalio import activity

from activities.payments.activities import counts_unknown_statuses
from activities.payments.contract import (
    REQUEST_REFUND,
    SEND_REFUND,
    RefundRequestInput,
    RefundRequestResult,
    SendRefundInput,
)
from activities.shared import MoneyValue
from domains.payments import aftersale, refunds, service
from domains.payments.provider import PaymentProvider, ProviderRejected
from domains.payments.statuses import RefundPurpose, RefundRequestStatus
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.money import Money

log = get_logger(__name__)


def _result(view: refunds.RequestView) -> RefundRequestResult:
    request = view.request
    return RefundRequestResult(
        refund_id=request.id,
        order_id=request.order_id,
        amount=MoneyValue(amount=request.amount, currency=request.currency),
        status=view.status,
        provider_refund_id=request.provider_refund_id,
        failure_reason=view.refund.failure_reason if view.refund else request.failure_reason,
    )


class RefundActivities:
    """Activities on the `payments` task queue for refunds asked for after the sale."""

    def __init__(self, db: DomainDatabase, provider: PaymentProvider) -> None:
        self.db = db
        self.provider = provider

    @activity.defn(name=REQUEST_REFUND.name)
    async def request_refund(self, input: RefundRequestInput) -> RefundRequestResult:
        """Record the request against what is left of the capture (the same key again answers
        the first request); `refund_exceeds_captured`, `payment_not_captured`,
        `refund_currency_mismatch`, `idempotency_key_reused` record nothing."""
        ask = refunds.RefundAsk(
            order_id=input.order_id,
            amount=input.amount.money(),
            key=input.key,
            reason=input.reason,
            requested_by=input.requested_by,
            requester=(
                refunds.Requester(RefundPurpose(input.purpose), input.owner_id)
                if input.purpose is not None and input.owner_id is not None
                else None
            ),
            allocations=(
                [a.model_dump(mode="json") for a in input.allocations]
                if input.allocations is not None
                else None
            ),
        )
        async with self.db.begin() as session:
            row = await refunds.request_refund(session, ask)
            view = await refunds.request_view(session, row.id)
            result = _result(view)
        log.info(
            "payments.refund.requested",
            refund_id=str(result.refund_id),
            order_id=str(input.order_id),
            purpose=row.purpose,
            amount=str(ask.amount.amount),
            currency=ask.amount.currency,
        )
        return result

    @activity.defn(name=SEND_REFUND.name)
    @counts_unknown_statuses
    async def send_refund(self, input: SendRefundInput) -> RefundRequestResult:
        """Refund a recorded request at the provider under its key (a retried attempt sends the
        very same request, so the money moves once), then record the provider's refund. A
        refusal by the provider marks the request `rejected`: nothing moved."""
        async with self.db.begin() as session:
            view = await refunds.request_view(session, input.refund_id)
            if view.request.status != RefundRequestStatus.REQUESTED.value:
                return _result(view)
            intent_id = view.payment.provider_payment_id
            amount = Money(view.request.amount, view.request.currency)
            key, purpose = view.request.request_key, view.request.purpose
        if intent_id is None:
            return await self._rejected(input, "payment_has_no_intent")
        try:
            made = await self.provider.refund(intent_id, amount=amount, key=key, purpose=purpose)
        except ProviderRejected as exc:
            return await self._rejected(input, exc.reason)
        intent = await self.provider.retrieve(intent_id)
        async with self.db.begin() as session:
            view = await refunds.request_view(session, input.refund_id, lock=True)
            payment = await service.payment_for_checkout(
                session, view.payment.checkout_id, lock=True
            )
            await service.mirror_intent(session, payment, intent)
            await aftersale.record_refunds(
                session, payment, intent.refunds, ours=[made], ids={made: view.request.id}
            )
            await refunds.mark_sent(session, view.request, made)
            result = _result(await refunds.request_view(session, input.refund_id))
        log.info(
            "payments.refund.sent",
            refund_id=str(input.refund_id),
            provider_refund_id=made,
            status=result.status,
        )
        return result

    async def _rejected(self, input: SendRefundInput, reason: str) -> RefundRequestResult:
        async with self.db.begin() as session:
            view = await refunds.request_view(session, input.refund_id, lock=True)
            await refunds.mark_rejected(session, view.request, reason)
            result = _result(await refunds.request_view(session, input.refund_id))
        log.error("payments.refund.rejected", refund_id=str(input.refund_id), reason=reason)
        return result
