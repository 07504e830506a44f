"""The checkout's vocabulary (docs/reference/states.md): statuses, steps, failure codes.

Plain enums, no ORM: the workflow, the API and the checkout database all speak them.
`workflows.checkout.contract` is where everybody else imports them from.
"""

from __future__ import annotations

from enum import StrEnum


class CheckoutStatus(StrEnum):
    """Checkout status, as `GET /v1/checkouts/{id}` reports it."""

    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    # The card was declined and the checkout (`on_decline: retry`) waits for another payment
    # method until its payment window ends.
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The statuses a checkout ends in: it never runs again and never changes after one of them.
FINAL = frozenset(
    {
        CheckoutStatus.COMPLETED,
        CheckoutStatus.FAILED,
        CheckoutStatus.CANCELLED,
        CheckoutStatus.EXPIRED,
    }
)


class StepName(StrEnum):
    """Saga step names, in logical order."""

    LOCK_CART = "lock_cart"
    PRICE_CART = "price_cart"
    RESERVE_COUPON = "reserve_coupon"
    RESERVE_INVENTORY = "reserve_inventory"
    CREATE_ORDER = "create_order"
    AUTHORIZE_PAYMENT = "authorize_payment"
    AWAITING_PAYMENT = "awaiting_payment"
    CAPTURE_PAYMENT = "capture_payment"
    COMMIT_INVENTORY = "commit_inventory"
    CONFIRM_COUPON = "confirm_coupon"
    CONFIRM_ORDER = "confirm_order"
    CREATE_SHIPMENT = "create_shipment"
    COMPLETE = "complete"
    COMPENSATING = "compensating"
    # A compensation failed for good: the checkout waits for an operator's retry or resolve.
    NEEDS_ATTENTION = "needs_attention"


class StepStatus(StrEnum):
    """Progress of one step of one checkout."""

    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"


class FailureCode(StrEnum):
    """Why a checkout did not complete (docs/reference/errors.md).

    The checkout's own codes, then every domain error code an activity can fail with (a test
    keeps this list equal to the domains' `errors.py`): an activity's business failure carries its
    domain's code, and the checkout reports that code, never a vaguer one.
    """

    # The checkout's own.
    PAYMENT_TIMEOUT = "payment_timeout"
    CANCELLED = "cancelled"
    INVALID_INPUT = "invalid_input"
    PROVIDER_REFUSED = "provider_refused"
    INTERNAL_ERROR = "internal_error"
    # kit.errors
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    # domains.accounts
    EMAIL_TAKEN = "email_taken"
    USER_NOT_FOUND = "user_not_found"
    # domains.cart
    CART_NOT_FOUND = "cart_not_found"
    CART_LOCKED = "cart_locked"
    CART_RELEASED = "cart_released"
    CART_EMPTY = "cart_empty"
    CURRENCY_MISMATCH = "currency_mismatch"
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
    ITEM_NOT_FOUND = "item_not_found"
    TOO_MANY_LINES = "too_many_lines"
    # domains.checkout
    CHECKOUT_NOT_FOUND = "checkout_not_found"
    IDEMPOTENCY_KEY_MISMATCH = "idempotency_key_mismatch"
    ALREADY_CAPTURED = "already_captured"
    CHECKOUT_ENDED = "checkout_ended"
    NOT_WAITING_FOR_OPERATOR = "not_waiting_for_operator"
    NOT_AWAITING_PAYMENT_METHOD = "checkout_not_awaiting_payment_method"
    # domains.coupons
    COUPON_NOT_FOUND = "coupon_not_found"
    COUPON_CODE_TAKEN = "coupon_code_taken"
    COUPON_INVALID = "coupon_invalid"
    COUPON_EXHAUSTED = "coupon_exhausted"
    # domains.inventory
    INVENTORY_NOT_FOUND = "inventory_not_found"
    OUT_OF_STOCK = "out_of_stock"
    STOCK_BELOW_RESERVED = "stock_below_reserved"
    # domains.orders
    ORDER_NOT_FOUND = "order_not_found"
    INVALID_ORDER_TRANSITION = "invalid_order_transition"
    ORDER_NOT_CANCELLABLE = "order_not_cancellable"
    ORDER_AMOUNTS_MISMATCH = "order_amounts_mismatch"
    RETURN_NOT_FOUND = "return_not_found"
    ORDER_NOT_RETURNABLE = "order_not_returnable"
    RETURN_WINDOW_CLOSED = "return_window_closed"
    RETURN_QUANTITY_EXCEEDED = "return_quantity_exceeded"
    RETURN_LINE_UNKNOWN = "return_line_unknown"
    RETURN_NOT_AWAITING = "return_not_awaiting"
    # domains.payments
    PAYMENT_NOT_FOUND = "payment_not_found"
    PAYMENT_DECLINED = "payment_declined"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    AMOUNT_BELOW_MINIMUM = "amount_below_minimum"
    REFUND_NOT_FOUND = "refund_not_found"
    REFUND_NOT_FAILED = "refund_not_failed"
    REFUND_OWNED_BY_RETURN = "refund_owned_by_return"
    REFUND_EXCEEDS_CAPTURED = "refund_exceeds_captured"
    PAYMENT_NOT_CAPTURED = "payment_not_captured"
    REFUND_CURRENCY_MISMATCH = "refund_currency_mismatch"
    TAX_UNAVAILABLE = "tax_unavailable"
    TAX_NOT_RECORDED = "tax_not_recorded"
    TAX_ALREADY_RECORDED = "tax_already_recorded"
    TAX_REVERSAL_TOO_LARGE = "tax_reversal_too_large"
    # domains.products
    PRODUCT_NOT_FOUND = "product_not_found"
    SKU_TAKEN = "sku_taken"
    NO_PRICE = "no_price"
    PRICE_CHANGED = "price_changed"
    # domains.shipping
    SHIPMENT_NOT_FOUND = "shipment_not_found"
    SHIPPING_UNAVAILABLE = "shipping_unavailable"
    ADDRESS_UNSERVICEABLE = "address_unserviceable"
    LABEL_NOT_VOIDABLE = "label_not_voidable"
    SHIPPING_RATE_EXPIRED = "shipping_rate_expired"
    ALREADY_SHIPPED = "already_shipped"
