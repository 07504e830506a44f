"""Fires the delayed tok_async authorizations, which are scheduled in SQLite to survive restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kit.logging import get_logger
from sandbox.psp import payments
from sandbox.psp.store import Store

log = get_logger(__name__)

# Upper bound on a sleep, so a due time that slipped past (clock change) is noticed anyway.
MAX_SLEEP_S = 5.0


class AsyncAuthorizations:
    """Moves `processing` intents to `requires_capture` when their `due_at` has come."""

    def __init__(self, store: Store, *, on_commit: Callable[[], None]) -> None:
        self._store = store
        self._on_commit = on_commit
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """A new transition may have been scheduled: recompute the next due time."""
        self._wake.set()

    async def run(self) -> None:
        """Fire due transitions until cancelled."""
        while True:
            self._wake.clear()
            try:
                # Read first: most wake-ups come from unrelated writes and find nothing due, and
                # a read does not queue behind (or hold up) the write lock.
                due = await self._store.read(payments.next_due)
                if due is not None and due <= time.time():
                    moved = await self._store.transaction(
                        lambda conn: payments.settle_due(conn, time.time())
                    )
                    if moved:
                        log.info("sandbox.async.authorized", count=moved)
                        self._on_commit()
                    continue
            except Exception:
                log.exception("sandbox.async.error")
                due = time.time() + 1.0
            wait_s = MAX_SLEEP_S if due is None else min(MAX_SLEEP_S, max(0.0, due - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
            except TimeoutError:
                pass
