"""One chaos run: a stack of its own, the shop, the load and the faults together, the audit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from devstack.services.process import ServiceError
from kit.logging import get_logger
from tools.chaos import audit as checks
from tools.chaos.client import ATTEMPT_TIMEOUT_S, PatientClient, RequestLog
from tools.chaos.faults import RECOVERY_TIMEOUT_S, Fault, FaultResult, Injector, schedule
from tools.chaos.journey import Journey, Record
from tools.chaos.moneyback import MoneyBack, abandoned_workflows
from tools.chaos.stack import ChaosStack
from tools.chaos.workload import SCENARIOS, Catalog, Plan, Shop, plan

log = get_logger(__name__)
T = TypeVar("T")

# The load starts this long before the first fault, so that the first one hits work in flight.
WARMUP_S = 5.0
# Each fault's expected length beyond its hold (restart, /healthz, probe), to pace the load.
RECOVERY_ESTIMATE_S = 10.0
# Without faults, the default rate (checkouts started per second).
DEFAULT_RATE = 2.0
# Buyers and carts are prepared this many at a time.
PREPARE_CONCURRENCY = 16


@dataclass
class ChaosConfig:
    """What `python -m tools.chaos` was asked to do."""

    checkouts: int = 100
    rate: float | None = None  # None: paced so that the load lasts as long as the faults
    faults: str = "all"
    rounds: int = 1
    psp_down_s: float = 30.0
    psp_slow_s: float = 30.0
    carrier_down_s: float = 30.0
    carrier_slow_s: float = 30.0
    gap_s: float = 3.0  # between one fault's recovery and the next injection
    seed: int | None = None
    data_dir: Path | None = None
    keep: bool = False  # keep DATA_DIR (it is kept anyway when something was wrong)
    settle_timeout_s: float = 600.0  # one checkout, from acceptance to its end
    # At most this many checkouts of the load in flight (races and probes aside): beyond the
    # platform's capacity an open-loop load only measures its queues, and every poll of a
    # running checkout costs a workflow query.
    max_in_flight: int = 64
    quiesce_timeout_s: float = 600.0  # the whole platform, after the load
    recovery_timeout_s: float = RECOVERY_TIMEOUT_S  # one fault: over, healthy, a probe completed
    extra_env: dict[str, str] = field(default_factory=dict)

    def fault_schedule(self) -> list[Fault]:
        """The faults to inject, in order."""
        return schedule(
            self.faults,
            self.rounds,
            replicas=int(self.extra_env.get("WORKER_REPLICAS", "1")),  # as the stack runs
            psp_down_s=self.psp_down_s,
            psp_slow_s=self.psp_slow_s,
            carrier_down_s=self.carrier_down_s,
            carrier_slow_s=self.carrier_slow_s,
        )

    def load_rate(self, faults: Sequence[Fault]) -> float:
        """Checkouts started per second: as asked, or so that the load spans the faults."""
        if self.rate:
            return self.rate
        if not faults:
            return DEFAULT_RATE
        span = WARMUP_S + sum(f.hold_s + RECOVERY_ESTIMATE_S + self.gap_s for f in faults)
        return max(0.2, min(10.0, self.checkouts / span))


@dataclass
class Outcome:
    """Everything a run measured, for the report."""

    config: ChaosConfig
    rate: float
    data_dir: Path
    records: list[Record] = field(default_factory=list)
    probes: list[Record] = field(default_factory=list)
    faults: list[FaultResult] = field(default_factory=list)
    audit: checks.Audit = field(default_factory=checks.Audit)
    requests: RequestLog = field(default_factory=RequestLog)
    elapsed_s: float = 0.0
    # Seconds spent starting the stack, shopping, under load (faults included), settling.
    phases: dict[str, float] = field(default_factory=dict)
    still_busy: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """No violation, every fault recovered, nothing unfinished, no error."""
        return (
            not self.audit.violations
            and all(f.recovered for f in self.faults)
            and not self.still_busy
            and self.error is None
        )


async def _bounded(n: int, items: Sequence[T], one: Callable[[T], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(n)

    async def guarded(item: T) -> None:
        async with gate:
            await one(item)

    await asyncio.gather(*(guarded(item) for item in items))


async def while_alive(stack: ChaosStack, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, or RuntimeError as soon as the devstack supervisor has exited (a crash
    loop, or a signal from elsewhere): nothing would recover from then on."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=1)
        if not task.done() and not stack.alive():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise RuntimeError(
                f"the devstack supervisor exited during the run; see {stack.process.log_path}"
            )
    return task.result()


class Pacer:
    """Keeps the load and the faults in step, whatever the recoveries take.

    With n checkouts and f faults, fault i is injected once i*n/f checkouts have started (see
    `Run._load_reached`), and checkout k may start only once fault floor(k*f/n) - 1 has been
    recovered from: the load never runs ahead of the faults, so each fault meets work in flight.
    """

    def __init__(self, checkouts: int, faults: int) -> None:
        self.checkouts = checkouts
        self.faults = faults
        self.recovered = 0
        self._changed = asyncio.Condition()

    def _may_start(self, index: int) -> bool:
        return index * self.faults < (self.recovered + 1) * self.checkouts

    async def turn(self, index: int) -> None:
        """Wait until checkout `index` (in start order) may start."""
        if self.faults:
            async with self._changed:
                await self._changed.wait_for(lambda: self._may_start(index))

    async def fault_over(self) -> None:
        """One more fault recovered from (or given up on)."""
        async with self._changed:
            self.recovered += 1
            self._changed.notify_all()


def _pace_index(records: list[Record]) -> dict[int, int]:
    """Per plan index, the index it starts with: a race's members all with its first one."""
    first: dict[str, int] = {}
    return {
        r.plan.index: first.setdefault(r.plan.group, r.plan.index) if r.plan.group else r.plan.index
        for r in records
    }


class Run:
    """The asynchronous part of a run, against a started stack."""

    def __init__(self, config: ChaosConfig, stack: ChaosStack, outcome: Outcome) -> None:
        self.config = config
        self.stack = stack
        self.outcome = outcome
        self.rng = random.Random(config.seed)
        self.requests = outcome.requests
        self.pacer = Pacer(0, 0)  # set once the load is planned
        self.pace_index: dict[int, int] = {}
        self.gate = asyncio.Semaphore(config.max_in_flight)

    def journey(
        self,
        api: PatientClient,
        record: Record,
        catalog: Catalog,
        settle: float,
        gate: asyncio.Semaphore | None = None,
        turn: Callable[[], Awaitable[None]] | None = None,
    ) -> Journey:
        """A journey with this run's settings."""
        rng = random.Random(self.rng.random())
        aftersale = MoneyBack(
            api,
            catalog.operator,
            self.stack.psp_url,
            self.stack.settings.stripe.api_key.get_secret_value(),
            random.Random(rng.random()),
        )
        return Journey(
            api,
            record,
            operator=catalog.operator,
            settle_timeout_s=settle,
            rng=rng,
            gate=gate,
            turn=turn,
            after=aftersale.run,
        )

    async def __call__(self) -> None:
        """The run; RuntimeError as soon as the devstack supervisor is gone (a crash loop)."""
        await while_alive(self.stack, self._work())

    async def _work(self) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            base_url=self.stack.api_url, timeout=ATTEMPT_TIMEOUT_S, limits=limits
        ) as http:
            api = PatientClient(http, self.requests, rng=random.Random(self.rng.random()))
            faults = self.config.fault_schedule()
            plans = plan(self.config.checkouts, self.outcome.rate, self.rng)
            probes = [Plan(-1 - i, SCENARIOS["probe"], at_s=0.0) for i in range(len(faults))]
            catalog = await self._shop(api, plans, probes)
            self.outcome.phases["shop_s"] = round(time.monotonic() - self.requests.origin, 1)
            self.requests.origin, self.requests.samples = time.monotonic(), []
            records = self.outcome.records = [Record(p) for p in plans]
            self.pacer = Pacer(len(records), len(faults))
            self.pace_index = _pace_index(records)
            load = asyncio.gather(*(self._checkout(api, catalog, r) for r in records))
            self.outcome.faults = await self._faults(api, catalog, faults, probes)
            await load
            self.outcome.phases["load_s"] = round(self.requests.now(), 1)
            log.info("chaos.load.done", **self.outcome.phases)
            await self._audit(api, catalog)

    async def _checkout(self, api: PatientClient, catalog: Catalog, record: Record) -> None:
        """One checkout of the load: paced with the faults, at most `max_in_flight` at once
        (a race's members start together, whatever is in flight)."""
        index = self.pace_index[record.plan.index]
        gate = None if record.plan.group else self.gate
        settle = self.config.settle_timeout_s
        turn = functools.partial(self.pacer.turn, index)
        await self.journey(api, record, catalog, settle, gate, turn).run()

    async def _shop(self, api: PatientClient, plans: list[Plan], probes: list[Plan]) -> Catalog:
        shop = Shop(api, uuid.uuid4().hex[:8])
        catalog = await shop.catalog(plans)
        rng = random.Random(self.rng.random())
        await _bounded(PREPARE_CONCURRENCY, plans + probes, lambda p: shop.buyer(p, catalog, rng))
        log.info("chaos.shop.ready", checkouts=len(plans), probes=len(probes))
        return catalog

    async def _faults(
        self, api: PatientClient, catalog: Catalog, faults: list[Fault], probes: list[Plan]
    ) -> list[FaultResult]:
        """Each fault in turn, after each /healthz and a probe checkout, spread over the load: the
        i-th once i/n of the checkouts have started (and WARMUP_S has passed), and never sooner
        than `gap_s` after the previous one recovered."""
        injector = Injector(self.stack, self.requests, self.config.recovery_timeout_s)
        results = []
        for i, (fault, probe_plan) in enumerate(zip(faults, probes, strict=True)):
            await asyncio.sleep(self.config.gap_s if i else WARMUP_S)
            await self._load_reached(i / len(faults))
            result = await self._one_fault(injector, api, catalog, fault, probe_plan)
            await self.pacer.fault_over()
            results.append(result)
            log.info(
                "chaos.fault.recovered" if result.recovered else "chaos.fault.unrecovered",
                fault=fault.name,
                recover_s=result.seconds(result.recovered_s),
                errors=result.errors,
            )
        return results

    async def _load_reached(self, fraction: float) -> None:
        """Wait until `fraction` of the load's checkouts have started."""
        records = self.outcome.records
        wanted = fraction * len(records)
        while sum(1 for r in records if r.started_s is not None) < wanted:  # noqa: ASYNC110
            await asyncio.sleep(0.5)  # a count over the records, looked at twice a second

    async def _one_fault(
        self,
        injector: Injector,
        api: PatientClient,
        catalog: Catalog,
        fault: Fault,
        probe_plan: Plan,
    ) -> FaultResult:
        in_flight = sum(1 for r in self.outcome.records if r.accepted_s and not r.ended_s)
        try:
            result = await injector.inject(fault, in_flight)
        except (ServiceError, OSError) as exc:
            return FaultResult(fault, self.requests.now(), errors=[f"not injected: {exc}"])
        await injector.healthy(result)
        probe_plan.at_s = self.requests.now()
        probe = Record(probe_plan)
        self.outcome.probes.append(probe)
        await self.journey(api, probe, catalog, self.config.recovery_timeout_s).run()
        result.probe = probe.checkout_id
        if probe.status == "completed" and probe.ended_s is not None:
            result.recovered_s = probe.ended_s
        else:
            result.errors.append(
                f"probe checkout {probe.checkout_id}: {probe.status} {probe.error}"
            )
        return result

    async def _audit(self, api: PatientClient, catalog: Catalog) -> None:
        temporal = await self.stack.temporal()
        databases = self.stack.databases()
        audit = self.outcome.audit
        try:
            began = time.monotonic()
            self.outcome.still_busy = await checks.wait_quiescent(
                temporal,
                databases,
                self.stack,
                self.config.quiesce_timeout_s,
                abandoned_workflows(self.outcome.records),
            )
            self.outcome.phases["settle_s"] = round(time.monotonic() - began, 1)
            log.info("chaos.settled", still_busy=self.outcome.still_busy, **self.outcome.phases)
            records = self.outcome.records + self.outcome.probes
            checks.mark_faults(records, self.outcome.faults)
            sessions = await checks.check_outcomes(
                temporal, databases, self.stack.psp_url, records, audit
            )
            relays_log = self.stack.data_dir / "logs" / "relays.log"
            await checks.check_sent_once(
                databases["notifications"],
                relays_log,
                self.stack.data_dir / "outbox-mail",
                audit,
            )
            checks.check_races(self.outcome.records, catalog, audit)
            checks.check_aftersale(self.outcome.records, audit)
            await checks.check_returns(
                api, catalog, databases["orders"], self.outcome.records, audit
            )
            await checks.check_carrier_faults(
                databases["checkout"], sessions, self.outcome.faults, audit
            )
            await checks.explain_attention(temporal, sessions, audit)
            await checks.count_refunds(databases, sessions, audit)
            await checks.count_whole_prices(databases["orders"], audit)
            await checks.check_replays(api, records, databases, audit)
            log.info("chaos.audited", checked=audit.checked, violations=len(audit.violations))
        finally:
            for db in databases.values():
                await db.dispose()


def run(config: ChaosConfig) -> Outcome:
    """Start a stack, run the load and the faults, audit, stop the stack (also on Ctrl-C)."""
    data_dir = config.data_dir or Path(tempfile.mkdtemp(prefix="checkout-chaos-"))
    faults = config.fault_schedule()
    outcome = Outcome(config, config.load_rate(faults), data_dir)
    stack = ChaosStack(data_dir, config.extra_env)
    began = time.monotonic()
    try:
        stack.start()
        outcome.phases["start_s"] = round(time.monotonic() - began, 1)
        asyncio.run(Run(config, stack, outcome)())
    except (ServiceError, RuntimeError, OSError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        log.error("chaos.failed", error=outcome.error)
    finally:
        stack.stop()
        outcome.elapsed_s = time.monotonic() - began
        if outcome.ok and not config.keep and config.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return outcome


def summary_fields(outcome: Outcome) -> dict[str, Any]:
    """Identifying figures of a run (for the JSON line)."""
    return {
        "checkouts": outcome.config.checkouts,
        "rate": round(outcome.rate, 2),
        "faults_spec": outcome.config.faults,
        "rounds": outcome.config.rounds,
        "seed": outcome.config.seed,
        "data_dir": str(outcome.data_dir),
    }
