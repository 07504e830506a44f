"""Tax steps of the checkout, on the payments queue: calculate (before the authorization),
commit (after the capture), reverse (refunds, returns, the compensation of a committed checkout).

Each call to the tax service carries an idempotency key derived from the checkout, and the
payments database keeps what the service answered (domains/payments/tax_records.py), so a retried
commit records one transaction and a retried reversal takes nothing back twice.

When the service cannot calculate (no answer, 5xx, a refused key) the activity raises and
Temporal retries it, up to TAX_MAX_ATTEMPTS attempts; on the last one TAX_ON_FAILURE decides:
`fail` ends the checkout with the non-retryable `tax_unavailable` (nothing is held yet), `open`
goes on with zero tax, logged (`tax.unavailable_opened`) and counted (`tax_fail_open_total`).
A definite refusal (an address the service cannot place) is `tax_unavailable` at once.
"""

from __future__ import annotations

import hashlib
import json

from temporalio import activity

from activities.payments.contract import (
    CALCULATE_TAX,
    COMMIT_TAX,
    REVERSE_TAX,
    CalculateTaxInput,
    LineTaxValue,
    ReverseTaxInput,
    TaxResultValue,
    TaxReversalResult,
)
from activities.shared import CheckoutRef, MoneyValue
from domains.payments import tax_records
from domains.payments.errors import ProviderUnavailable, TaxNotRecorded, TaxUnavailable
from domains.payments.models import TaxRecord
from domains.payments.provider import ProviderMisuse, ProviderRejected
from domains.payments.stripe_tax import StripeTaxProvider
from domains.payments.tax import (
    TaxableLine,
    TaxAddress,
    TaxProvider,
    TaxResult,
    TaxStatus,
    untaxed,
)
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.money import Money
from kit.settings import Settings, TaxSettings

log = get_logger(__name__)

FAIL_OPEN_METRIC = "tax_fail_open_total"
PROVIDER_NONE = "tax_provider_none"
# TAX_PROVIDER's value, and the recorded provider, of checkouts taxed by no service.
NO_PROVIDER = "none"


def tax_provider(settings: Settings) -> TaxProvider | None:
    """The tax service TAX_PROVIDER names (Stripe Tax reuses the Stripe settings); None for
    `none`."""
    if settings.tax.provider == NO_PROVIDER:
        return None
    return StripeTaxProvider(
        api_key=settings.stripe.api_key.get_secret_value(),
        api_base=settings.stripe.api_base,
        timeout_s=settings.stripe.timeout_s,
        tax_code=settings.tax.default_code,
    )


def _lines(result: TaxResult) -> list[LineTaxValue]:
    return [
        LineTaxValue(
            reference=line.reference, amount=MoneyValue.of(line.amount), tax=MoneyValue.of(line.tax)
        )
        for line in result.lines
    ]


def _reversed(reversal: TaxResult) -> TaxReversalResult:
    return TaxReversalResult(
        action="reversed",
        tax_reversed=MoneyValue.of(reversal.total_tax),
        lines=_lines(reversal),
        transaction_id=reversal.id,
    )


def _value(row: TaxRecord) -> TaxResultValue:
    result = tax_records.result_of(row)
    return TaxResultValue(
        status=row.status,
        lines=_lines(result),
        shipping_tax=MoneyValue.of(result.shipping_tax),
        total_tax=MoneyValue.of(result.total_tax),
        calculation_id=row.calculation_id,
        transaction_id=row.transaction_id,
        untaxed_reason=row.untaxed_reason,
    )


def _calculation_key(input: CalculateTaxInput) -> str:
    """One key per checkout and request: a retry replays, a changed cart calculates anew."""
    body = json.dumps(input.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return f"{input.checkout_id}:tax-calculate:{hashlib.sha256(body.encode()).hexdigest()[:16]}"


class TaxActivities:
    """Activities on the `payments` task queue: the payments database and the tax service."""

    def __init__(
        self, db: DomainDatabase, provider: TaxProvider | None, settings: TaxSettings
    ) -> None:
        self.db = db
        self.provider = provider
        self.settings = settings

    def _recording(self) -> TaxProvider:
        """The service that records and reverses a checkout's tax. An untaxed checkout never
        asks for one; with TAX_PROVIDER=none there is none to ask."""
        if self.provider is None:
            raise NotImplementedError("TAX_PROVIDER=none records no tax transaction")
        return self.provider

    @activity.defn(name=CALCULATE_TAX.name)
    async def calculate_tax(self, input: CalculateTaxInput) -> TaxResultValue:
        """The tax of each line and of the shipping; stored for the commit. A checkout whose
        tax is already recorded gets the recorded tax back."""
        async with self.db.begin() as session:
            row = await tax_records.find(session, input.checkout_id)
            if row is not None and row.status in (TaxStatus.COMMITTED, TaxStatus.REVERSED):
                return _value(row)
        lines = [TaxableLine(li.reference, li.amount.money(), li.quantity) for li in input.lines]
        shipping = input.shipping.money()
        reason: str | None = PROVIDER_NONE
        if self.provider is None:
            result = untaxed(input.currency, lines, shipping)
        else:
            result, reason = await self._calculate(self.provider, input, lines, shipping)
        async with self.db.begin() as session:
            row = await tax_records.record_calculation(
                session,
                input.checkout_id,
                provider=self.provider.name if self.provider else NO_PROVIDER,
                result=result,
                untaxed_reason=reason,
            )
            return _value(row)

    async def _calculate(
        self,
        provider: TaxProvider,
        input: CalculateTaxInput,
        lines: list[TaxableLine],
        shipping: Money,
    ) -> tuple[TaxResult, str | None]:
        given = input.address
        address = TaxAddress(given.country, given.state, given.postal_code, given.city, given.line1)
        try:
            result = await provider.calculate(
                input.currency, lines, shipping, address, key=_calculation_key(input)
            )
        except ProviderRejected as exc:
            log.warning(
                "tax.calculation.refused", checkout_id=str(input.checkout_id), code=exc.code
            )
            raise TaxUnavailable(
                "the tax service refused the calculation", provider_code=exc.reason
            ) from exc
        except (ProviderUnavailable, ProviderMisuse) as exc:
            attempt = activity.info().attempt
            if attempt < self.settings.max_attempts:
                raise  # a blip: Temporal retries
            if self.settings.on_failure == "fail":
                log.error("tax.unavailable", checkout_id=str(input.checkout_id), attempts=attempt)
                raise TaxUnavailable("the tax service is unavailable", attempts=attempt) from exc
            log.warning(
                "tax.unavailable_opened",
                checkout_id=str(input.checkout_id),
                attempts=attempt,
                error=str(exc),
            )
            activity.metric_meter().create_counter(
                FAIL_OPEN_METRIC, "checkouts that went on without tax because the service was down"
            ).add(1, {"provider": provider.name})
            return untaxed(input.currency, lines, shipping), "tax_unavailable"
        return result, None

    @activity.defn(name=COMMIT_TAX.name)
    async def commit_tax(self, input: CheckoutRef) -> TaxResultValue:
        """Record the checkout's calculation as a tax transaction (reference: the checkout id),
        once: a retry, or a second call, returns the recorded transaction."""
        async with self.db.begin() as session:
            row = await tax_records.find(session, input.checkout_id)
            if row is None:
                raise TaxNotRecorded("no tax was calculated for the checkout")
            if row.status != TaxStatus.CALCULATED or row.calculation_id is None:
                return _value(row)  # untaxed, or already recorded
            calculation_id = row.calculation_id
        transaction = await self._recording().commit(
            calculation_id,
            reference=str(input.checkout_id),
            key=f"{input.checkout_id}:tax-commit",
        )
        async with self.db.begin() as session:
            row = await tax_records.find(session, input.checkout_id, lock=True)
            assert row is not None
            if row.status == TaxStatus.CALCULATED:
                tax_records.record_commit(row, transaction)
                log.info(
                    "tax.committed",
                    checkout_id=str(input.checkout_id),
                    transaction_id=transaction.id,
                )
            return _value(row)

    @activity.defn(name=REVERSE_TAX.name)
    async def reverse_tax(self, input: ReverseTaxInput) -> TaxReversalResult:
        """Take back recorded tax, in full or in part, once per reversal key. Tax that was
        never recorded (not captured, untaxed) has nothing to take back."""
        key = f"{input.checkout_id}:{input.reversal_key}"
        async with self.db.begin() as session:
            done = await tax_records.find_reversal(session, key)
            row = await tax_records.find(session, input.checkout_id)
            if done is not None and row is not None:
                return _reversed(tax_records.reversal_result(done, row.currency))
            if row is None or row.status != TaxStatus.COMMITTED or row.transaction_id is None:
                return TaxReversalResult(action="nothing")
            earlier = await tax_records.reversals_of(session, row)
            amounts = (
                None
                if input.lines is None
                else {li.reference: li.amount.money() for li in input.lines}
            )
            shipping = input.shipping.money() if input.shipping else None
            # Stripe reverses in full only a transaction nothing was reversed of yet; after a
            # partial reversal "everything" is what remains, sent as a partial one.
            full = amounts is None and not earlier
            plan = None if full else tax_records.plan_partial(row, amounts, shipping, earlier)
            transaction_id = row.transaction_id
        if plan is not None and not plan[0] and plan[1] is None:
            return TaxReversalResult(action="nothing")
        reversal = await self._recording().reverse(
            transaction_id,
            reference=key,
            key=f"{input.checkout_id}:tax-reverse:{input.reversal_key}",
            lines=None if plan is None else plan[0],
            shipping=None if plan is None else plan[1],
        )
        async with self.db.begin() as session:
            row = await tax_records.find(session, input.checkout_id, lock=True)
            assert row is not None
            if await tax_records.find_reversal(session, key) is None:
                await tax_records.record_reversal(
                    session,
                    row,
                    key=key,
                    mode="full" if plan is None else "partial",
                    reversal=reversal,
                    earlier=await tax_records.reversals_of(session, row),
                )
        log.info("tax.reversed", checkout_id=str(input.checkout_id), reversal_id=reversal.id)
        return _reversed(reversal)
