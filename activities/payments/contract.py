"""The payments' activities as the workflows call them: names and payloads."""

from __future__ import annotations

import uuid
from typing import Literal, Self

from pydantic import Field, model_validator

from activities.shared import ActivityName, CheckoutRef, MoneyValue, NextAction, Payload


class AuthorizeInput(Payload):
    """Authorize the order total with the provider (manual capture)."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    amount: MoneyValue
    provider: str
    token: str
    # The checkout takes another method after a decline (`on_decline: retry`): its undo also
    # cancels an intent left declined, which could otherwise still be confirmed later.
    cancel_declined: bool = False
    # The provider's idempotency key of the compensation's refund, when it is not the checkout's
    # own (`<checkout_id>:refund`): an order cancellation refunds under
    # `order-cancel-<order>:refund`, so that no other refund of the payment replays its answer.
    refund_key: str | None = Field(default=None, min_length=1, max_length=200)


class ConfirmInput(Payload):
    """Confirm the checkout's intent again with another payment method, after a decline."""

    checkout_id: uuid.UUID
    # 1 for the first new method after the authorization, then 2, 3...: each attempt has its
    # own idempotency key, `<checkout_id>:confirm:<attempt>`.
    attempt: int
    payment_method: str


class PaymentResult(Payload):
    """Where the payment stands after a call or a re-read."""

    status: str  # a domains.payments.models.PaymentStatus value
    intent_id: str | None = None
    next_action: NextAction | None = None
    # Why it failed, as the buyer may see it: a fraud-related decline (lost, stolen, fraudulent
    # card) is `generic_decline` here; the payment row keeps the issuer's own code.
    error_code: str | None = None
    # The sentence the buyer is shown when the payment failed ("Your card was declined.").
    message: str | None = None
    # The kind of failure the buyer is shown (`card_declined`, or
    # `payment_intent_authentication_failure` for a failed 3-D Secure challenge); `error_code`
    # then says more when it differs (the issuer's decline code, generic for fraud).
    error_type: str | None = None


class VoidResult(Payload):
    """What the payment compensation did."""

    action: Literal["nothing", "canceled", "refunded"]
    refunded: MoneyValue | None = None


class SettleInput(Payload):
    """A provider intent of a checkout that has ended, to be left holding nothing."""

    checkout_id: uuid.UUID
    intent_id: str
    # False when the checkout completed: its own captured payment pays its order and stays.
    refund_captured: bool = True


AUTHORIZE = ActivityName("payments.authorize", AuthorizeInput, PaymentResult)
REFRESH = ActivityName("payments.refresh", CheckoutRef, PaymentResult)
CONFIRM = ActivityName("payments.confirm", ConfirmInput, PaymentResult)
CAPTURE = ActivityName("payments.capture", CheckoutRef, PaymentResult)
VOID = ActivityName("payments.void", AuthorizeInput, VoidResult)
SETTLE_ENDED = ActivityName("payments.settle_ended", SettleInput, VoidResult)


class AfterSaleInput(Payload):
    """Provider events about a payment's money after the sale: refunds (the platform's or a
    dashboard's) and disputes. The intent, and each named dispute, is re-read from the provider."""

    checkout_id: uuid.UUID
    intent_id: str
    dispute_ids: list[str] = Field(default_factory=list)


class AfterSaleResult(Payload):
    """What the re-read changed: refunds new or moved, disputes new or moved, failed refunds
    now waiting for an operator."""

    refunds_changed: int = 0
    disputes_changed: int = 0
    refunds_failed: int = 0


class RetryRefundInput(Payload):
    """An operator's retry of a failed refund: the same amount, once more, to the same payment."""

    refund_id: uuid.UUID
    note: str | None = None


class RetryRefundResult(Payload):
    """The provider's id and status of the new refund."""

    provider_refund_id: str
    status: str


AFTER_SALE = ActivityName("payments.after_sale", AfterSaleInput, AfterSaleResult)
RETRY_REFUND = ActivityName("payments.retry_refund", RetryRefundInput, RetryRefundResult)

# --- refunds asked for after the sale (domains/payments/refunds.py) ----------------------------


class RefundAllocation(Payload):
    """Which order line a refund gives back, and how much of it (a return's refund)."""

    reference: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1)
    amount: MoneyValue


class RefundRequestInput(Payload):
    """Refund `amount` of an order's captured payment, once per `key` (the request's name and
    the provider's idempotency key: `order-refund-<order>-<hash>` for an operator's,
    `return-<return_id>` for a return's)."""

    order_id: uuid.UUID
    amount: MoneyValue
    key: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    reason: str = Field(min_length=1, max_length=200)
    # Who asked: an operator's user id, or the flow that did (`returns`).
    requested_by: str = Field(min_length=1, max_length=128)
    allocations: list[RefundAllocation] | None = None
    # What for, and whose it is: `operator_refund` of the order (`owner_id` the order's id) or a
    # `return`'s (the return's id); who settles the refund when it fails. Both or neither: an
    # input scheduled by a release before them has neither, and the request gets them from its
    # key when it is recorded.
    purpose: Literal["operator_refund", "return"] | None = None
    owner_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _whole_requester(self) -> Self:
        if (self.purpose is None) != (self.owner_id is None):
            raise ValueError("purpose and owner_id go together")
        return self


class SendRefundInput(Payload):
    """Refund a recorded request at the provider (under the request's key)."""

    refund_id: uuid.UUID
    # Why, for the workers of the release before this one (their provider refund's metadata
    # says it); this release's say the purpose recorded with the request instead.
    purpose: Literal["operator_refund", "return"] = "operator_refund"


class RefundRequestResult(Payload):
    """A refund request and where its money stands: `pending` until the provider's refund
    settles, then its status (`succeeded`, `failed`...), or `rejected` by the provider."""

    refund_id: uuid.UUID
    order_id: uuid.UUID
    amount: MoneyValue
    status: str
    provider_refund_id: str | None = None
    failure_reason: str | None = None


REQUEST_REFUND = ActivityName("payments.request_refund", RefundRequestInput, RefundRequestResult)
SEND_REFUND = ActivityName("payments.send_refund", SendRefundInput, RefundRequestResult)

# --- tax (domains/payments/tax.py) ---------------------------------------------------------


class TaxAddressValue(Payload):
    """The shipping address as the tax service reads it: the country and (US) state decide."""

    country: str = Field(pattern=r"^[A-Z]{2}$")
    state: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=100)
    line1: str | None = Field(default=None, max_length=200)


class TaxLineValue(Payload):
    """One order line to tax: its reference (unique in the checkout, e.g. the SKU), its total
    (unit price times quantity, after any discount on it) and its quantity."""

    reference: str = Field(min_length=1, max_length=200)
    amount: MoneyValue
    quantity: int = Field(ge=1)


class CalculateTaxInput(Payload):
    """Tax the lines and the shipping of a checkout for its shipping address."""

    checkout_id: uuid.UUID
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    lines: list[TaxLineValue] = Field(min_length=1, max_length=100)
    shipping: MoneyValue
    address: TaxAddressValue


class LineTaxValue(Payload):
    """A line's amount and its tax (a reversal: what it took back)."""

    reference: str
    amount: MoneyValue
    tax: MoneyValue


class TaxResultValue(Payload):
    """A checkout's tax: per line, of the shipping, in total."""

    status: str  # a domains.payments.tax.TaxStatus value
    lines: list[LineTaxValue]
    shipping_tax: MoneyValue
    total_tax: MoneyValue
    calculation_id: str | None = None
    transaction_id: str | None = None
    # Why an `untaxed` checkout carries no tax: tax_provider_none, tax_unavailable (opened).
    untaxed_reason: str | None = None


class ReverseLineValue(Payload):
    """How much of a line's amount goes back (its tax follows in proportion)."""

    reference: str = Field(min_length=1, max_length=200)
    amount: MoneyValue


class ReverseTaxInput(Payload):
    """Take back a checkout's recorded tax: all of it (`lines` None), or some lines' amounts
    and some of the shipping. `reversal_key` names this reversal (the refund's or return's id,
    `compensation` for the checkout's own undoing): a retry under it reverses nothing twice."""

    checkout_id: uuid.UUID
    reversal_key: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    lines: list[ReverseLineValue] | None = None
    shipping: MoneyValue | None = None


class TaxReversalResult(Payload):
    """What a reversal took back; `nothing` when no tax was ever recorded."""

    action: Literal["nothing", "reversed"]
    tax_reversed: MoneyValue | None = None
    lines: list[LineTaxValue] = Field(default_factory=list)
    transaction_id: str | None = None


CALCULATE_TAX = ActivityName("payments.calculate_tax", CalculateTaxInput, TaxResultValue)
COMMIT_TAX = ActivityName("payments.commit_tax", CheckoutRef, TaxResultValue)
REVERSE_TAX = ActivityName("payments.reverse_tax", ReverseTaxInput, TaxReversalResult)
