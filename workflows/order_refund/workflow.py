"""OrderRefundWorkflow: part of a paid order's money given back, at an operator's request.

Orchestration only (no I/O; the payments domain's activities do the work on their queue). First
the request is recorded against what is left of the capture (`payments.request_refund`): that is
the decision, answered to the API through the `decision` update. Refused (more than is left, no
capture), nothing moved and the run ends. Accepted, the refund is sent to the provider under the
workflow id as its idempotency key (`payments.send_refund`): a retried attempt sends the very
same request, so the money moves once. From then on the provider's refund events move the
refund's status (and a failed refund waits for an operator like any other). The run never fails:
a step failing for good (a fault) is logged and kept in its body.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import contract as payments
    from workflows.attention import call_step
    from workflows.order_refund.models import (
        WORKFLOW_TYPE,
        OrderRefundBody,
        OrderRefundInput,
        RefundDecision,
    )

# Every activity the refund calls (a test checks each has options somewhere).
CALLS = frozenset({payments.REQUEST_REFUND.name, payments.SEND_REFUND.name})
# How the refund's steps show in the web UI (`order refund: <activity>`).
SUMMARY = "order refund"


def _refusal(error: ActivityError) -> tuple[str, str]:
    """The stable code and message an activity's business failure carries."""
    cause = error.__cause__
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type, cause.message
    return "internal_error", str(cause or error)


@workflow.defn(name=WORKFLOW_TYPE)
class OrderRefundWorkflow:
    """One operator's refund of part of an order, id `order-refund-<order_id>-<key hash>`, on
    task queue `checkout`."""

    @workflow.init
    def __init__(self, input: OrderRefundInput) -> None:
        self._body = OrderRefundBody(request=input)

    @workflow.update(name="decision")
    async def decision(self) -> OrderRefundBody:
        """The refund once it is decided: accepted (recorded) or refused."""
        await workflow.wait_condition(lambda: self._body.decision is not None)
        return self._body

    @workflow.query(name="status")
    def status(self) -> OrderRefundBody:
        """Where the refund stands."""
        return self._body

    @workflow.run
    async def run(self, input: OrderRefundInput) -> OrderRefundBody:
        """Record the request, then send it to the provider."""
        ask = payments.RefundRequestInput(
            order_id=input.order_id,
            amount=input.amount,
            key=workflow.info().workflow_id,
            reason=input.reason,
            requested_by=input.requested_by,
            purpose="operator_refund",
            owner_id=input.order_id,
        )
        try:
            recorded: payments.RefundRequestResult = await call_step(
                payments.REQUEST_REFUND, ask, provider=False, summary=SUMMARY
            )
        except ActivityError as error:
            code, message = _refusal(error)
            self._set(decision=RefundDecision.REFUSED, code=code, message=message)
            workflow.logger.warning(
                "order_refund.refused", extra={"order_id": str(input.order_id), "code": code}
            )
        else:
            self._set(decision=RefundDecision.ACCEPTED, refund=recorded)
            await self._send(recorded)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._body

    async def _send(self, recorded: payments.RefundRequestResult) -> None:
        """Refund at the provider (retried while it fails transiently). A permanent failure
        (a fault, not an answer: a refusal by the provider is `rejected`) is logged and kept in
        the body; the request stays recorded, visible in `GET /v1/ops/refunds/{id}`."""
        send = payments.SendRefundInput(refund_id=recorded.refund_id)
        try:
            sent: payments.RefundRequestResult = await call_step(
                payments.SEND_REFUND, send, provider=True, summary=SUMMARY
            )
        except ActivityError as error:
            code, message = _refusal(error)
            self._set(code=code, message=message)
            workflow.logger.error(
                "order_refund.send_failed",
                extra={"refund_id": str(recorded.refund_id), "code": code},
            )
            return
        self._set(refund=sent)
        workflow.logger.info(
            "order_refund.sent",
            extra={"refund_id": str(recorded.refund_id), "status": sent.status},
        )

    def _set(self, **changes: object) -> None:
        self._body = self._body.model_copy(update=changes)
