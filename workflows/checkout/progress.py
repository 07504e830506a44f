"""What buyers and operators see of a running checkout (workflow code: deterministic, no I/O).

Three views, kept in step by `Progress`:

- the checkout's record in the checkout database (its status body and steps), which
  `GET /v1/checkouts/{id}` serves without costing a workflow task;
- its search attributes (`CheckoutStatus`, `CheckoutStep`, `OrderNumber`, `CustomerId`), which the
  ops views and the web UI's list query;
- the run's current details in the web UI: the step, what the run waits for, and the
  compensations that failed at `needs_attention`.

A record and the search attributes are written together ("published"), when somebody acts on the
change (requires_action with its link, back to processing, an undo, the end) and for a step still
running after SLOW_STEP; a step that ends sooner is recorded with the next record. Watching costs
history events (a timer started, and cancelled when the stage ends first), so a run watches as a
whole until it has lasted SLOW_STEP (one timer: most checkouts end sooner), and each stage on its
own only from then on (runs started before the `run-watch` patch watch every stage). Records survive
an outage of the checkout database without lengthening the history: see `write_record`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.checkout import contract as record
    from activities.shared import ActivityName
    from workflows.checkout.contract import (
        CHECKOUT_STATUS,
        CHECKOUT_STEP,
        CUSTOMER_ID,
        ORDER_NUMBER,
        CheckoutStatus,
        StepName,
        StepStatus,
        TaskQueue,
    )
    from workflows.checkout.models import Attention, CheckoutStatusBody
    from workflows.checkout.steps import (
        FORWARD,
        LOCAL_RECORD_ATTEMPT,
        LOCAL_RECORD_RETRY,
        RECORD_TIMEOUT,
        SLOW_STEP,
    )

# The patch that replaced a timer per stage with one per run for the run's first SLOW_STEP.
RUN_WATCH = "run-watch"

InputT = TypeVar("InputT", bound=BaseModel)
ResultT = TypeVar("ResultT")


async def write_record(activity: ActivityName[InputT, ResultT], arg: InputT) -> ResultT:
    """Write the checkout's record: locally while that is quick, else as a regular activity.

    The local attempts fit within one workflow task (at most LOCAL_RECORD_RETRY's attempts of
    LOCAL_RECORD_ATTEMPT and their backoff, under eight seconds), so they never make the
    worker heartbeat the task. When the checkout database does not answer in time, the same
    (idempotent) write is scheduled on the checkout queue, where the server retries it for as long
    as the outage lasts: a handful of events whatever its length, and signals and updates are
    handled meanwhile.
    """
    summary = f"record the checkout ({activity.name.removeprefix('checkout.')})"
    try:
        local: ResultT = await workflow.execute_local_activity(
            activity.name,
            arg,
            start_to_close_timeout=LOCAL_RECORD_ATTEMPT,
            retry_policy=LOCAL_RECORD_RETRY,
            result_type=activity.result,
            summary=summary,
        )
        return local
    except FailureError as error:  # the attempts failed or timed out (never a cancellation)
        workflow.logger.warning(
            "checkout.record_deferred", extra={"activity": activity.name, "error": str(error)}
        )
    remote: ResultT = await workflow.execute_activity(
        activity.name,
        arg,
        task_queue=TaskQueue.CHECKOUT.value,
        start_to_close_timeout=RECORD_TIMEOUT,
        retry_policy=FORWARD,
        result_type=activity.result,
        summary=f"{summary}, retried by the server",
    )
    return remote


def describe(body: CheckoutStatusBody, waiting_for: str | None, attention: Attention | None) -> str:
    """The run's current details for the web UI (Temporal markdown): no personal data."""
    lines = [f"**{body.status}** at step `{body.step}`"]
    if body.order is not None:
        order = body.order
        lines.append(f"order {order.order_number}, {order.total_amount} {order.currency}")
    if body.payment is not None:
        lines.append(f"payment: {body.payment.status}")
    if waiting_for:
        lines.append(f"waiting for {waiting_for}")
    if body.failure is not None:
        lines.append(f"failure: `{body.failure.code.value}`")
    if attention is not None:
        lines.append(f"compensations failed since {attention.since:%Y-%m-%d %H:%M} UTC:")
        lines += [f"- `{failed.name}`: {failed.error}" for failed in attention.failed]
    return "\n\n".join(lines)


class Progress:
    """The checkout's published views, and the steps that moved since the last record."""

    def __init__(self, body: Callable[[], CheckoutStatusBody], details: Callable[[], str]) -> None:
        self._body = body
        self._details = details
        self._published_status = CheckoutStatus.PROCESSING.value
        self._visible: dict[str, str] = {}
        # Steps that moved since the last record, and when each of them started.
        self._moved: dict[StepName, StepStatus] = {}
        self._started: dict[StepName, datetime] = {}
        self._stage = 0  # bumped at every step and every record: a slow-step watch ends
        self._stage_steps: tuple[StepName, ...] = ()  # the steps of the current stage
        self._step_started: datetime | None = None
        self._publishing = asyncio.Lock()  # records are written in the order they were taken
        self._watching: asyncio.Future[None] | None = None  # the current stage's slow-step watch
        self._run_watch: bool | None = None  # RUN_WATCH taken (None: not decided yet)
        self._run_watched: asyncio.Future[None] | None = None  # the first stage's watch
        self._slow_run = False  # the run has lasted SLOW_STEP: every stage is watched
        self._stage_began = workflow.now()  # when the current stage began
        # The status body as the checkout database last recorded it (None before the first
        # record): what a client waiting for the status to leave `processing` is answered.
        self.recorded: CheckoutStatusBody | None = None

    def show_start(self, customer_id: str) -> None:
        """The search attributes a run starts with, upserted only where the start lacked them."""
        body = self._body()
        given = workflow.info().typed_search_attributes
        wanted = {CUSTOMER_ID: customer_id, CHECKOUT_STATUS: body.status, CHECKOUT_STEP: body.step}
        missing = [key.value_set(value) for key, value in wanted.items() if given.get(key) != value]
        if missing:
            workflow.upsert_search_attributes(missing)
        self._visible = {key.name: value for key, value in wanted.items()}
        self._step_started = workflow.now()
        workflow.set_current_details(self._details())

    def show_details(self) -> None:
        """Refresh the run's current details (what it waits for changed; no event is written)."""
        workflow.set_current_details(self._details())

    def settled(self) -> bool:
        """Whether the checkout database records a status other than `processing`."""
        return self.recorded is not None and self.recorded.status != CheckoutStatus.PROCESSING

    def status_changed(self) -> bool:
        """Whether the status differs from the one last published."""
        return self._body().status != self._published_status

    async def enter(self, previous: StepName, steps: tuple[StepName, ...]) -> None:
        """`steps` started (`previous` completed): published now if the status changed since the
        last record, else only if the stage is still running after SLOW_STEP."""
        moved: dict[StepName, StepStatus] = {}
        if previous not in steps:
            moved[previous] = StepStatus.COMPLETED
            self._observe_step_end(previous)
        # Every step of the stage before has ended (not only its last one).
        ended = {step: StepStatus.COMPLETED for step in self._stage_steps if step not in steps}
        moved |= {step: StepStatus.STARTED for step in steps}
        self._stage_steps = steps
        self._note_moves(ended | moved)
        self._stage_began = workflow.now()
        workflow.set_current_details(self._details())
        if self.status_changed():
            await self.publish()
        else:
            self._next_stage()
            if self._run_watched is None:
                self._run_watched = asyncio.ensure_future(self._watch_first(self._stage))
            elif not self._run_watch or self._slow_run:
                self._watching = asyncio.ensure_future(self._publish_if_slow(self._stage))

    def _next_stage(self) -> None:
        """A new stage or a record: a stage's watch still waiting has nothing left to show.

        RUN_WATCH is decided here, at the first change after the first stage started (after an
        activity's end, a timer or a signal: the same workflow task on replay as when it ran)."""
        if self._run_watch is None and self._run_watched is not None:
            self._run_watch = workflow.patched(RUN_WATCH)
        self._stage += 1

    async def publish(
        self,
        moved: dict[StepName, StepStatus] | None = None,
        error_code: str | None = None,
        note: str | None = None,
    ) -> None:
        """Show the checkout as it is now: one upsert of the search attributes that changed,
        one record of the status body and of the steps that moved."""
        self._note_moves(moved or {})
        self._next_stage()
        async with self._publishing:
            body = self._body()
            self._show_changed(body)
            workflow.set_current_details(self._details())
            steps, self._moved = self._moved, {}
            started, self._started = self._started, {}
            self._published_status = body.status
            await write_record(
                record.RECORD_PROGRESS,
                record.ProgressInput(
                    checkout_id=body.checkout_id,
                    steps={name.value: status.value for name, status in steps.items()},
                    error_code=error_code,
                    body=body,
                    note=note,
                    started_at={name.value: at for name, at in started.items()},
                ),
            )
            self.recorded = body

    def show_ended(self, body: CheckoutStatusBody) -> None:
        """A checkout found ended when its run started: its final status, shown as recorded."""
        self.recorded = body
        self._show_changed(body)
        workflow.set_current_details(self._details())

    def _note_moves(self, moved: dict[StepName, StepStatus]) -> None:
        now = workflow.now()
        for step, status in moved.items():
            self._moved[step] = status
            self._started.setdefault(step, now)

    async def _watch_first(self, stage: int) -> None:
        """The first stage's watch, the same timer on either path of RUN_WATCH: before it, it
        ended with the stage; since, it watches the run's first SLOW_STEP (never cancelled: a run
        that ends sooner leaves it). Then the current stage is shown if it has lasted SLOW_STEP,
        else watched for the rest of it; every later stage is watched on its own."""
        try:
            await workflow.wait_condition(
                lambda: self._stage != stage and not self._run_watch, timeout=SLOW_STEP
            )
            return  # runs started before RUN_WATCH: the stage ended first
        except TimeoutError:
            pass
        if self._run_watch is None:
            self._run_watch = workflow.patched(RUN_WATCH)
        if self._run_watch:
            self._slow_run = True
            lasted = workflow.now() - self._stage_began
            if lasted < SLOW_STEP:  # the current stage began since: it is watched on its own
                self._watching = asyncio.ensure_future(
                    self._publish_if_slow(self._stage, SLOW_STEP - lasted)
                )
                return
        await self.publish()

    async def _publish_if_slow(self, stage: int, after: timedelta = SLOW_STEP) -> None:
        try:
            await workflow.wait_condition(lambda: self._stage != stage, timeout=after)
        except TimeoutError:
            await self.publish()

    def _show_changed(self, body: CheckoutStatusBody) -> None:
        current = {CHECKOUT_STATUS: body.status, CHECKOUT_STEP: body.step}
        if body.order is not None:
            current[ORDER_NUMBER] = body.order.order_number
        changed = [key for key, value in current.items() if self._visible.get(key.name) != value]
        if changed:
            workflow.upsert_search_attributes([key.value_set(current[key]) for key in changed])
            self._visible.update({key.name: current[key] for key in changed})

    def _observe_step_end(self, step: StepName) -> None:
        now = workflow.now()
        if self._step_started is not None:
            workflow.metric_meter().create_histogram_timedelta(
                "checkout_step_duration", "time spent in a checkout step"
            ).with_additional_attributes({"step": step.value}).record(now - self._step_started)
        self._step_started = now
