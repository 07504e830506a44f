"""Fires durable timers: transitions whose due times are stored in SQLite, so restarts resume them.

The tok_async authorizations and the carrier's tracking statuses are both timers; one loop serves
them all, sleeping until the earliest due time or until a write may have scheduled an earlier one.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kit.logging import get_logger
from sandbox.psp.store import Store

log = get_logger(__name__)

# Upper bound on a sleep, so a due time that slipped past (clock change) is noticed anyway.
MAX_SLEEP_S = 5.0


@dataclass(frozen=True)
class Timer:
    """One kind of durable transition: when the next is due, and how to fire every due one."""

    name: str
    next_due: Callable[[sqlite3.Connection], float | None]
    # Fires what is due at the given time, in one transaction; how many moved.
    fire_due: Callable[[sqlite3.Connection, float], int]


def _fire(conn: sqlite3.Connection, timer: Timer) -> int:
    return timer.fire_due(conn, time.time())


class Scheduler:
    """Fires each timer's transitions when their due time has come."""

    def __init__(
        self, store: Store, timers: Sequence[Timer], *, on_commit: Callable[[], None]
    ) -> None:
        self._store = store
        self._timers = tuple(timers)
        self._on_commit = on_commit
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """A new transition may have been scheduled: recompute the next due time."""
        self._wake.set()

    def _next_dues(self, conn: sqlite3.Connection) -> list[float | None]:
        return [timer.next_due(conn) for timer in self._timers]

    async def pending(self) -> dict[str, float]:
        """Per timer with a transition still to fire, when its next one is due (epoch seconds):
        what the sandbox will still do on its own, and the webhooks that will follow."""
        dues = await self._store.read(self._next_dues)
        return {
            timer.name: due
            for timer, due in zip(self._timers, dues, strict=True)
            if due is not None
        }

    async def run(self) -> None:
        """Fire due transitions until cancelled."""
        while True:
            self._wake.clear()
            try:
                # Read first: most wake-ups come from unrelated writes and find nothing due, and
                # a read does not queue behind (or hold up) the write lock.
                dues = await self._store.read(self._next_dues)
                now = time.time()
                due_timers = [
                    timer
                    for timer, due in zip(self._timers, dues, strict=True)
                    if due is not None and due <= now
                ]
                for timer in due_timers:
                    moved = await self._store.transaction(functools.partial(_fire, timer=timer))
                    if moved:
                        log.info("sandbox.timer.fired", timer=timer.name, count=moved)
                        self._on_commit()
                if due_timers:
                    # Firing may have scheduled the next transition already due (a catch-up).
                    continue
                upcoming = [due for due in dues if due is not None]
                due = min(upcoming) if upcoming else None
            except Exception:
                log.exception("sandbox.timer.error")
                due = time.time() + 1.0
            wait_s = MAX_SLEEP_S if due is None else min(MAX_SLEEP_S, max(0.0, due - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
            except TimeoutError:
                pass
