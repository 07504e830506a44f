"""A known replay defect of `run-watch` runs: their first-second watch races a stage's end.

`races/run_watch_split_task.json` is a history written by today's code (fast-tier stand-ins with
random delays, a dev server, a worker cache of two, status queries polled meanwhile). In its
workflow task 13 the lock_cart activity's completion (event 12) and the first-second timer
(event 14) arrived together. The task's commands show that its worker had applied event 12
before event 14: the checkout had entered its next stage when the timer fired in an activation of
its own, found the stage just begun, and started a timer for the rest of it (event 19, "1s"). A
rebuild of a running checkout does that: a worker that rebuilds a run from a history ending in
events no workflow task has started yet (as for a query about a run it does not have cached)
runs the workflow over them at once, at the previous task's time (the second test).

Replayed, both events are applied in one activation, and the watch's timeout runs first (ready
callbacks run before any `wait_condition` predicate is checked): it finds lock_cart still current,
2.4 s old, and publishes (an upsert and a record local activity) instead of starting a timer, so
the activity ids that follow are shifted by one. A worker that rebuilds such a run (after an
eviction, or for a query) fails its task: the run is stuck until it is reset.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartActivityInput,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle, NondeterminismError

from kit.codec import data_converter
from kit.settings import get_settings
from workflows.checkout.workflow import CheckoutWorkflow

SPLIT_TASK = Path(__file__).parent / "races" / "run_watch_split_task.json"
# Event 12 completes cart.lock; the task that handles it starts at event 15.
LOCK_COMPLETED = 12
SHIFTED = "Activity id of scheduled event '3' does not match activity id of activity command '4'"

pytestmark = pytest.mark.timeout(60)


class _Scheduled(Interceptor):
    """Notes the regular activities the replayed workflow schedules, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        names = self.names

        class Outbound(WorkflowOutboundInterceptor):
            def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
                names.append(input.activity)
                return super().start_activity(input)

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound))

        return Inbound


async def _history(last_event: int | None = None) -> WorkflowHistory:
    raw = json.loads(await asyncio.to_thread(SPLIT_TASK.read_text))
    if last_event is not None:
        raw["events"] = [e for e in raw["events"] if int(e["eventId"]) <= last_event]
    return WorkflowHistory.from_json("checkout-run-watch-split-task", raw)


def _replayer(*interceptors: Interceptor) -> Replayer:
    return Replayer(
        workflows=[CheckoutWorkflow],
        data_converter=data_converter(get_settings().temporal),
        interceptors=interceptors,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


async def test_a_run_whose_watch_and_stage_end_were_applied_apart_does_not_replay() -> None:
    with pytest.raises(NondeterminismError, match=SHIFTED):
        await _replayer().replay_workflow(await _history())


async def test_a_rebuild_runs_the_workflow_over_events_no_task_has_started() -> None:
    before, after = _Scheduled(), _Scheduled()

    await _replayer(before).replay_workflow(await _history(LOCK_COMPLETED - 1))
    await _replayer(after).replay_workflow(await _history(LOCK_COMPLETED))

    assert before.names == ["cart.lock"]
    # The next stage was entered on the completion alone, before its workflow task existed.
    assert after.names == ["cart.lock", "products.price_cart", "inventory.reserve"]
