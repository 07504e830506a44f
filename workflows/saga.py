"""Compensations registered before each forward step, run in reverse, surviving cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.exceptions import ApplicationError


@dataclass
class Saga:
    """The undo list of one workflow run.

    Register a compensation *before* calling its forward step: if the step's outcome is unknown
    (timed out after the write), the compensation still runs, and compensations treat "nothing to
    undo" as success.
    """

    _pending: list[tuple[str, Callable[[], Awaitable[object]]]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def add(self, name: str, undo: Callable[[], Awaitable[object]]) -> None:
        """Register `undo` under `name` (once: re-registering the same name is ignored)."""
        if all(existing != name for existing, _ in self._pending):
            self._pending.append((name, undo))

    async def compensate(self) -> None:
        """Run every registered compensation, newest first, each to completion.

        A cancellation of the workflow arriving meanwhile does not stop the undo: each step is
        shielded and awaited until it is done. A compensation that fails for good does not stop the
        others; the run then fails loudly (ApplicationError) for an operator to look at.
        """
        failed: list[str] = []
        while self._pending:
            name, undo = self._pending.pop()
            task = asyncio.ensure_future(undo())
            while not task.done():
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    workflow.logger.warning("saga.compensation_shielded", extra={"step": name})
            if task.exception() is not None:
                workflow.logger.error(
                    "saga.compensation_failed", extra={"step": name, "error": str(task.exception())}
                )
                failed.append(name)
            else:
                self.ran.append(name)
        if failed:
            raise ApplicationError(
                f"compensations failed: {', '.join(failed)}",
                type="compensation_failed",
                non_retryable=True,
            )
