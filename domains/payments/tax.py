"""Sales tax and VAT of a checkout, whichever tax service computes it.

The activities speak to a `TaxProvider`: `calculate` before the payment is authorized (the tax
of each line and of the shipping for the shipping address), `commit` after the capture (the
calculation recorded as a tax transaction, what the merchant reports and files), `reverse` when
money goes back (all of it, or some lines' and the shipping's amounts). `StripeTaxProvider`
(domains/payments/stripe_tax.py, `TAX_PROVIDER=stripe`) is Stripe Tax. `TAX_PROVIDER=none` has
no provider: every line and the shipping carry zero tax (`untaxed`) and nothing is recorded.

Money is `Money` here; integers of minor units exist only inside the Stripe implementation.
Calls fail as the payment provider's do (domains/payments/provider.py): `ProviderUnavailable`
(no answer, 5xx: retry under the same key), `ProviderRejected` (a definite refusal),
`ProviderMisuse` (a bad key, a reused idempotency key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from kit.money import Money


class TaxStatus(StrEnum):
    """Where a checkout's tax stands."""

    # Calculated before the authorization; nothing recorded with the tax service yet.
    CALCULATED = "calculated"
    # Recorded as a tax transaction after the capture (reversals may have taken some back).
    COMMITTED = "committed"
    # All of it taken back.
    REVERSED = "reversed"
    # No tax: TAX_PROVIDER=none, or the service was down and TAX_ON_FAILURE=open.
    UNTAXED = "untaxed"


@dataclass(frozen=True)
class TaxAddress:
    """Where the goods go: the country (ISO 3166-1 alpha-2) and, in the US, the state decide."""

    country: str
    state: str | None = None
    postal_code: str | None = None
    city: str | None = None
    line1: str | None = None


@dataclass(frozen=True)
class TaxableLine:
    """One order line: its reference (unique in the checkout), its total and its quantity."""

    reference: str
    amount: Money
    quantity: int


@dataclass(frozen=True)
class LineTax:
    """A line's amount and the tax on it; `item_id` is the provider's id of the line (a
    transaction's line item, which a partial reversal names)."""

    reference: str
    amount: Money
    tax: Money
    item_id: str | None = None


@dataclass(frozen=True)
class TaxResult:
    """A calculation, transaction or reversal: the tax of each line and of the shipping.

    `id` is the provider's (`taxcalc_...`, `tax_...`), None when no tax service was asked.
    A reversal's amounts are what it took back, as positive money.
    """

    id: str | None
    currency: str
    lines: tuple[LineTax, ...]
    shipping: Money
    shipping_tax: Money

    @property
    def total_tax(self) -> Money:
        """The tax of the lines and the shipping together."""
        total = self.shipping_tax
        for line in self.lines:
            total = total + line.tax
        return total


@dataclass(frozen=True)
class ReversalLine:
    """What to take back of one line of a transaction (positive money)."""

    item_id: str
    reference: str
    amount: Money
    tax: Money


class TaxProvider(Protocol):
    """Calculate, record and reverse the tax of a checkout."""

    name: str

    async def calculate(
        self,
        currency: str,
        lines: Sequence[TaxableLine],
        shipping: Money,
        address: TaxAddress,
        *,
        key: str,
    ) -> TaxResult:
        """The tax of each line and of the shipping, for the address."""
        ...

    async def commit(self, calculation_id: str, *, reference: str, key: str) -> TaxResult:
        """Record a calculation as a transaction under `reference` (unique per transaction)."""
        ...

    async def reverse(
        self,
        transaction_id: str,
        *,
        reference: str,
        key: str,
        lines: Sequence[ReversalLine] | None,
        shipping: tuple[Money, Money] | None = None,
    ) -> TaxResult:
        """Take back all of a transaction (`lines=None`) or these lines' and the shipping's
        (amount, tax) amounts."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def untaxed(currency: str, lines: Sequence[TaxableLine], shipping: Money) -> TaxResult:
    """The lines and shipping with zero tax, no calculation behind them."""
    zero = Money.zero(currency)
    return TaxResult(
        id=None,
        currency=zero.currency,
        lines=tuple(LineTax(line.reference, line.amount, zero) for line in lines),
        shipping=shipping,
        shipping_tax=zero,
    )


def share_of_tax(tax: Money, amount: Money, of: Money) -> Money:
    """The tax of `amount` out of a line of `of` taxed `tax`: proportional, rounded half-up (a
    refund of a whole line takes back exactly its tax)."""
    if of.is_zero() or amount >= of:
        return tax
    return Money.rounded(tax.amount * amount.amount / of.amount, tax.currency)


def remaining(original: Money, reversed_so_far: Money) -> Money:
    """What is left of an amount after reversals (never below zero)."""
    left = original - reversed_so_far
    return left if left.amount > Decimal(0) else Money.zero(original.currency)
