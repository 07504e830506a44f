"""ReturnWorkflow: units of a delivered order sent back, restocked as received, and refunded.

Orchestration only (no I/O; activities are called by name on their domains' queues). The return
was recorded `requested` by the orders domain before the run started. It is approved by policy
or decided by an operator (updates `approve`, `reject`); approved, a return label is bought from
the carrier; then it waits for the parcel: an operator's count (update `receive`, restock per
line) or the carrier's delivery of the return label (signal `carrier_delivered`: every unit,
restocked). The received units marked for restock go back to stock (once per return and line,
whatever is retried), then the return's refund is asked of the payments domain under the
provider key `return-<return_id>` and followed until the provider settles it; the order's
status follows the refund like any other. Every step is idempotent and retried while it fails
transiently; one failing for good (a refund the provider fails, refuses, or finds no money for)
waits at `needs_attention` until an operator retries it or records that it was settled by hand.
The run never fails. Each status is recorded in the orders database (`orders.move_return`) and
upserted as the search attribute `ReturnStatus`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.inventory import contract as inventory
    from activities.orders import contract as orders
    from activities.payments import contract as payments
    from activities.shared import ActivityName
    from activities.shipping import contract as shipping
    from domains.orders.statuses import ReturnStatus
    from workflows.attention import OperatorAttention, Settled, call_step
    from workflows.checkout.contract import RETURN_STATUS
    from workflows.returns.models import (
        CARRIER_DELIVERED,
        WORKFLOW_TYPE,
        FailedStep,
        Receipt,
        ReceivedLine,
        Resolution,
        ReturnBody,
        ReturnInput,
    )

S = ReturnStatus
Step = Callable[[], Awaitable[object]]
PROVIDER_CALLS = {shipping.RETURN_LABEL.name, payments.SEND_REFUND.name}
# Every activity the return calls (a test checks each has options somewhere).
CALLS = frozenset(
    {
        orders.MOVE_RETURN.name,
        orders.RECEIVE_RETURN.name,
        shipping.RETURN_LABEL.name,
        inventory.RESTOCK.name,
        payments.REQUEST_REFUND.name,
        payments.SEND_REFUND.name,
    }
)
# While the provider settles the refund, how often its status is re-read (the payments domain
# records the provider's refund events as they come).
REFUND_RECHECK = timedelta(seconds=15)
# Refund statuses still moving at the provider.
SETTLING = frozenset({"pending", "requires_action"})
# The refund's status once an operator records that the buyer was paid back by hand.
SETTLED_BY_HAND = "settled_by_hand"
# Runs from this release on give the parcel `ship_back_days` to come back, then wait at
# needs_attention (older runs wait for it without a limit).
SHIP_BACK_PATCH = "return-ship-back-deadline"


class RefundNotMade(Exception):
    """The provider failed, cancelled or refused the return's refund: an operator decides."""


def _not_waiting(what: str) -> ApplicationError:
    return ApplicationError(
        f"the return is not waiting for {what}", type="return_not_awaiting", non_retryable=True
    )


@workflow.defn(name=WORKFLOW_TYPE)
class ReturnWorkflow(OperatorAttention):
    """One return, id `return-<return_id>`, on task queue `checkout`."""

    SUBJECT = "the return"

    @workflow.init
    def __init__(self, input: ReturnInput) -> None:
        self._input = input
        self._status: ReturnStatus = S.REQUESTED
        self._decision: Literal["approve", "reject"] | None = None
        self._receipt: Receipt | None = None
        self._failed: list[FailedStep] = []
        self._operator: Settled | bool | None = None  # True: retry; a Settled: resolve
        self._note: str | None = None
        self._attempt = 0
        self._refund_status: str | None = None
        # Waiting for the parcel with a deadline: an operator may receive or reject it meanwhile.
        self._awaiting_parcel = False

    @workflow.query(name="status")
    def status(self) -> ReturnBody:
        """Where the return stands."""
        return ReturnBody(
            return_id=self._input.return_id,
            status=self._status,
            failed=list(self._failed),
            note=self._note,
            refund_status=self._refund_status,
        )

    @workflow.update(name="approve")
    async def approve(self) -> ReturnBody:
        """An operator accepts the return; answers once it is recorded approved."""
        self._decision = "approve"
        await workflow.wait_condition(lambda: self._status != S.REQUESTED)
        return self.status()

    @workflow.update(name="reject")
    async def reject(self, resolution: Resolution) -> ReturnBody:
        """An operator refuses the return, or closes an approved one whose parcel is overdue
        (with a note); answers once it is recorded rejected."""
        self._decision, self._note = "reject", resolution.note
        await workflow.wait_condition(lambda: self._status == S.REJECTED)
        return self.status()

    @approve.validator
    def _may_decide(self) -> None:
        if self._status != S.REQUESTED or self._decision is not None:
            raise _not_waiting("a decision")

    @reject.validator
    def _may_reject(self, resolution: Resolution) -> None:
        if not (self._parcel_awaited() and self._status == S.NEEDS_ATTENTION):
            self._may_decide()

    @workflow.update(name="receive")
    async def receive(self, receipt: Receipt) -> ReturnBody:
        """An operator counted the parcel (restock per line); answers once it is recorded."""
        self._receipt = receipt
        await workflow.wait_condition(
            lambda: not self._awaiting_parcel and self._status not in (S.APPROVED, S.REQUESTED)
        )
        return self.status()

    @receive.validator
    def _may_receive(self, receipt: Receipt) -> None:
        if self._parcel_awaited():
            return
        if self._status != S.APPROVED or self._receipt is not None:
            raise _not_waiting("its parcel")

    def _parcel_awaited(self) -> bool:
        """Approved, its parcel awaited (overdue or not), and no operator has closed it."""
        return self._awaiting_parcel and self._receipt is None and self._decision != "reject"

    @workflow.signal(name=CARRIER_DELIVERED)
    def carrier_delivered(self) -> None:
        """The carrier delivered the return label's parcel: every unit is back, restocked."""
        if self._receipt is None and self._decision != "reject":
            lines = [
                ReceivedLine(order_item_id=line.order_item_id, quantity=line.quantity, restock=True)
                for line in self._input.lines
            ]
            self._receipt = Receipt(lines=lines, by="carrier")

    @workflow.run
    async def run(self, input: ReturnInput) -> ReturnBody:
        """Decide, label, receive, restock, refund."""
        self._upsert()
        if input.auto_approve:
            self._decision = "approve"
        await workflow.wait_condition(lambda: self._decision is not None)
        reason = "policy" if input.auto_approve else "operator"
        if self._decision == "reject":
            await self._move(S.REJECTED, reason, note=self._note)
        else:
            await self._move(S.APPROVED, reason)
            await self._until_done("return_label", self._label)
            if workflow.patched(SHIP_BACK_PATCH):
                back = await self._parcel_back()
            else:
                await workflow.wait_condition(lambda: self._receipt is not None)
                back = True
            if back:
                await self._receive_and_refund()
        workflow.logger.info(
            "return.ended",
            extra={"return_id": str(input.return_id), "status": self._status.value},
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _receive_and_refund(self) -> None:
        await self._until_done("receive", self._received)
        if self._input.refund.amount > 0:
            await self._until_done("refund", self._refund)
        if self._refund_status == SETTLED_BY_HAND:
            await self._move(S.REFUNDED, "operator", note=self._note)
        else:
            await self._move(S.REFUNDED, "refund")

    async def _parcel_back(self) -> bool:
        """Wait for the parcel (an operator's count, or the carrier's delivery of the label) for
        `ship_back_days` at a time; overdue, the return waits at needs_attention until the parcel
        comes after all, an operator waits again (`retry`), or closes it (`reject`, or `resolve`:
        the buyer kept the goods). True: it is back; False: it was closed, recorded rejected."""
        self._awaiting_parcel = True
        days = self._input.ship_back_days
        while not await self._ended_within(timedelta(days=days) if days else None):
            self._failed = [
                FailedStep(name="receive", error=f"the parcel has not come back within {days} days")
            ]
            workflow.logger.warning(
                "return.overdue", extra={"return_id": str(self._input.return_id), "days": days}
            )
            await self._move(S.NEEDS_ATTENTION, "not_received")
            action = await self._operator_answer_or(self._parcel_ended)
            if isinstance(action, Settled):
                self._decision, self._note = "reject", action.note
            if self._decision != "reject":  # an operator waits again, or the parcel came
                came = self._receipt.by if self._receipt and action is None else "operator"
                await self._move(S.APPROVED, came)
        self._awaiting_parcel = False
        if self._decision == "reject":
            await self._move(S.REJECTED, "operator", note=self._note)
            return False
        return True

    def _parcel_ended(self) -> bool:
        return self._receipt is not None or self._decision == "reject"

    async def _ended_within(self, limit: timedelta | None) -> bool:
        """Whether the parcel came (or an operator closed the return) within `limit`."""
        try:
            await workflow.wait_condition(self._parcel_ended, timeout=limit)
        except TimeoutError:
            return False
        return True

    async def _label(self) -> None:
        label: shipping.ReturnLabel = await self._call(
            shipping.RETURN_LABEL,
            shipping.ReturnLabelInput(
                return_id=self._input.return_id, order_id=self._input.order_id
            ),
        )
        value = orders.ReturnLabelValue(
            carrier=label.carrier, tracking_number=label.tracking_number, label_url=label.label_url
        )
        await self._call(
            orders.MOVE_RETURN,
            orders.MoveReturnInput(return_id=self._input.return_id, to=S.APPROVED, label=value),
        )

    async def _received(self) -> None:
        """Record what came back, then put the units marked for restock back on the shelf."""
        assert self._receipt is not None
        asked = [
            orders.ReceivedLineValue(
                order_item_id=line.order_item_id,
                quantity=line.quantity,
                restock=line.quantity if line.restock else 0,
            )
            for line in self._receipt.lines
        ]
        recorded: orders.ReceivedReturn = await self._call(
            orders.RECEIVE_RETURN,
            orders.ReceiveReturnInput(
                return_id=self._input.return_id, lines=asked, reason=self._receipt.by
            ),
        )
        self._set_status(S.RECEIVED)
        variants = {line.order_item_id: line.variant_id for line in self._input.lines}
        restock = [
            inventory.RestockLine(
                order_item_id=line.order_item_id,
                variant_id=variants[line.order_item_id],
                quantity=line.restock,
            )
            for line in recorded.lines
            if line.restock > 0 and line.order_item_id in variants
        ]
        if restock:
            await self._call(
                inventory.RESTOCK,
                inventory.RestockInput(return_id=self._input.return_id, lines=restock),
            )

    async def _refund(self) -> None:
        """Ask the return's refund of the payments domain and follow it until the provider
        settles it; RefundNotMade when it fails (the next attempt asks under a new key)."""
        return_id = self._input.return_id
        key = f"return-{return_id}" + (f":retry-{self._attempt}" if self._attempt else "")
        recorded: payments.RefundRequestResult = await self._call(
            payments.REQUEST_REFUND,
            payments.RefundRequestInput(
                order_id=self._input.order_id,
                amount=self._input.refund,
                key=key,
                reason="return",
                requested_by="returns",
                purpose="return",
                owner_id=return_id,
                allocations=[
                    payments.RefundAllocation(
                        reference=line.sku, quantity=line.quantity, amount=line.refund
                    )
                    for line in self._input.lines
                ],
            ),
        )
        send = payments.SendRefundInput(refund_id=recorded.refund_id, purpose="return")
        result: payments.RefundRequestResult = await self._call(payments.SEND_REFUND, send)
        while result.status in SETTLING:
            self._refund_status = result.status
            await workflow.sleep(REFUND_RECHECK)
            result = await self._call(payments.SEND_REFUND, send)
        self._refund_status = result.status
        if result.status != "succeeded":
            self._attempt += 1
            raise RefundNotMade(
                f"the refund was {result.status} ({result.failure_reason or 'no reason given'})"
            )

    async def _until_done(self, name: str, step: Step) -> None:
        """Run `step`; failing for good, it waits for an operator's retry (run again) or
        resolve (settled by hand), recorded as needs_attention meanwhile."""
        while True:
            try:
                await step()
                return
            except Exception as error:  # an ActivityError, or RefundNotMade
                self._failed = [FailedStep(name=name, error=str(error.__cause__ or error))]
            workflow.logger.error(
                "return.needs_attention",
                extra={"return_id": str(self._input.return_id), "step": name},
            )
            resumed = self._status
            await self._move(S.NEEDS_ATTENTION, name)
            action = await self._operator_answer()
            if isinstance(action, Settled):
                self._note = action.note
                if name == "refund":
                    self._refund_status = SETTLED_BY_HAND
                    return  # the run records it refunded
                await self._move(resumed, "operator", note=action.note)
                return
            await self._move(resumed, "operator")

    async def _move(self, to: ReturnStatus, reason: str, note: str | None = None) -> None:
        """Record the status in the orders database, then show it."""
        await self._call(
            orders.MOVE_RETURN,
            orders.MoveReturnInput(
                return_id=self._input.return_id, to=to, reason=reason, note=note
            ),
        )
        self._set_status(to)

    def _set_status(self, to: ReturnStatus) -> None:
        self._status = to
        self._upsert()

    def _upsert(self) -> None:
        workflow.upsert_search_attributes([RETURN_STATUS.value_set(self._status.value)])

    async def _call(self, activity: ActivityName[Any, Any], arg: object) -> Any:
        provider = activity.name in PROVIDER_CALLS
        return await call_step(activity, arg, provider=provider, summary="return")
