"""Request and response bodies of the HTTP API.

Requests forbid unknown fields. Every decimal a response carries is a string in plain positional
notation, never an exponent ("100", not "1E+2"): money quantized to its currency's minor unit
(`money`, shown through `AmountOut`), other decimals with no trailing zeros (`plain`, shown through
`DecimalOut`); money goes with an ISO 4217 code. Ids are UUIDs.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal

from babel import Locale
from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from activities.shared import Address
from kit.money import Money, MoneyError, normalize_currency
from kit.text import MultilineText, PlainText
from workflows.checkout.contract import FINAL, StepName
from workflows.checkout.models import CheckoutStatusBody


def _surrogates(value: Any) -> bool:
    """Whether `value` (a string, or strings inside lists and mappings) holds a lone surrogate:
    JSON may escape one (`\\ud800`), but it is not text and no database can store it."""
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_surrogates(k) or _surrogates(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_surrogates(item) for item in value)
    return False


class Request(BaseModel):
    """A request body: unknown fields are an error, not silently ignored, and no string in it
    may hold a lone surrogate (whatever the field: free text fields refuse more, see kit.text)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_surrogates(cls, value: Any) -> Any:
        if _surrogates(value):
            raise ValueError("lone surrogates are not text and are not accepted")
        return value


class Response(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)


def _currency(value: str) -> str:
    try:
        return normalize_currency(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from exc


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    territories: dict[str, str] = dict(Locale("en").territories)
    # CLDR also names groupings and placeholders that are not ISO 3166-1 countries.
    not_countries = {"ZZ", "EU", "EZ", "UN", "QO", "XA", "XB"}
    return frozenset(
        code
        for code in territories
        if len(code) == 2 and code.isalpha() and code not in not_countries
    )


def _country(value: str) -> str:
    upper = value.upper()
    if upper not in _countries():
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return upper


Currency = Annotated[
    str, Field(min_length=3, max_length=3, examples=["USD"]), AfterValidator(_currency)
]
Country = Annotated[
    str, Field(min_length=2, max_length=2, examples=["GB"]), AfterValidator(_country)
]
# A country's subdivision as ISO 3166-2 writes it after the country and the hyphen (`CA` for
# California); lower case is accepted and upper-cased.
Subdivision = Annotated[
    str,
    BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value),
    Field(min_length=1, max_length=3, pattern=r"^[A-Z0-9]{1,3}$", examples=["CA"]),
]
Amount = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=4, examples=["19.99"])]


# A decimal string as responses show them: digits, at most one point, no exponent.
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _positional(value: Decimal) -> str:
    """`value` in positional notation ("-0" shown as "0")."""
    return format(abs(value) if value.is_zero() else value, "f")


def money(amount: Decimal | int | str, currency: str) -> str:
    """An amount as every response shows it: a plain decimal string at the currency's minor unit
    ("100.00" in USD, "100" in JPY, whatever exponent the amount came with)."""
    return _positional(Money.rounded(amount, currency).amount)


def plain(value: Decimal | int | str) -> str:
    """A decimal that is not money (a percentage) as every response shows it: positional
    notation, trailing zeros dropped ("12.5", "100", "0")."""
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    # Not `normalize()`: it rounds to the context's precision.
    shown = _positional(number)
    return shown.rstrip("0").rstrip(".") if "." in shown else shown


def _shown(value: Any) -> Any:
    """A value as `plain` shows it, unless it is a plain decimal string already (kept as is:
    "19.90" stays money)."""
    if isinstance(value, str) and PLAIN_DECIMAL.fullmatch(value):
        return value
    if isinstance(value, Decimal | int | str) and not isinstance(value, bool):
        try:
            return plain(value)
        except ArithmeticError as exc:
            raise ValueError(f"not a decimal: {value!r}") from exc
    return value


def _in_currency(amount: Any, info: ValidationInfo) -> Any:
    context = info.context
    return money(amount, context["currency"]) if context else _shown(amount)


# Money in a response: validated with `context={"currency": ...}` (a row's amount), it is shown
# by `money` in that currency; without one it must be a money string already (`money`'s), and a
# number in exponent notation is shown plain all the same.
AmountOut = Annotated[str, BeforeValidator(_in_currency)]
# Any other decimal in a response (a percentage), shown by `plain`.
DecimalOut = Annotated[str, BeforeValidator(_shown)]


def rounded_seconds(seconds: float) -> float:
    """Seconds to the millisecond (how responses show a duration)."""
    return round(seconds, 3)


# A duration in seconds, shown to the millisecond: a JSON number that is never in exponent
# notation (Python writes floats under 1e-4 as "1e-05"; rounded, they are 0.0).
Seconds = Annotated[float, PlainSerializer(rounded_seconds, return_type=float)]


# -- users ---------------------------------------------------------------------------------------


class UserIn(Request):
    """Register a user."""

    email: PlainText = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()-]{4,31}$")


class UserOut(Response):
    """A registered user."""

    id: uuid.UUID
    email: str
    status: str


class TokenIn(Request):
    """Mint a development token."""

    user_id: uuid.UUID
    scopes: list[Literal["customer", "operator"]] = Field(min_length=1, max_length=2)


class TokenOut(Response):
    """A bearer token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


# -- catalog -------------------------------------------------------------------------------------


# A packed dimension: more than nothing, at most 10 m.
Millimetres = Annotated[int, Field(ge=1, le=10_000)]


class PriceIn(Request):
    """A price of a variant in one currency."""

    currency: Currency
    amount: Amount


class VariantIn(Request):
    """A variant to create."""

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=50)
    prices: list[PriceIn] = Field(min_length=1, max_length=20)
    # One unit packed, for shipping rates (unset: 500 g, 300 x 200 x 100 mm).
    weight_g: int | None = Field(default=None, ge=1, le=1_000_000)
    length_mm: Millimetres | None = None
    width_mm: Millimetres | None = None
    height_mm: Millimetres | None = None

    @field_validator("prices")
    @classmethod
    def _one_per_currency(cls, prices: list[PriceIn]) -> list[PriceIn]:
        if len({p.currency for p in prices}) != len(prices):
            raise ValueError("one price per currency")
        return prices


class ImageIn(Request):
    """An image of a product."""

    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://\S+$")
    sort_order: int = Field(default=0, ge=0, le=10_000)


class ProductIn(Request):
    """A product to create."""

    seller_id: uuid.UUID
    title: PlainText = Field(min_length=1, max_length=200)
    description: MultilineText = Field(default="", max_length=10_000)
    category_id: uuid.UUID | None = None
    status: Literal["draft", "active", "archived"] = "active"
    variants: list[VariantIn] = Field(min_length=1, max_length=100)
    images: list[ImageIn] = Field(default_factory=list, max_length=50)

    @field_validator("variants")
    @classmethod
    def _unique_skus(cls, variants: list[VariantIn]) -> list[VariantIn]:
        if len({v.sku for v in variants}) != len(variants):
            raise ValueError("SKUs repeat")
        return variants


class PriceOut(Response):
    """A current price."""

    id: uuid.UUID
    currency: str
    amount: AmountOut
    valid_from: datetime
    valid_to: datetime | None = None


class VariantOut(Response):
    """A variant with its current prices."""

    id: uuid.UUID
    sku: str
    attributes: dict[str, Any]
    prices: list[PriceOut]


class ImageOut(Response):
    """An image."""

    id: uuid.UUID
    url: str
    sort_order: int


class ProductOut(Response):
    """A product as shoppers see it now."""

    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    description: str
    category_id: uuid.UUID | None
    status: str
    variants: list[VariantOut]
    images: list[ImageOut]


# -- inventory -----------------------------------------------------------------------------------


class StockIn(Request):
    """Set a variant's total stock."""

    total_stock: int = Field(ge=0, le=10_000_000)


class StockOut(Response):
    """Stock of a variant."""

    variant_id: uuid.UUID
    total_stock: int
    reserved: int
    available: int


# -- coupons -------------------------------------------------------------------------------------


class CouponIn(Request):
    """A coupon to create."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    discount_type: Literal["percentage", "fixed"]
    discount_value: Decimal = Field(gt=0, max_digits=15, decimal_places=4)
    currency: Currency | None = None
    valid_from: AwareDatetime = Field(
        description=(
            "Required. When the coupon starts to apply (included): an ISO 8601 date and time "
            "with its UTC offset, e.g. `2026-01-01T00:00:00Z` or `2026-01-01T09:00:00+01:00`; "
            "a time without an offset is refused."
        ),
        examples=["2026-01-01T00:00:00Z"],
    )
    valid_to: AwareDatetime = Field(
        description=(
            "Required. When the coupon stops applying (excluded), after `valid_from`, in the "
            "same format."
        ),
        examples=["2027-01-01T00:00:00Z"],
    )
    max_redemptions: int | None = Field(default=None, ge=1, le=100_000_000)
    max_per_user: int | None = Field(default=None, ge=1, le=1_000_000)
    min_subtotal: Amount | None = None

    @field_validator("valid_to")
    @classmethod
    def _after_valid_from(cls, valid_to: datetime, info: ValidationInfo) -> datetime:
        valid_from = info.data.get("valid_from")
        if valid_from is not None and valid_to <= valid_from:
            raise ValueError("valid_to must be after valid_from")
        return valid_to

    @model_validator(mode="after")
    def _consistent(self) -> CouponIn:
        if self.discount_type == "percentage" and self.discount_value > 100:
            raise ValueError("a percentage is at most 100")
        if (self.discount_type == "fixed" or self.min_subtotal is not None) and not self.currency:
            raise ValueError("fixed discounts and minimum subtotals need a currency")
        return self


class CouponOut(Response):
    """A coupon and how often it is used (held and confirmed)."""

    id: uuid.UUID
    code: str
    discount_type: str
    discount_value: DecimalOut
    currency: str | None
    valid_from: datetime
    valid_to: datetime
    max_redemptions: int | None
    max_per_user: int | None
    min_subtotal: AmountOut | None
    redeemed: int


# -- carts ---------------------------------------------------------------------------------------


class CartIn(Request):
    """Open a cart."""

    currency: Currency


class ItemIn(Request):
    """Add units of a variant."""

    variant_id: uuid.UUID
    quantity: int = Field(ge=1, le=99)


class QuantityIn(Request):
    """Change a line's quantity."""

    quantity: int = Field(ge=1, le=99)


class CartItemOut(Response):
    """A cart line."""

    id: uuid.UUID
    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: AmountOut
    line_total: AmountOut


class CartOut(Response):
    """A cart."""

    id: uuid.UUID
    status: str
    currency: str
    items: list[CartItemOut]
    subtotal: AmountOut
    expires_at: datetime | None = None


# -- checkouts -----------------------------------------------------------------------------------


class AddressIn(Address, Request):
    """A postal address."""

    # The checkout's address, its country checked against ISO 3166-1 (and upper-cased).
    country: Country
    # The state or province (ISO 3166-2 subdivision code without the country, e.g. `CA`):
    # in the United States it decides the sales tax.
    state: Subdivision | None = None


class SandboxPaymentIn(Request):
    """How the buyer pays, the sandbox's older shape: a `tok_*` name (README, sandbox)."""

    provider: Literal["sandbox"]
    token: PlainText = Field(min_length=1, max_length=255)


class StripePaymentIn(Request):
    """How the buyer pays, Stripe's shape: a payment method such as `pm_card_visa`."""

    provider: Literal["stripe"]
    payment_method: PlainText = Field(min_length=1, max_length=255)


# How the buyer pays: one of the two shapes, told apart by `provider`.
PaymentIn = Annotated[SandboxPaymentIn | StripePaymentIn, Field(discriminator="provider")]


class CheckoutIn(Request):
    """Start a checkout of a cart."""

    cart_id: uuid.UUID
    coupon_code: PlainText | None = Field(default=None, min_length=1, max_length=64)
    shipping_address: AddressIn
    billing_address: AddressIn | None = None
    payment: PaymentIn
    # A declined card: `fail` ends the checkout failed; `retry` waits at
    # `requires_payment_method` for another method (`POST /v1/checkouts/{id}/payment`).
    on_decline: Literal["fail", "retry"] = "fail"
    # A rate of `POST /v1/carts/{id}/shipping-rates` for this cart and shipping address, still
    # valid: its price is charged as shipping and its service bought. Absent: free shipping.
    shipping_rate_id: uuid.UUID | None = None


class PaymentRetryIn(Request):
    """Another payment method for a checkout waiting at `requires_payment_method`."""

    payment: PaymentIn


class CheckoutAccepted(Response):
    """The answer to starting a checkout."""

    checkout_id: uuid.UUID
    status: str


class OperatorCancelOut(CheckoutAccepted):
    """The answer to an operator's cancel, once the payment's compensation has run: `money` is
    what happened to the buyer's money (`refunded`, `voided`, `nothing_to_refund`, or
    `needs_attention` when giving it back failed and the checkout waits for an operator)."""

    money: str


class OrderSummaryOut(Response):
    """The order of a checkout."""

    id: uuid.UUID
    order_number: str
    total_amount: AmountOut
    currency: str


class NextActionOut(Response):
    """What the buyer must do."""

    type: str
    url: str


class PaymentErrorOut(Response):
    """Why the last payment method was declined, as the buyer may see it (a decline about fraud
    or a lost or stolen card reads as a generic decline)."""

    code: str
    decline_code: str | None = None
    message: str


class PaymentOut(Response):
    """Where the payment stands."""

    status: str
    next_action: NextActionOut | None = None
    last_error: PaymentErrorOut | None = None


class FailureOut(Response):
    """Why the checkout ended without an order."""

    code: str
    message: str


class CheckoutOut(Response):
    """A checkout's status."""

    checkout_id: uuid.UUID
    status: str
    step: str
    order: OrderSummaryOut | None = None
    payment: PaymentOut | None = None
    failure: FailureOut | None = None

    @classmethod
    def of(cls, body: CheckoutStatusBody) -> CheckoutOut:
        """The API's view of the workflow's (or the database's) status body.

        An ended checkout is at step `complete` whatever its status: nothing runs for it any
        more. The run itself records the last step it started (`compensating` for a checkout
        that gave back what it held; the `CheckoutStep` search attribute keeps that), which would
        read as still going; why it ended is its `failure.code`, each step's outcome is in the
        operators' view of its steps.
        """
        data = body.model_dump(mode="json")
        if body.status in FINAL:
            data["step"] = StepName.COMPLETE.value
        if body.order is not None:
            data["order"]["total_amount"] = money(body.order.total_amount, body.order.currency)
        return cls.model_validate(data)


# -- orders --------------------------------------------------------------------------------------


class OrderItemOut(Response):
    """An order line (`id` is what a return names)."""

    id: uuid.UUID
    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: AmountOut
    total_price: AmountOut
    # The line's share of the order's discount and its tax, fixed when the order was created:
    # what a return of the whole line gives back is total_price - discount_amount + tax_amount.
    discount_amount: AmountOut
    tax_amount: AmountOut


class TransitionOut(Response):
    """A status change."""

    from_state: str | None
    to_state: str
    changed_at: datetime
    reason: str | None


class ShipmentOut(Response):
    """A shipment."""

    id: uuid.UUID
    carrier: str
    tracking_number: str
    status: str
    label_url: str | None


class OrderDisputeOut(Response):
    """A dispute of the order's payment, as the provider reports it."""

    status: str
    reason: str
    amount: AmountOut
    currency: str
    evidence_due_by: datetime | None


class OrderOut(Response):
    """An order with its lines, addresses, history and shipments."""

    id: uuid.UUID
    order_number: str
    checkout_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    currency: str
    subtotal: AmountOut
    # The same as `subtotal` (the name older clients read).
    subtotal_amount: AmountOut
    discount_amount: AmountOut
    shipping_amount: AmountOut
    # All the order's tax: its lines' and its shipping's.
    tax_amount: AmountOut
    # subtotal - discount_amount + shipping_amount + tax_amount: what the buyer paid.
    total_amount: AmountOut
    # What went back to the buyer (refunds made by the platform or in the provider's dashboard).
    refunded_amount: AmountOut
    coupon_code: str | None
    created_at: datetime
    items: list[OrderItemOut]
    addresses: dict[str, dict[str, Any]]
    transitions: list[TransitionOut]
    shipments: list[ShipmentOut]
    # The payment's newest dispute (chargeback), if the buyer's bank ever disputed it.
    dispute: OrderDisputeOut | None = None


class OrderList(Response):
    """A page of orders, newest first."""

    data: list[OrderOut]
    next_before: datetime | None


# -- webhooks ------------------------------------------------------------------------------------


class WebhookReceipt(Response):
    """The answer to a verified webhook: recorded now, or a duplicate of one recorded before."""

    received: Literal[True] = True
    duplicate: bool


# -- operations ----------------------------------------------------------------------------------


class OpsCheckout(BaseModel):
    """A checkout as operators see it in visibility."""

    checkout_id: uuid.UUID
    workflow_id: str
    run_status: str
    status: str | None
    step: str | None
    customer_id: str | None
    order_number: str | None
    started_at: datetime | None
    age_s: Seconds
    ui_url: str


class RetryingActivity(BaseModel):
    """An activity retrying right now, with its last failure."""

    activity_type: str
    attempt: int
    last_failure: str | None


class FailedCompensationOut(BaseModel):
    """A compensation that failed for good, and its error."""

    name: str
    error: str


class AttentionOut(BaseModel):
    """Why a checkout waits at `needs_attention`, since when."""

    since: datetime
    failed: list[FailedCompensationOut]


class StuckCheckout(OpsCheckout):
    """A running checkout that needs a look, and why: `retrying` are the activities at or past
    the retry threshold, `pending` every activity Temporal is waiting on (a stopped worker shows
    as a pending activity that never starts), `attention` the compensations that failed for good
    of a checkout waiting at `needs_attention` (retry or resolve it)."""

    reasons: list[str]
    step_age_s: Seconds | None
    retrying: list[RetryingActivity]
    pending: list[RetryingActivity]
    attention: AttentionOut | None = None


class OpsCheckoutList(BaseModel):
    """A page of checkouts, newest first."""

    data: list[OpsCheckout]


class StuckList(BaseModel):
    """Stuck checkouts."""

    data: list[StuckCheckout]


class StepOut(BaseModel):
    """One step of a checkout as recorded."""

    # Read from the step's row (`model_validate(row, from_attributes=True)`): its `step_name`.
    step: str = Field(validation_alias=AliasChoices("step", "step_name"))
    status: str
    started_at: datetime
    updated_at: datetime
    error_code: str | None


class PendingActivity(BaseModel):
    """An activity Temporal has scheduled and not finished."""

    activity_type: str
    state: str
    attempt: int
    last_failure: str | None


class OpsCheckoutDetail(BaseModel):
    """Everything an operator needs about one checkout."""

    checkout: CheckoutOut
    run_status: str | None
    steps: list[StepOut]
    pending_activities: list[PendingActivity]
    compensations: list[str]
    ui_url: str


# The longest note an operator may give (a settlement by hand, a rejection, a retry's reason);
# every column that keeps one holds as much.
NOTE_LIMIT = 1000


class ResolutionIn(Request):
    """An operator's record that what a checkout could not give back was settled by hand."""

    note: MultilineText = Field(min_length=1, max_length=NOTE_LIMIT)


class RefundRetryIn(Request):
    """An operator's retry of a failed refund, with an optional note."""

    note: MultilineText | None = Field(default=None, max_length=NOTE_LIMIT)


class OpsDisputeOut(Response):
    """A disputed payment: its order, amount, reason, status and evidence deadline."""

    id: uuid.UUID
    provider_dispute_id: str
    order_id: uuid.UUID | None
    order_number: str | None
    checkout_id: uuid.UUID
    payment_id: uuid.UUID
    amount: AmountOut
    currency: str
    reason: str
    status: str
    evidence_due_by: datetime | None
    created_at: datetime
    updated_at: datetime


class OpsDisputeList(Response):
    """Disputes, the nearest evidence deadline first."""

    data: list[OpsDisputeOut]


class OpsRefundOut(Response):
    """A refund and where it stands; a failed one waits for an operator until settled.

    `purpose` says why it was made, and so where to act when it failed: `compensation` (a
    checkout's or an order cancellation's own refund), `operator_refund` (an operator's partial
    refund of the order), `operator_retry` (an operator's retry of a failed refund), `return` (a
    return's refund: `return_id` names the return, which retries it itself), `dashboard` (made in
    the provider's dashboard); null for a refund recorded before purposes were, until the
    provider next reports on it."""

    id: uuid.UUID
    provider_refund_id: str
    order_id: uuid.UUID | None
    purpose: (
        Literal["compensation", "operator_refund", "operator_retry", "return", "dashboard"] | None
    )
    return_id: uuid.UUID | None
    checkout_id: uuid.UUID
    payment_id: uuid.UUID
    amount: AmountOut
    currency: str
    status: str
    origin: str
    failure_reason: str | None
    resolution: str | None
    resolution_note: str | None
    created_at: datetime
    updated_at: datetime


class OpsRefundList(Response):
    """Failed refunds waiting for an operator, oldest first."""

    data: list[OpsRefundOut]


class RefundRetryOut(Response):
    """An operator's retry of a failed refund: the refund it settled and the new one."""

    refund: OpsRefundOut
    new_provider_refund_id: str
    new_status: str


class OrderRefundIn(Request):
    """An operator's refund of part of an order: how much (a decimal string at the currency's
    minor unit, above zero), in the order's currency (the default), and why."""

    amount: Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=4, examples=["12.50"])]
    currency: Currency | None = None
    reason: PlainText = Field(min_length=1, max_length=200)


class OrderRefundOut(Response):
    """A refund asked for after the sale and where its money stands: `pending` until the
    provider settles it, then `succeeded`, `failed` (it waits for an operator, see
    `/v1/ops/refunds/failed`) or `canceled`; `rejected` when the provider refused it outright.
    `purpose` says who asked: `operator_refund` (an operator) or `return` (`return_id` names the
    return, which settles a failed refund itself)."""

    refund_id: uuid.UUID
    order_id: uuid.UUID
    purpose: Literal["operator_refund", "return"]
    return_id: uuid.UUID | None
    amount: AmountOut
    currency: str
    status: str
    reason: str
    requested_by: str
    provider_refund_id: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


# -- shipping rates ------------------------------------------------------------------------------


class ShippingRatesIn(Request):
    """Where the cart would be shipped."""

    shipping_address: AddressIn


class ShippingRateOut(Response):
    """A carrier's rate for the cart's parcel, choosable at checkout until `expires_at`."""

    id: uuid.UUID
    carrier: str
    service: str
    amount: AmountOut
    currency: str
    delivery_days: int | None = None
    expires_at: datetime


class ShippingRatesOut(Response):
    """The rates quoted for a cart, cheapest first."""

    rates: list[ShippingRateOut]


class OrderCancelAccepted(Response):
    """The answer to an order's cancel: `status` is the cancellation's (`cancelling` while the
    refund, restock and coupon release run, `cancelled` once the order is, `needs_attention`
    when a step failed for good and an operator must retry or resolve it)."""

    order_id: uuid.UUID
    status: str


# -- returns -------------------------------------------------------------------------------------


class ReturnLineIn(Request):
    """Units of one order line to send back (`order_item_id` is the order line's `id`)."""

    order_item_id: uuid.UUID
    quantity: int = Field(ge=1, le=99)


class ReturnIn(Request):
    """A buyer's return: which lines, how many units of each (each line once), and why."""

    lines: list[ReturnLineIn] = Field(min_length=1, max_length=100)
    reason: PlainText = Field(min_length=1, max_length=500)


class ReturnLineOut(Response):
    """A returned line: units asked back, received, put back in stock, and its refund."""

    order_item_id: uuid.UUID
    sku: str
    quantity: int
    received_quantity: int
    restocked_quantity: int
    refund_amount: AmountOut


class ReturnLabelOut(Response):
    """The carrier's return label the buyer sends the parcel with."""

    carrier: str
    tracking_number: str
    label_url: str | None


class ReturnOut(Response):
    """A return and where it stands: `requested`, `approved` (its label bought), `rejected`,
    `received`, `refunded`, or `needs_attention` (a step failed for good: an operator retries or
    resolves it). `refund_amount` is fixed when it is asked for: the lines' totals less their
    share of the discount plus their tax, pro rata to the units, plus the shipping and its tax
    when the return completes the order."""

    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    reason: str
    lines: list[ReturnLineOut]
    refund_amount: AmountOut
    shipping_refund_amount: AmountOut
    currency: str
    label: ReturnLabelOut | None
    note: str | None
    transitions: list[TransitionOut]
    created_at: datetime
    updated_at: datetime


class ReturnList(Response):
    """Returns, oldest first."""

    data: list[ReturnOut]


class ReceivedLineIn(Request):
    """Units of a returned line that came back, and whether they go back to stock."""

    order_item_id: uuid.UUID
    quantity: int = Field(ge=0, le=99)
    restock: bool


class ReceiveIn(Request):
    """What came back of a return; a line not named came back whole and is not restocked."""

    lines: list[ReceivedLineIn] = Field(default_factory=list, max_length=100)
