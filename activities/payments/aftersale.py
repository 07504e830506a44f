"""Money after the sale: provider events about refunds and disputes, recorded from a re-read of
the provider (never the event's copy), and an operator's retry of a failed refund."""

from __future__ import annotations

from temporalio import activity

from activities.payments.activities import counts_unknown_statuses
from activities.payments.contract import (
    AFTER_SALE,
    RETRY_REFUND,
    AfterSaleInput,
    AfterSaleResult,
    RetryRefundInput,
    RetryRefundResult,
)
from domains.payments import aftersale, service
from domains.payments.errors import RefundExceedsCaptured, RefundNotFound
from domains.payments.provider import (
    NOTHING_LEFT_TO_REFUND,
    OPERATOR_RETRY,
    Dispute,
    Intent,
    PaymentProvider,
    ProviderRejected,
)
from domains.payments.statuses import RefundResolution, RefundStatus
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.money import Money

log = get_logger(__name__)


class AfterSaleActivities:
    """Activities on the `payments` task queue for refunds and disputes after the sale."""

    def __init__(self, db: DomainDatabase, provider: PaymentProvider) -> None:
        self.db = db
        self.provider = provider

    @activity.defn(name=AFTER_SALE.name)
    @counts_unknown_statuses
    async def after_sale(self, input: AfterSaleInput) -> AfterSaleResult:
        """Re-read the intent (with its refunds) and the named disputes, and record them: the
        payment's amounts, each refund with its status, each dispute. An intent that does not
        name this checkout, or a checkout without this payment, changes nothing."""
        intent = await self.provider.retrieve(input.intent_id)
        if intent.metadata.get("checkout_id") != str(input.checkout_id):
            log.warning("payments.after_sale.foreign_intent", checkout_id=str(input.checkout_id))
            return AfterSaleResult()
        found = [await self.provider.retrieve_dispute(d) for d in sorted(set(input.dispute_ids))]
        disputes = [d for d in found if d.intent_id == intent.id]
        return await self._record(input, intent, disputes)

    async def _record(
        self, input: AfterSaleInput, intent: Intent, disputes: list[Dispute]
    ) -> AfterSaleResult:
        async with self.db.begin() as session:
            payment = await service.find_payment(session, input.checkout_id)
            if payment is None or payment.provider_payment_id != intent.id:
                log.warning("payments.after_sale.no_payment", checkout_id=str(input.checkout_id))
                return AfterSaleResult()
            await service.mirror_intent(session, payment, intent)
            refunds = await aftersale.record_refunds(session, payment, intent.refunds)
            changed = [await aftersale.record_dispute(session, payment, d) for d in disputes]
        failed = [r for r in refunds if r.status == RefundStatus.FAILED.value]
        for refund in failed:
            log.error(
                "payments.refund.failed",
                checkout_id=str(input.checkout_id),
                refund_id=str(refund.id),
                failure_reason=refund.failure_reason,
            )
        return AfterSaleResult(
            refunds_changed=len(refunds),
            disputes_changed=sum(1 for c in changed if c is not None),
            refunds_failed=len(failed),
        )

    @activity.defn(name=RETRY_REFUND.name)
    @counts_unknown_statuses
    async def retry_refund(self, input: RetryRefundInput) -> RetryRefundResult:
        """Refund a failed refund's amount once more (its own idempotency key, so a retried
        activity sends the very same request), then record the new refund and mark the failed
        one `retried`. The provider refusing it for want of money left of the capture (e.g.
        refunded meanwhile in its dashboard) is RefundExceedsCaptured, any other refusal
        `provider_refused`: either way nothing moved and the failed refund still waits."""
        async with self.db.begin() as session:
            # Retried already (this activity's earlier attempt): the same key replays the refund.
            view = await aftersale.failed_refund(
                session, input.refund_id, settled_as=RefundResolution.RETRIED
            )
            intent_id = view.payment.provider_payment_id
            checkout_id = view.payment.checkout_id
            amount = Money(view.refund.amount, view.refund.currency)
            key = f"{view.refund.provider_refund_id}:retry"
        if intent_id is None:
            raise RefundNotFound(
                "the refund's payment has no intent", refund_id=str(input.refund_id)
            )
        try:
            made = await self.provider.refund(
                intent_id, amount=amount, key=key, purpose=OPERATOR_RETRY
            )
        except ProviderRejected as exc:
            if exc.code not in NOTHING_LEFT_TO_REFUND:
                raise
            raise RefundExceedsCaptured(
                "the provider has less left of the capture than the failed refund",
                refund_id=str(input.refund_id),
                requested=str(amount.amount),
                currency=amount.currency,
                provider_code=exc.code,
            ) from exc
        intent = await self.provider.retrieve(intent_id)
        async with self.db.begin() as session:
            payment = await service.payment_for_checkout(session, checkout_id, lock=True)
            await service.mirror_intent(session, payment, intent)
            await aftersale.record_refunds(session, payment, intent.refunds, ours=[made])
            await aftersale.settle_refund(
                session, input.refund_id, RefundResolution.RETRIED, input.note
            )
        status = next((r.status for r in intent.refunds if r.id == made), RefundStatus.PENDING)
        log.info("payments.refund.retried", refund_id=str(input.refund_id), new_refund=made)
        return RetryRefundResult(provider_refund_id=made, status=str(status))
