"""Compensations registered before each forward step, run in reverse, surviving cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio import workflow

Undo = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Failed:
    """A compensation that failed for good, and why."""

    name: str
    error: str


@dataclass
class Saga:
    """The undo list of one workflow run.

    Register a compensation *before* calling its forward step: if the step's outcome is unknown
    (timed out after the write), the compensation still runs, and compensations treat "nothing to
    undo" as success.
    """

    _pending: list[tuple[str, Undo]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def add(self, name: str, undo: Undo) -> None:
        """Register `undo` under `name` (once: re-registering the same name is ignored)."""
        if all(existing != name for existing, _ in self._pending):
            self._pending.append((name, undo))

    @property
    def names(self) -> set[str]:
        """Every compensation registered, run or still pending."""
        return {name for name, _ in self._pending} | set(self.ran)

    async def compensate(self) -> list[Failed]:
        """Run every pending compensation, newest first, each to completion.

        A cancellation of the workflow arriving meanwhile does not stop the undo: each step is
        shielded and awaited until it is done. A compensation that fails for good does not stop
        the others; it stays pending (so that `compensate` can run it again once an operator has
        mended the cause) and is returned.
        """
        failed: list[Failed] = []
        kept: list[tuple[str, Undo]] = []
        while self._pending:
            name, undo = self._pending.pop()
            error = await _run_shielded(name, undo)
            if error is None:
                self.ran.append(name)
            else:
                failed.append(Failed(name, error))
                kept.append((name, undo))
        self._pending = list(reversed(kept))
        return failed


async def _run_shielded(name: str, undo: Undo) -> str | None:
    """Run one compensation to its end whatever cancels the workflow; its error, if it failed."""
    task = asyncio.ensure_future(undo())
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            workflow.logger.warning("saga.compensation_shielded", extra={"step": name})
        except Exception:  # the task failed: its exception is read below
            break
    error = task.exception()
    if error is None:
        return None
    workflow.logger.error("saga.compensation_failed", extra={"step": name, "error": str(error)})
    cause = error.__cause__ or error
    return str(cause)
