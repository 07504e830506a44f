"""`just soak` (`python -m tools.soak [--minutes 30] [--rate R]`): steady load, no faults, and a
look every ~30 s at what could grow without bound.

Starts its own platform (tools/chaos/stack.py), drives the chaos load generator's mixed workload
(tools/chaos/workload.py, journey.py) at a steady rate, and samples: RSS and open files of every
platform process, database connections per database (pg_stat_activity), Temporal history sizes of
the checkouts that ended since the last sample (events per workflow), and the row counts of the
outboxes (unpublished and total), the consumer inboxes and payment_webhook_events. At the end the
run is audited like a chaos run (tools/chaos/audit.py). It fails when growth looks unbounded over
the second half of the samples (see GROWTH_LIMITS) or when the audit finds a violation. Prints a
table of the samples and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev extra
from temporalio.client import Client

from devstack.services.process import ServiceError
from kit.db import DomainDatabase
from kit.logging import configure_logging, get_logger
from kit.settings import get_settings
from tools.chaos import audit as checks
from tools.chaos.client import ATTEMPT_TIMEOUT_S, GaveUp, PatientClient, RequestLog
from tools.chaos.journey import Journey, Record
from tools.chaos.run import while_alive
from tools.chaos.stack import ChaosStack
from tools.chaos.workload import Catalog, Plan, Shop, plan
from workflows.checkout.contract import WORKFLOW_TYPE

log = get_logger(__name__)

# The load is planned a minute at a time (races included), each buyer prepared just before.
CHUNK_S = 60.0
PREPARE_LEAD_S = 3.0
# Growth is judged over the second half of the samples, and only when that half is long enough
# to tell a trend from noise: at least this many samples spanning at least this long.
MIN_JUDGED_SAMPLES = 4
MIN_JUDGED_SPAN_S = 300.0


@dataclass(frozen=True)
class Limit:
    """Unbounded growth of a series: a fitted slope above `per_hour` AND a rise above `rise`
    between the first and last judged samples (a steep slope over a negligible rise is noise)."""

    per_hour: float
    rise: float


# Thresholds, per series of the second half of the samples:
GROWTH_LIMITS = {
    # A process under steady load plateaus once its caches are warm; 100 MB/h would exhaust a
    # 512 MiB container within hours, and 20 MB is above the jitter of the allocator.
    "rss_mb": Limit(per_hour=100.0, rise=20.0),
    # Open files (sockets included) follow the connection pools, which are bounded.
    "fds": Limit(per_hour=200.0, rise=20.0),
    # Connections per database are bounded by DB_POOL_SIZE + DB_MAX_OVERFLOW per process.
    "db_connections": Limit(per_hour=60.0, rise=5.0),
    # The relays publish within a second or two: a backlog that keeps growing is a stuck relay.
    "outbox_unpublished": Limit(per_hour=100.0, rise=50.0),
    # A checkout's history has a fixed shape per scenario: a growing mean is a loop.
    "history_mean": Limit(per_hour=50.0, rise=20.0),
    # Checkouts in flight grow when the platform cannot keep up with the rate at all.
    "in_flight": Limit(per_hour=200.0, rise=30.0),
}
# No checkout's history should come near Temporal's limits (51,200 events): a few hundred at most.
HISTORY_MAX_EVENTS = 2000


@dataclass
class Sample:
    """One look at the platform (at_s: seconds since the load started)."""

    at_s: float
    ended: int  # checkouts ended so far
    in_flight: int = 0  # accepted and not ended
    rss_mb: dict[str, float] = field(default_factory=dict)  # per process, its own RSS
    fds: dict[str, int] = field(default_factory=dict)
    db_connections: dict[str, int] = field(default_factory=dict)  # per database
    history_n: int = 0  # checkouts closed since the previous sample
    history_mean: float = 0.0  # their mean history length (events)
    history_max: int = 0
    outbox_unpublished: int = 0
    outbox_total: int = 0
    consumer_inbox: int = 0
    webhook_events: int = 0


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour (0 for fewer than two)."""
    if len(points) < 2 or len({t for t, _ in points}) < 2:
        return 0.0
    return statistics.linear_regression([t for t, _ in points], [v for _, v in points]).slope * 3600


def _processes(stack: ChaosStack, sample: Sample) -> None:
    for name, child in stack.children().items():
        if child.pid is None or not child.running:
            continue
        try:
            process = psutil.Process(child.pid)
            sample.rss_mb[name] = round(process.memory_info().rss / 2**20, 1)
            sample.fds[name] = process.num_fds()
        except psutil.Error:
            continue


async def _count(databases: Mapping[str, DomainDatabase], table: str, where: str = "") -> int:
    """Rows of `table` over every database that has it."""
    total = 0
    for db in databases.values():
        exists = await checks.rows(db, "SELECT to_regclass(:t) IS NOT NULL AS n", t=table)
        if exists[0]["n"]:
            sql = f"SELECT count(*) AS n FROM {table} {where}"
            total += int((await checks.rows(db, sql))[0]["n"])
    return total


async def _rows(databases: Mapping[str, DomainDatabase], sample: Sample) -> None:
    activity = await checks.rows(
        databases["checkout"],
        "SELECT datname, count(*) AS n FROM pg_stat_activity WHERE datname IS NOT NULL "
        "GROUP BY datname",
    )
    sample.db_connections = {row["datname"]: int(row["n"]) for row in activity}
    sample.outbox_unpublished = await _count(
        databases, "domain_outbox_events", "WHERE NOT processed"
    )
    sample.outbox_total = await _count(databases, "domain_outbox_events")
    sample.consumer_inbox = await _count(databases, "consumer_inbox")
    sample.webhook_events = await _count(databases, "payment_webhook_events")


async def _histories(temporal: Client, since: datetime, sample: Sample) -> None:
    """History lengths of the checkouts closed since `since`."""
    query = f"WorkflowType='{WORKFLOW_TYPE}' AND CloseTime > '{since.isoformat()}'"
    lengths = [execution.history_length async for execution in temporal.list_workflows(query)]
    if lengths:
        sample.history_n = len(lengths)
        sample.history_mean = round(statistics.fmean(lengths), 1)
        sample.history_max = max(lengths)


class Sampler:
    """Takes a Sample every `interval_s` until stopped."""

    def __init__(self, stack: ChaosStack, records: list[Record], requests: RequestLog) -> None:
        self.stack = stack
        self.records = records
        self.requests = requests
        self.samples: list[Sample] = []

    async def _sample(
        self, temporal: Client, databases: Mapping[str, DomainDatabase], since: datetime
    ) -> Sample:
        ended = sum(1 for r in self.records if r.ended_s)
        accepted = sum(1 for r in self.records if r.accepted_s)
        sample = Sample(self.requests.now(), ended, accepted - ended)
        _processes(self.stack, sample)
        await _rows(databases, sample)
        await _histories(temporal, since, sample)
        log.info("soak.sample", at_s=round(sample.at_s), ended=ended, in_flight=sample.in_flight)
        return sample

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Sample until `stop` is set (and once more then)."""
        temporal = await self.stack.temporal()
        databases = self.stack.databases()
        since = datetime.now(UTC)
        try:
            while True:
                now = datetime.now(UTC)
                try:
                    self.samples.append(await self._sample(temporal, databases, since))
                    since = now
                except Exception as exc:  # one look missed; the next may succeed
                    log.warning("soak.sample_failed", error=f"{type(exc).__name__}: {exc}")
                if stop.is_set():
                    return
                try:
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
                except TimeoutError:
                    pass
        finally:
            for db in databases.values():
                await db.dispose()


def _series(samples: list[Sample]) -> dict[str, list[tuple[float, float]]]:
    """Every judged series by name (`rss_mb:api`, `db_connections:payments`, ...)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for kind in ("rss_mb", "fds", "db_connections"):
            values: dict[str, float] = getattr(s, kind)
            for name, value in values.items():
                series.setdefault(f"{kind}:{name}", []).append((s.at_s, value))
        series.setdefault("outbox_unpublished", []).append((s.at_s, s.outbox_unpublished))
        series.setdefault("in_flight", []).append((s.at_s, s.in_flight))
        if s.history_n:
            series.setdefault("history_mean", []).append((s.at_s, s.history_mean))
    return series


def judge(samples: list[Sample]) -> tuple[bool, list[str]]:
    """(judged, failures): growth over the second half of the samples, and the hard limits."""
    failures = [
        f"a checkout's history reached {s.history_max} events (limit {HISTORY_MAX_EVENTS})"
        for s in samples
        if s.history_max > HISTORY_MAX_EVENTS
    ]
    half = samples[len(samples) // 2 :]
    judged = len(half) >= MIN_JUDGED_SAMPLES and half[-1].at_s - half[0].at_s >= MIN_JUDGED_SPAN_S
    if not judged:
        return False, failures
    for name, points in _series(half).items():
        limit = GROWTH_LIMITS[name.split(":")[0]]
        slope, rise = slope_per_hour(points), points[-1][1] - points[0][1]
        if slope > limit.per_hour and rise > limit.rise:
            failures.append(
                f"{name} grows {slope:.0f}/h (rose {rise:.0f} over the second half; "
                f"limit {limit.per_hour:.0f}/h and {limit.rise:.0f})"
            )
    return True, failures


class Soak:
    """The steady load: planned a minute at a time, each buyer prepared just before its start."""

    def __init__(self, api: PatientClient, rate: float, seed: int | None) -> None:
        self.api = api
        self.rate = rate
        self.rng = random.Random(seed)
        self.shop = Shop(api, uuid.uuid4().hex[:8])
        self.records: list[Record] = []

    async def _one(self, one: Plan, catalog: Catalog, rng: random.Random) -> None:
        await asyncio.sleep(max(0.0, one.at_s - PREPARE_LEAD_S - self.api.requests.now()))
        record = self.records[one.index]
        try:
            await self.shop.buyer(one, catalog, rng)
        except Exception as exc:
            record.error = f"could not prepare the buyer: {type(exc).__name__}: {exc}"
            return
        operator = catalog.operator
        journey = Journey(self.api, record, operator=operator, settle_timeout_s=600, rng=rng)
        await journey.run()

    async def run(self, duration_s: float) -> None:
        """Start checkouts at `rate` for `duration_s`, then wait for every one to end."""
        tasks = []
        start = 0.0
        while start < duration_s:
            n = max(1, round(self.rate * min(CHUNK_S, duration_s - start)))
            plans = plan(n, self.rate, self.rng)
            catalog = await self.shop.catalog(plans)
            for one in plans:
                one.at_s += start
                one.index = len(self.records)
                self.records.append(Record(one))
                rng = random.Random(self.rng.random())
                tasks.append(asyncio.create_task(self._one(one, catalog, rng)))
            start += n / self.rate
            await asyncio.sleep(max(0.0, start - 2 * PREPARE_LEAD_S - self.api.requests.now()))
        await asyncio.gather(*tasks)


async def _soak(
    stack: ChaosStack, minutes: float, rate: float, interval_s: float, seed: int | None
) -> dict[str, Any]:
    requests = RequestLog()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=ATTEMPT_TIMEOUT_S) as http:
        api = PatientClient(http, requests, rng=random.Random(seed))
        soak = Soak(api, rate, seed)
        sampler = Sampler(stack, soak.records, requests)
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(interval_s, stop))
        await soak.run(minutes * 60)
        stop.set()
        await sampling
        audit = checks.Audit()
        temporal = await stack.temporal()
        databases = stack.databases()
        try:
            busy = await checks.wait_quiescent(temporal, databases, stack, 600)
            await checks.check_outcomes(temporal, databases, stack.psp_url, soak.records, audit)
        finally:
            for db in databases.values():
                await db.dispose()
    return {"samples": sampler.samples, "records": soak.records, "audit": audit, "busy": busy}


def _table(samples: list[Sample]) -> str:
    header = (
        "   t_s  ended  in_flight  rss_mb_sum  rss_mb_max  fds_sum  db_conns  outbox_unpub"
        "  outbox_rows  inbox_rows  webhook_rows  hist_n  hist_mean  hist_max"
    )
    lines = [header]
    for s in samples:
        lines.append(
            f"{s.at_s:6.0f}  {s.ended:5d}  {s.in_flight:9d}  {sum(s.rss_mb.values()):10.0f}  "
            f"{max(s.rss_mb.values(), default=0):10.0f}  {sum(s.fds.values()):7d}  "
            f"{sum(s.db_connections.values()):8d}  {s.outbox_unpublished:12d}  "
            f"{s.outbox_total:11d}  {s.consumer_inbox:10d}  {s.webhook_events:12d}  "
            f"{s.history_n:6d}  {s.history_mean:9.1f}  {s.history_max:8d}"
        )
    return "\n".join(lines) + "\n"


def _report(result: dict[str, Any], minutes: float, rate: float) -> dict[str, Any]:
    samples: list[Sample] = result["samples"]
    records: list[Record] = result["records"]
    audit: checks.Audit = result["audit"]
    judged, failures = judge(samples)
    last = samples[-1] if samples else Sample(0, 0)
    ok = not failures and not audit.violations and not result["busy"]
    sys.stdout.write(_table(samples))
    for line in failures + [f"VIOLATION {v}" for v in audit.violations]:
        sys.stdout.write(f"  {line}\n")
    if not judged:
        sys.stdout.write(
            f"  growth not judged: the second half of the samples spans less than "
            f"{MIN_JUDGED_SPAN_S:.0f}s or has fewer than {MIN_JUDGED_SAMPLES} samples\n"
        )
    summary = {
        "minutes": minutes,
        "rate": rate,
        "checkouts": len(records),
        "ended": sum(1 for r in records if r.ended_s),
        "samples": len(samples),
        "growth_judged": judged,
        "growth_failures": failures,
        "violations": len(audit.violations),
        "still_busy": result["busy"],
        "last": asdict(last),
        "slopes_per_hour": {
            name: round(slope_per_hour(points), 1)
            for name, points in _series(samples[len(samples) // 2 :]).items()
        },
        "ok": ok,
    }
    sys.stdout.write(f"result: {'ok' if ok else 'FAILED'}\n{json.dumps(summary)}\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 0 when nothing grew without bound and every invariant held."""
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to load (30)")
    parser.add_argument("--rate", type=float, default=2.0, help="checkouts per second (2)")
    parser.add_argument("--interval-s", type=float, default=30.0, help="sampling interval (30 s)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="DATA_DIR (default: temp)")
    args = parser.parse_args(argv)
    configure_logging(get_settings())
    # SIGTERM as Ctrl-C: asyncio.run cancels the load cleanly, and the stack is stopped below.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="checkout-soak-"))
    stack = ChaosStack(data_dir)
    began = time.monotonic()
    try:
        stack.start()
        soak = _soak(stack, args.minutes, args.rate, args.interval_s, args.seed)
        result = asyncio.run(while_alive(stack, soak))
    except (ServiceError, RuntimeError, OSError, GaveUp) as exc:
        sys.stdout.write(f"error: {exc}; logs in {data_dir / 'logs'}\n")
        sys.stdout.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    finally:
        stack.stop()
    summary = _report(result, args.minutes, args.rate)
    log.info("soak.done", elapsed_s=round(time.monotonic() - began), ok=summary["ok"])
    if summary["ok"] and args.data_dir is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        sys.stdout.write(f"data and logs kept in {data_dir}\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
