"""Woken jobs (the notification sender): run at start, when woken and when they asked to, and
not in between."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from workers.periodic import run_when_woken


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_a_woken_job_runs_when_woken_and_when_due_and_otherwise_rests() -> None:
    runs: list[int] = []
    # What each run answers: rest (None), (the second fails), "again in 10 ms", rest for good.
    answers: list[float | None] = [None, None, 0.01, None]
    stop, wake = asyncio.Event(), asyncio.Event()

    async def job() -> float | None:
        runs.append(1)
        if len(runs) == 2:
            raise RuntimeError("a failed run is logged and retried")
        return answers[min(len(runs) - 1, len(answers) - 1)]

    task = asyncio.create_task(run_when_woken("test.woken", stop, wake, job, idle_s=3600.0))
    try:
        await _until(lambda: len(runs) == 1)  # at once
        wake.set()
        await _until(lambda: len(runs) == 2)  # woken: fails, retried after RETRY_S (5 s)
        wake.set()  # a wake cuts the retry delay short
        await _until(lambda: len(runs) == 4)  # then due again after 10 ms, without a wake
        await asyncio.sleep(0.3)
        assert len(runs) == 4  # resting: an hour to the safety run
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=1)
