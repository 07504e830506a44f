"""The capacity of each domain worker, measured in `just bench`'s load phase (docs/capacity.md).

Per worker process (one per domain queue, as `just up` and Kubernetes run them):

- activities per checkout, counted in the load phase's workflow histories by task queue
  (`ActivityTaskScheduled`; the checkout worker's local activities are its `MarkerRecorded`s);
- CPU seconds per checkout, from the process's CPU time over the phase;
- activities per second per core: the two divided, i.e. what one fully busy core would run;
- database connections: the most seen at once in `pg_stat_activity` during the phase, per pool
  (`application_name` `checkout-<domain>:<role>`), against the pool's ceiling.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tools.columns import aligned
from workers.bootstrap import WORKER_DOMAINS

# How often the connection sampler reads `pg_stat_activity` during the phase.
SAMPLE_S = 0.25
_POOL = re.compile(r"^checkout-(?P<domain>[a-z]+):(?P<role>[a-z]+)$")


async def activities_per_run(client: Client, workflow_ids: Sequence[str]) -> dict[str, float]:
    """The mean number of activities per workflow, by the task queue that ran them (local
    activities count for the queue of the workflow: `checkout`)."""
    counts: Counter[str] = Counter()
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                counts[event.activity_task_scheduled_event_attributes.task_queue.name] += 1
            elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                counts["checkout"] += 1
    runs = max(len(workflow_ids), 1)
    return {queue: count / runs for queue, count in counts.items()}


@dataclass
class ConnectionPeaks:
    """Samples `pg_stat_activity` while it is entered: the most connections each pool held at once.

    `async with ConnectionPeaks(dsn) as peaks: ...` then `peaks.peak` maps `(domain, role)` to
    the highest count seen (idle pooled connections included: they are held).
    """

    dsn: str
    interval_s: float = SAMPLE_S
    peak: dict[tuple[str, str], int] = field(default_factory=dict)
    _connection: asyncpg.Connection | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ConnectionPeaks:
        self._connection = await asyncpg.connect(self.dsn)
        await self.sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._connection is not None:
            await self.sample()
            await self._connection.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.sample()

    async def sample(self) -> None:
        """Read the connections per application once; keep each pool's highest count."""
        assert self._connection is not None
        rows = await self._connection.fetch(
            "SELECT application_name, count(*) AS n FROM pg_stat_activity "
            "WHERE application_name LIKE 'checkout-%' GROUP BY 1"
        )
        for row in rows:
            match = _POOL.match(row["application_name"])
            if match is not None:
                key = (match["domain"], match["role"])
                self.peak[key] = max(self.peak.get(key, 0), int(row["n"]))


@dataclass(frozen=True)
class WorkerCapacity:
    """One domain worker's measured capacity."""

    domain: str
    activities_per_checkout: float
    cpu_s_per_checkout: float
    connections_peak: int
    pool_ceiling: int

    @property
    def activities_per_core_s(self) -> float | None:
        """Activities one fully busy core runs per second."""
        if self.cpu_s_per_checkout <= 0:
            return None
        return self.activities_per_checkout / self.cpu_s_per_checkout

    @property
    def checkouts_per_core_s(self) -> float | None:
        """Checkouts one fully busy core of this worker serves per second."""
        return 1 / self.cpu_s_per_checkout if self.cpu_s_per_checkout > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """For the bench's JSON line."""
        per_core = self.activities_per_core_s
        checkouts = self.checkouts_per_core_s
        return {
            "activities_per_checkout": round(self.activities_per_checkout, 2),
            "cpu_ms_per_checkout": round(self.cpu_s_per_checkout * 1000, 1),
            "activities_per_core_s": round(per_core) if per_core is not None else None,
            "checkouts_per_core_s": round(checkouts) if checkouts is not None else None,
            "connections_peak": self.connections_peak,
            "pool_ceiling": self.pool_ceiling,
        }


def worker_capacity(
    activities: dict[str, float],
    cpu_s_per_checkout: dict[str, float],
    peaks: dict[tuple[str, str], int],
    pool_ceiling: int,
) -> list[WorkerCapacity]:
    """One row per domain worker process (`worker-<domain>` in the CPU figures)."""
    return [
        WorkerCapacity(
            domain=domain,
            activities_per_checkout=activities.get(domain, 0.0),
            cpu_s_per_checkout=cpu_s_per_checkout.get(f"worker-{domain}", 0.0),
            connections_peak=peaks.get((domain, "worker"), 0),
            pool_ceiling=pool_ceiling,
        )
        for domain in WORKER_DOMAINS
    ]


def table(rows: Sequence[WorkerCapacity]) -> list[str]:
    """The capacity table as text lines."""
    header = (
        "worker",
        "activities/checkout",
        "CPU ms/checkout",
        "activities/s/core",
        "checkouts/s/core",
        "connections (peak/pool)",
    )
    cells = [header]
    for row in rows:
        figures = row.as_dict()
        cells.append(
            (
                row.domain,
                f"{row.activities_per_checkout:.2f}",
                f"{figures['cpu_ms_per_checkout']:.1f}",
                str(figures["activities_per_core_s"] or "-"),
                str(figures["checkouts_per_core_s"] or "-"),
                f"{row.connections_peak}/{row.pool_ceiling}",
            )
        )
    return aligned(cells)
