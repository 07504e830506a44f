"""What every domain's activity contract is made of: payload base, money, lines, addresses.

A payload is what Temporal records in a workflow history: changing a field's meaning is a
workflow change (the replay tests guard it). Money travels as a decimal string plus currency.
This module imports nothing but pydantic, `kit` and temporalio's exception types, so the
workflow (which must not load SQLAlchemy or HTTP clients) can import every contract.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from temporalio.exceptions import ApplicationError

from kit.money import Money
from kit.text import PlainText

InputT = TypeVar("InputT", bound=BaseModel)
ResultT = TypeVar("ResultT")


def carried_failure(error: BaseException | None) -> ApplicationError | None:
    """The typed ApplicationError an activity's failure carries (an activity refuses with one
    whose `type` is a stable code), found along `error`'s causes; None when it carries none."""
    cause = error
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type:
            return cause
        cause = cause.__cause__
    return None


class Payload(BaseModel):
    """Frozen, strict about unknown fields: a payload is a contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class ActivityName(Generic[InputT, ResultT]):
    """An activity as callers know it: its registered name and its input and result types.

    The implementation registers under `name` (`@activity.defn(name=X.name)`); the workflow calls
    it by `name` with `result` as the result type, without importing the implementation.
    """

    name: str
    input: type[InputT]
    result: type[ResultT]

    @property
    def domain(self) -> str:
        """The domain owning the activity: the part of the name before the dot."""
        return self.name.split(".", 1)[0]


class MoneyValue(Payload):
    """A Money on the wire."""

    amount: Decimal
    currency: str

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @classmethod
    def of(cls, money: Money) -> MoneyValue:
        """From a kit Money."""
        return cls(amount=money.amount, currency=money.currency)

    def money(self) -> Money:
        """As a kit Money (validated and quantized)."""
        return Money.of(self.amount, self.currency)


class Line(Payload):
    """A cart or order line with the unit price the shopper saw (in the cart's currency)."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int = Field(ge=1)
    unit_price: Decimal


def subtotal(currency: str, lines: list[Line]) -> Money:
    """Sum of unit price times quantity, in `currency`."""
    total = Money.zero(currency)
    for line in lines:
        total = total + Money.of(line.unit_price, currency) * line.quantity
    return total


class Address(Payload):
    """A postal address as the API accepts it."""

    name: PlainText = Field(min_length=1, max_length=200)
    line1: PlainText = Field(min_length=1, max_length=200)
    line2: PlainText | None = Field(default=None, max_length=200)
    city: PlainText = Field(min_length=1, max_length=100)
    postal_code: PlainText = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    phone: PlainText | None = Field(default=None, max_length=32)
    # The subdivision (ISO 3166-2, without the country: `CA`, `NY`): in the United States the
    # state decides the sales tax. Optional: payloads recorded before it existed have none.
    state: str | None = Field(default=None, pattern=r"^[A-Z0-9]{1,3}$")


class NextAction(Payload):
    """What the buyer must do for the payment to go on (3-D Secure)."""

    type: str
    url: str


class CheckoutRef(Payload):
    """Just the checkout: the input of steps keyed by it alone."""

    checkout_id: uuid.UUID


class OrderRef(Payload):
    """A checkout and its order: confirm the coupon, commit stock, cancel the shipment."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID


class ReleaseInput(Payload):
    """Give back what a checkout holds; `restock` also returns stock already taken."""

    checkout_id: uuid.UUID
    reason: str
    restock: bool = False
