"""A checkout waiting at `needs_attention`: what an operator is asked, and how the run waits.

A compensation that failed for good (money or goods the platform could not give back on its own)
parks the checkout; an operator mends the cause and runs the failed compensations again
(`retry_compensation`), or records that they were settled by hand (`resolve`). Provider events
reaching the run meanwhile are acted on while it waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.checkout.contract import (
        FINAL,
        CheckoutStatus,
        FailureCode,
        StepName,
        StepStatus,
    )
    from workflows.checkout.models import (
        Attention,
        FailedCompensation,
        PaymentEvent,
        Resolution,
    )
    from workflows.checkout.progress import Progress
    from workflows.saga import Failed

OPERATOR_WAIT = "an operator: retry the failed compensations, or resolve them by hand"


class OperatorDesk:
    """The operator's updates and query of a checkout workflow, and its wait for them."""

    _status: CheckoutStatus
    _step: StepName
    _progress: Progress
    _unhandled_events: list[PaymentEvent]
    _waiting_for: str | None

    def __init__(self) -> None:
        self._attention: Attention | None = None
        self._operator: Resolution | bool | None = None  # True: retry; a Resolution: resolve
        self._note: str | None = None
        self._parked = 0  # how many times the checkout has waited at needs_attention

    @workflow.update(name="retry_compensation")
    def retry_compensation(self) -> None:
        """An operator mended the cause: run the failed compensations again."""
        self._operator = True

    @workflow.update(name="resolve")
    def resolve(self, resolution: Resolution) -> None:
        """An operator settled by hand what the failed compensations could not give back."""
        self._operator = resolution

    @retry_compensation.validator
    def _may_retry(self) -> None:
        self._must_wait_for_operator()

    @resolve.validator
    def _may_resolve(self, resolution: Resolution) -> None:
        self._must_wait_for_operator()

    @workflow.query(name="attention")
    def attention(self) -> Attention | None:
        """What the checkout waits for an operator about (None unless at needs_attention)."""
        return self._attention

    @workflow.query(name="attention_round")
    def attention_round(self) -> int:
        """How many times the checkout has waited at needs_attention (an operator's request
        names the wait it answers, so that a retried request is not taken for a new one)."""
        return self._parked

    def _must_wait_for_operator(self) -> None:
        if self._status in FINAL:
            raise ApplicationError(
                "the checkout has ended", type=FailureCode.CHECKOUT_ENDED.value, non_retryable=True
            )
        if self._attention is None or self._operator is not None:
            raise ApplicationError(
                "the checkout is not waiting for an operator",
                type=FailureCode.NOT_WAITING_FOR_OPERATOR.value,
                non_retryable=True,
            )

    async def _wait_for_operator(
        self,
        failures: list[Failed],
        code: FailureCode,
        on_events: Callable[[], Awaitable[None]],
    ) -> bool:
        """Wait at needs_attention; True when the operator asks to retry, False when resolved.

        A cancellation of the run cannot give back what failed: only an operator's retry or
        resolve ends this wait."""
        self._parked += 1
        self._attention = Attention(
            since=workflow.now(),
            failed=[FailedCompensation(name=f.name, error=f.error) for f in failures],
        )
        workflow.logger.error(
            "checkout.needs_attention", extra={"compensations": [f.name for f in failures]}
        )
        self._step, self._waiting_for = StepName.NEEDS_ATTENTION, OPERATOR_WAIT
        await self._progress.publish(
            {StepName.COMPENSATING: StepStatus.FAILED, self._step: StepStatus.STARTED},
            error_code="compensation_failed",
        )
        while self._operator is None:
            await workflow.wait_condition(
                lambda: self._operator is not None or bool(self._unhandled_events)
            )
            await on_events()
        action, self._operator, self._attention = self._operator, None, None
        self._waiting_for = None
        if isinstance(action, Resolution):
            self._note = action.note
            return False
        self._step = StepName.COMPENSATING
        await self._progress.publish(
            {StepName.NEEDS_ATTENTION: StepStatus.COMPLETED, self._step: StepStatus.STARTED},
            error_code=code.value,
        )
        return True
