"""OrderCancelWorkflow: a paid order whose parcel the carrier does not have yet, cancelled.

Orchestration only (no I/O; activities are called by name on their domains' queues). First the
shipping domain takes the parcel back (the shipment is cancelled by a guarded update, then the
label voided at the carrier): that is the decision, answered to the API through the `decision`
update. Refused (the carrier has the parcel), nothing changes and the run ends `refused`.
Accepted, the payment is refunded in full, the stock goes back on the shelf and the coupon
redemption is given back, then the order is marked `cancelled`. Every step is idempotent and
retried while it fails transiently; a step that fails for good waits at `needs_attention` until
an operator retries it or records that it was settled by hand. The run never fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.coupons import contract as coupons
    from activities.inventory import contract as inventory
    from activities.orders import contract as orders
    from activities.payments import contract as payments
    from activities.shared import ActivityName, ReleaseInput, carried_failure
    from activities.shipping import contract as shipping
    from activities.shipping.contract import WithdrawInput
    from workflows.attention import OperatorAttention, Settled, call_step
    from workflows.order_cancel.models import (
        WORKFLOW_TYPE,
        CancelStatus,
        Decision,
        FailedStep,
        OrderCancelBody,
        OrderCancelInput,
        workflow_id,
    )

Step = Callable[[], Awaitable[object]]
# Patch: the cancellation's refund under its own provider key, not the checkout's.
OWN_REFUND_KEY = "order-cancel-refund-key"
PROVIDER_CALLS = {shipping.WITHDRAW.name, payments.VOID.name}
# Every activity the cancellation calls (a test checks each has options somewhere).
CALLS = frozenset(
    {
        shipping.WITHDRAW.name,
        payments.VOID.name,
        inventory.RELEASE.name,
        coupons.RELEASE.name,
        orders.CANCEL.name,
    }
)


def _code(error: BaseException) -> str | None:
    """The stable code an activity failure carries, if any."""
    carried = carried_failure(error)
    return carried.type if carried is not None else None


@workflow.defn(name=WORKFLOW_TYPE)
class OrderCancelWorkflow(OperatorAttention):
    """One order's cancellation, id `order-cancel-<order_id>`, on task queue `checkout`."""

    SUBJECT = "the cancellation"

    @workflow.init
    def __init__(self, input: OrderCancelInput) -> None:
        self._input = input
        self._status: CancelStatus = CancelStatus.CLAIMING
        self._decision: Decision | None = None
        self._failed: list[FailedStep] = []
        self._operator: Settled | bool | None = None  # True: retry; a Settled: resolve
        self._note: str | None = None

    @workflow.update(name="decision")
    async def decision(self) -> OrderCancelBody:
        """The cancellation once it is decided (accepted, or refused because the carrier has the
        parcel), or once it waits for an operator before it could be decided."""
        await workflow.wait_condition(
            lambda: self._decision is not None or self._status == CancelStatus.NEEDS_ATTENTION
        )
        return self.status()

    @workflow.query(name="status")
    def status(self) -> OrderCancelBody:
        """Where the cancellation stands."""
        return OrderCancelBody(
            order_id=self._input.order_id,
            status=self._status,
            decision=self._decision,
            failed=list(self._failed),
            note=self._note,
        )

    @workflow.run
    async def run(self, input: OrderCancelInput) -> OrderCancelBody:
        """Claim the parcel, then give everything back, then cancel the order."""
        if await self._claim():
            self._decision, self._status = Decision.ACCEPTED, CancelStatus.CANCELLING
            release = ReleaseInput(
                checkout_id=input.checkout_id, reason=self._reason(), restock=True
            )
            await self._until_done(
                {
                    "refund_payment": lambda: self._call(payments.VOID, self._refund()),
                    "restock": lambda: self._call(inventory.RELEASE, release),
                    "release_coupon": lambda: self._call(coupons.RELEASE, release),
                }
            )
            cancel = orders.CancelOrderInput(checkout_id=input.checkout_id, reason=self._reason())
            await self._until_done({"cancel_order": lambda: self._call(orders.CANCEL, cancel)})
            self._status = CancelStatus.CANCELLED
        else:
            self._decision, self._status = Decision.ALREADY_SHIPPED, CancelStatus.REFUSED
        workflow.logger.info(
            "order_cancel.ended",
            extra={"order_id": str(input.order_id), "status": self._status.value},
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _claim(self) -> bool:
        """Whether the shipping domain took the parcel back (False: the carrier has it)."""
        shipped = False

        async def withdraw() -> None:
            nonlocal shipped
            try:
                await self._call(shipping.WITHDRAW, WithdrawInput(order_id=self._input.order_id))
            except ActivityError as error:
                if _code(error) != Decision.ALREADY_SHIPPED.value:
                    raise
                shipped = True

        await self._until_done({"withdraw_shipment": withdraw})
        return not shipped

    async def _until_done(self, steps: dict[str, Step]) -> None:
        """Run `steps` concurrently; those failing for good wait for an operator's retry (run
        again) or resolve (settled by hand)."""
        pending = dict(steps)
        while pending:
            names = list(pending)
            outcomes = await asyncio.gather(
                *(pending[name]() for name in names), return_exceptions=True
            )
            failed = {
                name: outcome
                for name, outcome in zip(names, outcomes, strict=True)
                if isinstance(outcome, BaseException)
            }
            pending = {name: pending[name] for name in failed}
            if not failed:
                return
            self._failed = [
                FailedStep(name=n, error=str(e.__cause__ or e)) for n, e in failed.items()
            ]
            workflow.logger.error("order_cancel.needs_attention", extra={"steps": list(failed)})
            resumed, self._status = self._status, CancelStatus.NEEDS_ATTENTION
            action = await self._operator_answer()
            self._status = resumed
            if isinstance(action, Settled):
                self._note = action.note
                return

    def _refund(self) -> payments.AuthorizeInput:
        # The payment compensation refunds whatever of the capture is left (a full refund). A
        # paid order's payment always has its provider intent, so the token (only used to
        # replay an authorization whose answer was lost) is never read. The refund has a key of
        # its own: under the checkout's, another refund of the payment could replay its answer.
        own_key = workflow.patched(OWN_REFUND_KEY)
        return payments.AuthorizeInput(
            checkout_id=self._input.checkout_id,
            order_id=self._input.order_id,
            amount=self._input.total,
            provider="stripe",
            token="",
            refund_key=f"{workflow_id(self._input.order_id)}:refund" if own_key else None,
        )

    def _reason(self) -> str:
        return f"cancelled_by_{self._input.requested_by}"

    async def _call(self, activity: ActivityName[Any, Any], arg: object) -> Any:
        provider = activity.name in PROVIDER_CALLS
        return await call_step(activity, arg, provider=provider, summary="order cancel")
