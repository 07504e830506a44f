"""Background jobs of a worker process: at an interval (the sweeper, inbox pruning), or when woken
(the notification sender, woken by the consumer that wrote what it sends).

Neither polls: between runs the job's task waits on an event with a timeout, and the intervals
are long (settings), so a process at rest costs no database transaction in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kit.logging import get_logger

log = get_logger(__name__)

# A woken job that failed (its database down, say) runs again this soon.
RETRY_S = 5.0


async def _until(stop: asyncio.Event, timeout_s: float, wake: asyncio.Event | None = None) -> None:
    """Wait until `stop` (or `wake`) is set, or `timeout_s` has passed."""
    waits = [asyncio.create_task(event.wait()) for event in (stop, wake) if event is not None]
    try:
        await asyncio.wait(waits, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


async def run_every(
    name: str, interval_s: float, stop: asyncio.Event, job: Callable[[], Awaitable[object]]
) -> None:
    """Run `job` now and then every `interval_s` until `stop` is set; a failed run is logged
    (`<name>.failed`) and the next one still comes."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception(f"{name}.failed")
        await _until(stop, interval_s)


async def run_when_woken(
    name: str,
    stop: asyncio.Event,
    wake: asyncio.Event,
    job: Callable[[], Awaitable[float | None]],
    *,
    idle_s: float,
) -> None:
    """Run `job` now, whenever `wake` is set, and otherwise after the seconds it returns (None,
    or more than `idle_s`: after `idle_s`, the safety net for a wake that never came), until
    `stop`. A failed run is logged (`<name>.failed`) and retried after `RETRY_S`."""
    while not stop.is_set():
        wake.clear()  # a wake during the run runs it again
        try:
            after_s = await job()
        except Exception:
            log.exception(f"{name}.failed")
            after_s = RETRY_S
        await _until(stop, idle_s if after_s is None else min(after_s, idle_s), wake)
