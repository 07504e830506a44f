"""Background jobs of a worker process that run at an interval (the sweeper, inbox pruning)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kit.logging import get_logger

log = get_logger(__name__)


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
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
