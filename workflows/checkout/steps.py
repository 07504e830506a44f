"""How the checkout workflow runs activities: the options of each, failures, concurrent stages.

Workflow code (deterministic, no I/O): imported by `workflow.py` and by the tests that check that
every activity runs on its own domain's queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from activities.cart import contract as cart
from activities.coupons import contract as coupons
from activities.inventory import contract as inventory
from activities.orders import contract as orders
from activities.payments import contract as payments
from activities.products import contract as products
from activities.shipping import contract as shipping
from workflows.checkout.contract import CheckoutStatus, FailureCode, TaskQueue

# Transient failures (a database restart, a provider timeout, a killed worker) are retried without
# limit: giving up would leave the outcome unknown. Business failures are non-retryable errors.
# A checkout stuck on retries shows up in the ops views (attempt count, last failure).
FORWARD = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)
DB_STEP_TIMEOUT = timedelta(seconds=10)
# Longer than the provider client's own timeout, so a slow provider call ends in the client (and is
# retried under the same idempotency key) rather than being abandoned mid-flight.
PROVIDER_STEP_TIMEOUT = timedelta(seconds=30)
RECORD_TIMEOUT = timedelta(seconds=10)
# A record is first written by a local activity on the checkout worker (no extra events), but only
# for as long as fits in one workflow task: a local activity still retrying past the workflow
# task timeout makes the worker heartbeat the task, three events every few seconds, for as long
# as the checkout database is down. After the local attempts (at most 4 x 1.5 s plus 1.4 s of
# backoff: within the 10 s workflow task timeout's heartbeat at 8 s) the record becomes a regular
# activity on the checkout queue, retried by the server without adding an event per attempt.
LOCAL_RECORD_ATTEMPT = timedelta(seconds=1.5)
LOCAL_RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=4,
)
# A step still running after this long is published (its record and search attributes), so that
# buyers and operators see where a slow or retrying checkout stands; a shorter step is not.
SLOW_STEP = timedelta(seconds=1)
# Reservations outlive the payment window by this much; the sweeper frees them if a checkout
# vanished without compensating.
RESERVATION_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class StepOptions:
    """How the workflow runs one activity: where, how long an attempt may take, how to retry."""

    queue: TaskQueue
    summary: str
    timeout: timedelta = DB_STEP_TIMEOUT
    retry: RetryPolicy = field(default_factory=lambda: FORWARD)


def _provider(queue: TaskQueue, summary: str) -> StepOptions:
    """A step that reaches an outside provider (payments, tax, the carrier): the longer timeout."""
    return StepOptions(queue, summary, PROVIDER_STEP_TIMEOUT)


# Every activity the checkout calls, with its options (a test checks each queue is its domain's).
STEPS: dict[str, StepOptions] = {
    cart.LOCK.name: StepOptions(TaskQueue.CART, "lock the cart"),
    cart.UNLOCK.name: StepOptions(TaskQueue.CART, "undo: unlock the cart"),
    cart.CONVERT.name: StepOptions(TaskQueue.CART, "convert the cart"),
    products.PRICE_CART.name: StepOptions(TaskQueue.PRODUCTS, "check the cart's prices"),
    coupons.RESERVE.name: StepOptions(TaskQueue.COUPONS, "reserve the coupon"),
    coupons.RELEASE.name: StepOptions(TaskQueue.COUPONS, "undo: release the coupon"),
    coupons.CONFIRM.name: StepOptions(TaskQueue.COUPONS, "confirm the coupon"),
    inventory.RESERVE.name: StepOptions(TaskQueue.INVENTORY, "reserve the stock"),
    inventory.RELEASE.name: StepOptions(TaskQueue.INVENTORY, "undo: release the stock"),
    inventory.COMMIT.name: StepOptions(TaskQueue.INVENTORY, "commit the stock"),
    orders.CREATE.name: StepOptions(TaskQueue.ORDERS, "create the order"),
    orders.CANCEL.name: StepOptions(TaskQueue.ORDERS, "undo: cancel the order"),
    orders.MARK_PAID.name: StepOptions(TaskQueue.ORDERS, "mark the order paid"),
    orders.MARK_FULFILLING.name: StepOptions(TaskQueue.ORDERS, "mark the order fulfilling"),
    payments.AUTHORIZE.name: _provider(TaskQueue.PAYMENTS, "authorize the payment"),
    payments.CONFIRM.name: _provider(TaskQueue.PAYMENTS, "confirm the payment with a new method"),
    payments.REFRESH.name: _provider(TaskQueue.PAYMENTS, "re-read the payment"),
    payments.CAPTURE.name: _provider(TaskQueue.PAYMENTS, "capture the payment"),
    payments.VOID.name: _provider(TaskQueue.PAYMENTS, "undo: void or refund the payment"),
    # Tax (TAX_PROVIDER=stripe): the activity gives up after TAX_MAX_ATTEMPTS attempts itself
    # (then TAX_ON_FAILURE decides), so the retry policy stays the forward one.
    payments.CALCULATE_TAX.name: _provider(TaskQueue.PAYMENTS, "calculate the tax"),
    payments.COMMIT_TAX.name: _provider(TaskQueue.PAYMENTS, "record the tax transaction"),
    payments.REVERSE_TAX.name: _provider(TaskQueue.PAYMENTS, "undo: reverse the tax transaction"),
    shipping.CREATE.name: _provider(TaskQueue.SHIPPING, "book the shipment"),
    shipping.CANCEL.name: StepOptions(TaskQueue.SHIPPING, "undo: cancel the shipment"),
    # A provider event that reached the checkout after its payment was settled or undone.
    payments.SETTLE_ENDED.name: _provider(TaskQueue.PAYMENTS, "settle a late payment event"),
}


class CheckoutStopped(Exception):
    """Ends the forward path: the checkout failed, was cancelled or expired. Never leaves run()."""

    def __init__(self, status: CheckoutStatus, code: FailureCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def failure_code(error: BaseException) -> tuple[FailureCode, str]:
    """The failure code an activity failure carries (`internal_error` when it carries none)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type:
            try:
                return FailureCode(cause.type), cause.message
            except ValueError:
                pass
        cause = cause.__cause__
    return FailureCode.INTERNAL_ERROR, str(error)


async def gather_all(*calls: Awaitable[Any]) -> list[Any]:
    """Run `calls` concurrently and wait for every one, then raise the first failure.

    Waiting also when one fails matters: compensating while a sibling is still reserving would
    release before it reserves.
    """
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def is_cancellation(error: ActivityError) -> bool:
    """Whether an activity failed because it was cancelled (the workflow is being cancelled)."""
    return isinstance(error.cause, CancelledError)
