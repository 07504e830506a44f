"""What the after-sale workflows (an order's cancellation, a return) share: a step that failed for
good waits at `needs_attention` until an operator retries it (update `retry`) or records that it
was settled by hand (update `resolve`, whose payload each workflow types itself), and every step
is an activity on its domain's queue, retried while it fails transiently.

Orchestration only: nothing here does I/O or reads the clock, so a workflow using it replays the
same commands in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.shared import ActivityName, Payload
    from workflows.checkout.contract import TaskQueue
    from workflows.checkout.steps import DB_STEP_TIMEOUT, FORWARD, PROVIDER_STEP_TIMEOUT

# The status a run shows while a step waits for an operator (each workflow's status vocabulary
# has it under this value).
NEEDS_ATTENTION = "needs_attention"


class Settled(Payload):
    """An operator's record that the failed steps were settled by hand (update `resolve`)."""

    note: str


def not_waiting_for_operator(subject: str) -> ApplicationError:
    """The refusal of a `retry` or `resolve` the run does not wait for (`subject`: "the return")."""
    return ApplicationError(
        f"{subject} is not waiting for an operator",
        type="not_waiting_for_operator",
        non_retryable=True,
    )


class OperatorAttention:
    """A workflow class's `retry` and `resolve` updates and the wait for an operator's answer.

    The class sets `_status` (a status whose value may be NEEDS_ATTENTION), `_operator` (None
    until an operator answers: True to retry, a Settled to resolve) and `_failed` (the steps
    shown as failed).
    """

    # Who the refusal names: "the return", "the cancellation".
    SUBJECT = "the run"
    _status: str
    _operator: Settled | bool | None
    _failed: list[Any]

    @workflow.update(name="retry")
    def retry(self) -> None:
        """An operator mended the cause: run the failed steps again."""
        self._operator = True

    @workflow.update(name="resolve")
    def resolve(self, settled: Settled) -> None:
        """An operator settled the failed steps by hand: the run goes on without them."""
        self._operator = settled

    @retry.validator
    def _may_retry(self) -> None:
        if self._status != NEEDS_ATTENTION or self._operator is not None:
            raise not_waiting_for_operator(self.SUBJECT)

    @resolve.validator
    def _may_resolve(self, settled: Settled) -> None:
        self._may_retry()

    async def _operator_answer(self) -> Settled | bool:
        """Wait for an operator's retry (True) or resolution (a Settled), then clear it and the
        failed steps."""
        action = await self._operator_answer_or(lambda: False)
        assert action is not None
        return action

    async def _operator_answer_or(self, ended: Callable[[], bool]) -> Settled | bool | None:
        """Wait for an operator's retry (True) or resolution (a Settled), or until `ended` holds
        (None, when it came first), then clear the answer and the failed steps."""
        await workflow.wait_condition(lambda: self._operator is not None or ended())
        action, self._operator, self._failed = self._operator, None, []
        return action


async def call_step(
    activity: ActivityName[Any, Any], arg: object, *, provider: bool, summary: str
) -> Any:
    """Run `activity` on its domain's queue, retried while it fails transiently; a `provider`
    call (one reaching an outside service) has the longer timeout. `summary` prefixes its name in
    the web UI ("return" shows as `return: <activity>`)."""
    return await workflow.execute_activity(
        activity.name,
        arg,
        task_queue=TaskQueue(activity.domain).value,
        start_to_close_timeout=PROVIDER_STEP_TIMEOUT if provider else DB_STEP_TIMEOUT,
        retry_policy=FORWARD,
        result_type=activity.result,
        summary=f"{summary}: {activity.name}",
    )
