"""The whole price of a checkout: subtotal, discount, shipping and tax, as the order carries it.

Workflow code (deterministic, no I/O): the tax service is asked for each line's amount after
its share of the discount, split over the lines exactly as the orders domain splits it
(`kit.money.allocate` over the lines' totals, in the cart's order), so the tax of a line is the
tax of what the buyer pays for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from activities.cart.contract import CartSnapshot
from activities.payments import contract as payments
from activities.shared import Address, Line, MoneyValue
from kit.money import Money, allocate


@dataclass(frozen=True)
class Price:
    """What the order charges: total = subtotal - discount + shipping + tax."""

    subtotal: Money
    discount: Money
    shipping: Money
    tax: payments.TaxResultValue | None = None

    @property
    def tax_total(self) -> Money:
        """All the tax (the lines' and the shipping's); zero when untaxed."""
        return self.tax.total_tax.money() if self.tax else Money.zero(self.subtotal.currency)

    @property
    def total(self) -> Money:
        """What the buyer pays."""
        return self.subtotal - self.discount + self.shipping + self.tax_total

    def line_taxes(self, lines: Sequence[Line]) -> dict[uuid.UUID, Decimal]:
        """Each line's tax by variant, as the order keeps it (empty when untaxed)."""
        if self.tax is None:
            return {}
        taxes = {line.reference: line.tax.amount for line in self.tax.lines}
        return {
            line.variant_id: taxes[reference(line.variant_id)]
            for line in lines
            if reference(line.variant_id) in taxes
        }


def reference(variant_id: uuid.UUID) -> str:
    """A line's reference with the tax service: its variant id (unique in a cart)."""
    return str(variant_id)


def tax_request(
    checkout_id: uuid.UUID,
    snapshot: CartSnapshot,
    price: Price,
    ship_to: Address,
) -> payments.CalculateTaxInput:
    """The calculation of the checkout's tax: each line after its discount share, the shipping,
    for the shipping address."""
    totals = [
        Money.of(line.unit_price, snapshot.currency) * line.quantity for line in snapshot.lines
    ]
    shares = allocate(price.discount, totals)
    return payments.CalculateTaxInput(
        checkout_id=checkout_id,
        currency=snapshot.currency,
        lines=[
            payments.TaxLineValue(
                reference=reference(line.variant_id),
                amount=MoneyValue.of(total - share),
                quantity=line.quantity,
            )
            for line, total, share in zip(snapshot.lines, totals, shares, strict=True)
        ],
        shipping=MoneyValue.of(price.shipping),
        address=payments.TaxAddressValue(
            country=ship_to.country,
            state=ship_to.state,
            postal_code=ship_to.postal_code,
            city=ship_to.city,
            line1=ship_to.line1,
        ),
    )
