"""Inputs, results and state of the checkout workflow and its activities (one model each).

These are the payloads Temporal records in workflow histories: changing a field's meaning is a
workflow change (see the replay test). Money travels as a decimal string plus currency.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kit.money import Money


class Model(BaseModel):
    """Frozen, strict about unknown fields: a payload is a contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MoneyValue(Model):
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


class FailureCode(StrEnum):
    """Why a checkout did not complete (CONTRACT.md section 4)."""

    OUT_OF_STOCK = "out_of_stock"
    COUPON_INVALID = "coupon_invalid"
    COUPON_EXHAUSTED = "coupon_exhausted"
    PRICE_CHANGED = "price_changed"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_TIMEOUT = "payment_timeout"
    CART_LOCKED = "cart_locked"
    CART_EMPTY = "cart_empty"
    CART_NOT_FOUND = "cart_not_found"
    SHIPPING_UNAVAILABLE = "shipping_unavailable"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal_error"


# ---------------------------------------------------------------------------------------------
# Workflow input and the status body


class Address(Model):
    """A postal address as the API accepts it."""

    name: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    phone: str | None = Field(default=None, max_length=32)


class CheckoutInput(Model):
    """Everything a checkout needs to run; fixed when it starts."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    cart_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    coupon_code: str | None = None
    shipping_address: Address
    billing_address: Address | None = None
    payment_provider: Literal["sandbox"] = "sandbox"
    payment_token: str
    payment_timeout_s: int = Field(default=900, gt=0)


class OrderSummary(Model):
    """The order part of the status body."""

    id: uuid.UUID
    order_number: str
    total_amount: Decimal
    currency: str


class NextAction(Model):
    """What the buyer must do for the payment to go on (3-D Secure)."""

    type: str
    url: str


class PaymentSummary(Model):
    """The payment part of the status body."""

    status: str
    next_action: NextAction | None = None


class Failure(Model):
    """Why a checkout ended without an order."""

    code: FailureCode
    message: str


class CheckoutStatusBody(Model):
    """The `GET /v1/checkouts/{id}` body, also the workflow's `status` query."""

    checkout_id: uuid.UUID
    status: str
    step: str
    order: OrderSummary | None = None
    payment: PaymentSummary | None = None
    failure: Failure | None = None


class PaymentEvent(Model):
    """The provider's event as signalled to the workflow (`payment_event`)."""

    id: str
    type: str
    intent: str


# ---------------------------------------------------------------------------------------------
# Activity payloads


class CheckoutRef(Model):
    """Just the checkout: the input of steps keyed by it alone."""

    checkout_id: uuid.UUID


class LockCartInput(Model):
    """Lock a cart for one checkout."""

    checkout_id: uuid.UUID
    cart_id: uuid.UUID
    user_id: uuid.UUID


class CartLine(Model):
    """A cart line with the price the shopper saw."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int = Field(ge=1)
    unit_price: Decimal


class CartSnapshot(Model):
    """The locked cart."""

    cart_id: uuid.UUID
    currency: str
    lines: list[CartLine]

    def subtotal(self) -> Money:
        """sum of unit price times quantity, in the cart's currency."""
        total = Money.zero(self.currency)
        for line in self.lines:
            total = total + Money.of(line.unit_price, self.currency) * line.quantity
        return total


class CartRef(Model):
    """A cart and the checkout acting on it."""

    checkout_id: uuid.UUID
    cart_id: uuid.UUID


class PriceCartInput(Model):
    """Check the cart's snapshot against the catalog's current prices."""

    currency: str
    lines: list[CartLine]
    at: datetime


class PricedCart(Model):
    """The cart at current prices (equal to the snapshot, or the step failed)."""

    subtotal: MoneyValue


class ReserveCouponInput(Model):
    """Hold one redemption of a coupon for a checkout."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    code: str
    subtotal: MoneyValue
    at: datetime


class CouponReservation(Model):
    """The held redemption and the discount it grants."""

    redemption_id: uuid.UUID
    code: str
    discount: MoneyValue


class InventoryLine(Model):
    """Units of one variant."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int = Field(ge=1)


class ReserveInventoryInput(Model):
    """Reserve every line of a checkout, or none."""

    checkout_id: uuid.UUID
    lines: list[InventoryLine]
    expires_at: datetime


class InventoryReservation(Model):
    """What is held for a checkout."""

    reservation_ids: list[uuid.UUID]


class OrderRef(Model):
    """A checkout and its order: confirm the coupon, commit stock, cancel the shipment."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID


class ReleaseInput(Model):
    """Give back what a checkout holds; `restock` also returns stock already taken."""

    checkout_id: uuid.UUID
    reason: str
    restock: bool = False


class OrderLine(Model):
    """A line of the order to create."""

    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: Decimal


class CreateOrderInput(Model):
    """One order per checkout."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    currency: str
    lines: list[OrderLine]
    subtotal: MoneyValue
    discount: MoneyValue
    total: MoneyValue
    coupon_code: str | None
    shipping_address: Address
    billing_address: Address | None


class OrderInfo(Model):
    """The created (or found) order."""

    order_id: uuid.UUID
    order_number: str
    status: str
    total: MoneyValue


class OrderTransitionInput(Model):
    """Move a checkout's order to another status."""

    checkout_id: uuid.UUID
    reason: str | None = None


class CancelOrderInput(Model):
    """Cancel a checkout's order, as `refunded` when money came back."""

    checkout_id: uuid.UUID
    reason: str
    refunded: bool = False


class AuthorizeInput(Model):
    """Authorize the order total with the provider (manual capture)."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    amount: MoneyValue
    provider: str
    token: str


class PaymentResult(Model):
    """Where the payment stands after a call or a re-read."""

    status: str  # a domains.payments.models.PaymentStatus value
    intent_id: str | None = None
    next_action: NextAction | None = None
    error_code: str | None = None


class VoidResult(Model):
    """What the payment compensation did."""

    action: Literal["nothing", "canceled", "refunded"]
    refunded: MoneyValue | None = None


class SettleInput(Model):
    """A provider intent of a checkout that has ended, to be left holding nothing."""

    checkout_id: uuid.UUID
    intent_id: str
    # False when the checkout completed: its own captured payment pays its order and stays.
    refund_captured: bool = True


class CreateShipmentInput(Model):
    """Book one shipment for an order."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    ship_to: Address


class ShipmentInfo(Model):
    """The booked shipment."""

    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str


class OpenSessionInput(Model):
    """Record the checkout session (idempotent)."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    cart_id: uuid.UUID
    idempotency_key: str
    request_hash: str


class ProgressInput(Model):
    """Steps that moved (name -> started/completed/failed/compensated) and the status body now."""

    checkout_id: uuid.UUID
    steps: dict[str, str]
    error_code: str | None = None
    body: CheckoutStatusBody

    def details(self) -> dict[str, Any]:
        """The session columns the status body fills."""
        order, payment, failure = self.body.order, self.body.payment, self.body.failure
        return {
            "status": self.body.status,
            "step": self.body.step,
            "order_id": order.id if order else None,
            "order_number": order.order_number if order else None,
            "total_amount": order.total_amount if order else None,
            "currency": order.currency if order else None,
            "payment_status": payment.status if payment else None,
            "next_action": payment.next_action.model_dump()
            if payment and payment.next_action
            else None,
            "failure_code": failure.code.value if failure else None,
            "failure_message": failure.message if failure else None,
        }
