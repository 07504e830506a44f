"""Request bodies of the sandbox's Stripe Tax endpoints (calculations, transactions, reversals).

Nested integers arrive as strings in a form-encoded body (`line_items[0][amount]=1000`), so they
are read leniently here (pydantic's lax `int`: "1000" is 1000, "10.5" is refused).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from sandbox.psp.models import MAX_AMOUNT, Metadata, _Body

# Stripe's limit on a calculation's line items (an account may ask for 1,000).
MAX_LINE_ITEMS = 100
Reference = Annotated[str, StringConstraints(min_length=1, max_length=500)]
TaxCode = Annotated[str, StringConstraints(pattern=r"^txcd_\d{8}$")]
Text = Annotated[str, StringConstraints(max_length=5000)]
TaxBehavior = Literal["exclusive", "inclusive"]
# General - Tangible Goods: what a line without a tax code is taxed as in the sandbox.
DEFAULT_TAX_CODE = "txcd_99999999"
# Shipping's own tax code at Stripe.
SHIPPING_TAX_CODE = "txcd_92010001"


class AddressParam(_Body):
    """`customer_details[address]`."""

    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$", to_upper=True)]
    state: Text | None = None
    postal_code: Text | None = None
    city: Text | None = None
    line1: Text | None = None
    line2: Text | None = None


class CustomerDetailsParam(_Body):
    """`customer_details`: where the goods go (the sandbox taxes by its country and state)."""

    address: AddressParam
    address_source: Literal["billing", "shipping"]
    taxability_override: Literal["customer_exempt", "none", "reverse_charge"] = "none"


class CalculationLineParam(_Body):
    """`line_items[i]`: the line's total in minor units (not a unit price)."""

    amount: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
    reference: Reference | None = None
    quantity: Annotated[int, Field(ge=1)] = 1
    tax_behavior: TaxBehavior = "exclusive"
    tax_code: TaxCode | None = None
    product: Text | None = None
    metadata: Metadata | None = None


class ShippingCostParam(_Body):
    """`shipping_cost` of a calculation."""

    amount: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
    tax_behavior: TaxBehavior = "exclusive"
    tax_code: TaxCode | None = None


class CalculationRequest(_Body):
    """`POST /v1/tax/calculations`."""

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_lower=True)]
    line_items: Annotated[
        list[CalculationLineParam], Field(min_length=1, max_length=MAX_LINE_ITEMS)
    ]
    customer_details: CustomerDetailsParam
    shipping_cost: ShippingCostParam | None = None
    tax_date: int | None = None
    expand: list[Literal["line_items"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_references(self) -> CalculationRequest:
        given = [line.reference for line in self.line_items if line.reference is not None]
        if len(given) != len(set(given)):
            raise ValueError("line item references must be unique within a calculation")
        return self


class FromCalculationRequest(_Body):
    """`POST /v1/tax/transactions/create_from_calculation`."""

    calculation: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    reference: Reference
    metadata: Metadata | None = None
    posted_at: int | None = None
    expand: list[Literal["line_items"]] = Field(default_factory=list)


class ReversalLineParam(_Body):
    """`line_items[i]` of a partial reversal: negative amounts, as Stripe takes them."""

    original_line_item: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    reference: Reference
    amount: Annotated[int, Field(le=0, ge=-MAX_AMOUNT)]
    amount_tax: Annotated[int, Field(le=0, ge=-MAX_AMOUNT)]
    quantity: Annotated[int, Field(ge=1)] | None = None
    metadata: Metadata | None = None


class ReversalShippingParam(_Body):
    """`shipping_cost` of a partial reversal."""

    amount: Annotated[int, Field(le=0, ge=-MAX_AMOUNT)]
    amount_tax: Annotated[int, Field(le=0, ge=-MAX_AMOUNT)]


class ReversalRequest(_Body):
    """`POST /v1/tax/transactions/create_reversal` (`flat_amount` is not simulated)."""

    original_transaction: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    reference: Reference
    mode: Literal["full", "partial"]
    line_items: list[ReversalLineParam] = Field(default_factory=list)
    shipping_cost: ReversalShippingParam | None = None
    metadata: Metadata | None = None
    expand: list[Literal["line_items"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _amounts_match_the_mode(self) -> ReversalRequest:
        partial = bool(self.line_items) or self.shipping_cost is not None
        if self.mode == "full" and partial:
            raise ValueError("a full reversal takes no line_items or shipping_cost")
        if self.mode == "partial" and not partial:
            raise ValueError("a partial reversal needs line_items or shipping_cost")
        references = [line.reference for line in self.line_items]
        if len(references) != len(set(references)):
            raise ValueError("line item references must be unique within a reversal")
        return self


class TaxFaultRequest(_Body):
    """`POST /v1/test_helpers/tax/fault`: how the tax endpoints misbehave from now on."""

    mode: Literal["none", "error", "hang"]
