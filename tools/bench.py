"""`just bench`: checkouts through the HTTP API, against the bare-Temporal floor, in one run.

Starts what it needs (PostgreSQL with `pg_stat_statements`, a Temporal dev server, the payment
sandbox, one worker process per domain queue as `just up` runs them, and the HTTP API as its own
process) in a temporary directory, unless DATABASE_URL / TEMPORAL_ADDRESS / PSP_URL name running
ones. Seeds a catalog and one cart per buyer, then measures, on the same server and workers:

- latency at c=1: the floor workflow (the checkout's happy-path shape with no-op activities,
  `tools/bench_workflow.py`) started directly, and real `tok_visa` checkouts through the API:
  `POST /v1/checkouts`, then `GET /v1/checkouts/{id}` every 20 ms until it has ended;
- what one checkout costs: its history events, and the SQL statements it runs across every
  database (`pg_stat_statements`; without it, transactions from `pg_stat_database`), less the
  status polls (each counted once, calibrated) and less what the idle platform runs meanwhile;
- throughput at concurrency C: N floor workflows, then N checkouts through the API, each client
  polling its checkout's status every 250 ms as real ones do; the CPU they cost;
- the same through the API by clients that wait instead of polling (`POST /v1/checkouts?wait_s=20`,
  then `GET ...?wait_s=20` while processing), at c=1 and at C: latency and throughput as ratios
  against the floor of the same run, their history events and CPU per checkout;
- the cost of rest (`tools/idle.py`, when it is there) once the traffic has stopped.

Every invariant is checked afterwards. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
from temporalio.client import Client

from api.auth import issue_token
from db.migrate import migrate
from devstack.processes import sandbox_process
from devstack.services.postgres import postgres_process
from devstack.services.process import ManagedProcess, free_port, http_ok, wait_until
from devstack.services.temporal import DevServerConfig, temporal_process
from kit.db import DomainDatabase
from kit.logging import configure_logging
from kit.settings import DOMAINS, Settings, database_url_for, get_settings
from kit.temporal import connect, queues_without_pollers
from tools.bench_workflow import LEGACY_STAGES, STAGES, CeilingWorkflow, noop
from tools.capacity import ConnectionPeaks, WorkerCapacity, activities_per_run, worker_capacity
from tools.capacity import table as capacity_table
from tools.columns import aligned
from tools.invariants import check_invariants
from tools.seed import Seeder, demo_address
from workers.bootstrap import WORKER_DOMAINS, Extras, run_workers
from workflows.checkout.contract import FINAL, workflow_id

REPO = Path(__file__).resolve().parents[1]
# The database the benchmark's own statistics queries run in (left out of every count).
OWN_DATABASE = "postgres"
# A polling client as the issue measured it (c=1), and as real clients poll under load.
C1_POLL_S = 0.02
LOAD_POLL_S = 0.25
# Clients that wait instead (`wait_s` on POST and GET): the longest hold the API allows.
WAIT_S = 20
# Load-phase histories read for the capacity table (activities per checkout, by queue).
CAPACITY_HISTORIES = 20
# A directory: every worker process runs under cProfile and leaves its profile there (slower: for
# finding where the CPU goes, not for the figures; `python -m tools.bench_api --profiles DIR`
# summarizes them). The API is profiled in-process by `python -m tools.bench_api`.
PROFILE_DIR_ENV = "BENCH_PROFILE_DIR"
# A checkout that has not ended by then counts as an error.
CHECKOUT_TIMEOUT_S = 180.0
# Before the window at rest: statistics of the traffic before it have reached PostgreSQL's views.
IDLE_SETTLE_S = 11.0
# Issue 23's bounds, printed against the measured figures (a benchmark's report, not a test).
MAX_STATEMENTS_PER_CHECKOUT = 40
MAX_IDLE_TX_PER_S = 5.0
TX_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION", "SAVEPOINT", "RELEASE")


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    n: int
    elapsed_s: float
    latencies_ms: list[float]
    errors: int

    @property
    def per_s(self) -> float:
        """Completed runs per second of wall time."""
        return (self.n - self.errors) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        """The q-quantile of latency in ms."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q * 100) - 1]


async def run_phase(
    name: str, n: int, concurrency: int, one: Callable[[int], Awaitable[bool]]
) -> Phase:
    """Run `one(i)` for i < n with at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0

    async def guarded(i: int) -> None:
        nonlocal errors
        async with gate:
            started = time.perf_counter()
            try:
                ok = await asyncio.wait_for(one(i), CHECKOUT_TIMEOUT_S)
            except Exception as exc:
                sys.stderr.write(f"{name} #{i}: {type(exc).__name__}: {exc}\n")
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += 0 if ok else 1

    began = time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(n)))
    return Phase(name, n, time.perf_counter() - began, latencies, errors)


# -- the services -----------------------------------------------------------------------------


@dataclass
class Stack:
    """The services of one run: settings to reach them, the API's URL, the processes' pids."""

    settings: Settings
    api_url: str
    pids: dict[str, int] = field(default_factory=dict)


def _counted_postgres(work: Path, port: int, logs: Path) -> ManagedProcess:
    """A throw-away PostgreSQL that counts statements per query across every database."""
    server = postgres_process(work / "pg", host="127.0.0.1", port=port, log_dir=logs, durable=False)
    # initdb has run: the extension is loaded at start.
    with (work / "pg" / "postgresql.conf").open("a") as conf:
        conf.write(
            "\nshared_preload_libraries = 'pg_stat_statements'\n"
            "pg_stat_statements.max = 10000\n"
            "pg_stat_statements.track_utility = on\n"
        )
    return server


@contextmanager
def services(settings: Settings) -> Iterator[Stack]:
    """Ephemeral services for whatever the environment does not name."""
    updates: dict[str, Any] = {}
    pids: dict[str, int] = {}
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="checkout-bench-"))
        work.chmod(0o755)
        stack.callback(shutil.rmtree, work, True)
        logs = work / "logs"

        def run(process: ManagedProcess) -> None:
            stack.callback(process.stop)
            process.start()
            if process.pid is not None:
                pids[process.name] = process.pid

        if not settings.is_explicit("database.url"):
            port = free_port()
            run(_counted_postgres(work, port, logs))
            updates["database"] = {"url": f"postgresql://postgres@127.0.0.1:{port}"}
        if not settings.is_explicit("temporal.address"):
            config = DevServerConfig.load().serving(f"127.0.0.1:{free_port()}")
            run(temporal_process(config, data_dir=None, log_dir=logs))
            updates["temporal"] = {"address": config.address}
        if not settings.is_explicit("psp.url"):
            port = free_port()
            run(
                sandbox_process(
                    port=port, db_path=work / "psp.sqlite", webhook_url="", log_dir=logs
                )
            )
            updates["psp"] = {"url": f"http://127.0.0.1:{port}"}
            updates["easypost"] = {"api_base": f"http://127.0.0.1:{port}/v2"}
        configured = settings.updated(**updates)
        migrate(configured)
        # The deployment shape of `just up`: one worker process per domain queue, the API apart.
        # Each worker process serves Prometheus metrics; the checkout worker's come first.
        metrics_ports = [free_port() for _ in WORKER_DOMAINS]
        workers = [
            ManagedProcess(
                name=f"worker-{domain}",
                argv=[sys.executable, "-m", "tools.bench", "worker", "--domain", domain],
                log_path=logs / f"bench-worker-{domain}.log",
                ready=lambda: True,
                env={**_env(configured, work), "WORKER_METRICS_PORT": str(port)},
                cwd=REPO,
            )
            for domain, port in zip(WORKER_DOMAINS, metrics_ports, strict=True)
        ]
        configured = configured.updated(worker={"metrics_port": metrics_ports[0]})
        for worker in workers:
            stack.callback(worker.stop)
            worker.spawn()
            assert worker.pid is not None
            pids[worker.name] = worker.pid
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        run(
            ManagedProcess(
                name="api",
                argv=[sys.executable, "-m", "api"],
                log_path=logs / "api.log",
                # /livez: the bench runs no NATS, which /healthz would ask for.
                ready=lambda: http_ok(f"{api_url}/livez"),
                ports=[("127.0.0.1", api_port)],
                env={
                    **_env(configured, work),
                    "API_HOST": "127.0.0.1",
                    "API_PORT": str(api_port),
                },
                cwd=REPO,
            )
        )
        wait_until(lambda: asyncio.run(_all_polled(configured)), what="workers", timeout=120)
        yield Stack(configured, api_url, pids)


def _env(settings: Settings, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Bytecode as production has it (compiled at build time, Dockerfile): without it, every new
    # workflow's sandbox compiles workflows/checkout/workflow.py from source again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
        DATABASE_URL=settings.database.url,
        TEMPORAL_ADDRESS=settings.temporal.address,
        PSP_URL=settings.psp.url,
        EASYPOST_API_BASE=settings.easypost.api_base,
        LOG_LEVEL="WARNING",
        ENV="dev",
        # The bench measures the saga; the outbox relay's publishing is not part of it.
        RELAY_ENABLED="false",
    )
    return env


async def _client(settings: Settings) -> Client:
    return await connect(settings.temporal)


async def _all_polled(settings: Settings) -> bool:
    try:
        return not await queues_without_pollers(await _client(settings), WORKER_DOMAINS)
    except Exception:
        return False


# -- what the databases run -------------------------------------------------------------------


@dataclass
class Statements:
    """Statements run per database between two reads (without the benchmark's own)."""

    by_database: dict[str, int]
    tx_control: int
    top: list[tuple[int, str, str]]  # (calls, database, query)

    @property
    def total(self) -> int:
        """Every statement but transaction control (BEGIN, COMMIT, ...)."""
        return sum(self.by_database.values())


class StatementCounter:
    """Counts statements across every database of the server: `pg_stat_statements` when it is
    loaded (`shared_preload_libraries`), else committed transactions (`pg_stat_database`)."""

    def __init__(self, connection: asyncpg.Connection, method: str) -> None:
        self.connection = connection
        self.method = method
        self._xacts: dict[str, int] = {}

    @classmethod
    async def connect(cls, settings: Settings) -> StatementCounter:
        """Connected to the server's `postgres` database, with the best method it allows."""
        connection = await asyncpg.connect(database_url_for(settings.database.url, OWN_DATABASE))
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await connection.fetchval("SELECT count(*) FROM pg_stat_statements")
            return cls(connection, "pg_stat_statements")
        except asyncpg.PostgresError:
            return cls(connection, "pg_stat_database.xact_commit")

    async def reset(self) -> None:
        """Start counting from zero."""
        if self.method == "pg_stat_statements":
            await self.connection.execute("SELECT pg_stat_statements_reset()")
        else:
            self._xacts = await self._transactions()

    async def read(self) -> Statements:
        """What ran since the last reset."""
        if self.method != "pg_stat_statements":
            now = await self._transactions()
            return Statements(
                {db: count - self._xacts.get(db, 0) for db, count in now.items()}, 0, []
            )
        rows = await self.connection.fetch(
            "SELECT d.datname, s.query, s.calls FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname <> $1",
            OWN_DATABASE,
        )
        by_database: dict[str, int] = {}
        control = 0
        for row in rows:
            if row["query"].lstrip().upper().startswith(TX_CONTROL):
                control += row["calls"]
            else:
                by_database[row["datname"]] = by_database.get(row["datname"], 0) + row["calls"]
        top = sorted(
            ((row["calls"], row["datname"], " ".join(row["query"].split())) for row in rows),
            reverse=True,
        )
        return Statements(by_database, control, top)

    async def _transactions(self) -> dict[str, int]:
        # Statistics reach pg_stat_database when a backend goes idle: let them settle.
        await asyncio.sleep(1.0)
        rows = await self.connection.fetch(
            "SELECT datname, xact_commit + xact_rollback AS n FROM pg_stat_database "
            "WHERE datname IS NOT NULL AND datname <> $1",
            OWN_DATABASE,
        )
        return {row["datname"]: int(row["n"]) for row in rows}

    async def connections(self) -> dict[str, int]:
        """Connections opened so far, per database (`pg_stat_database.sessions`): churn shows."""
        try:
            rows = await self.connection.fetch(
                "SELECT datname, sessions FROM pg_stat_database "
                "WHERE datname IS NOT NULL AND datname <> $1",
                OWN_DATABASE,
            )
        except asyncpg.PostgresError:  # before PostgreSQL 14
            return {}
        return {row["datname"]: int(row["sessions"]) for row in rows}

    async def close(self) -> None:
        """Disconnect."""
        await self.connection.close()


# -- CPU of the run's processes ---------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process, its reaped children and its live descendants (PostgreSQL's
    backends, Temporal's)."""
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = float(times.user + times.system + times.children_user + times.children_system)
        for child in process.children(recursive=True):
            try:
                child_times = child.cpu_times()
                total += float(child_times.user + child_times.system)
            except psutil.NoSuchProcess:
                continue
        return total
    except psutil.NoSuchProcess:
        return 0.0


def cpu_sample(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of every process of the run, and of the benchmark's own clients."""
    sample = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    own = psutil.Process(os.getpid()).cpu_times()  # not its children: they are the services
    sample["bench"] = float(own.user + own.system)
    return sample


def cpu_delta(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent per process between two samples."""
    return {name: round(end[name] - start.get(name, 0.0), 3) for name in end}


# -- the measurement --------------------------------------------------------------------------


@dataclass
class Shopper:
    """One buyer with one seeded cart, as the API knows them."""

    user_id: uuid.UUID
    cart_id: uuid.UUID
    token: str

    def headers(self) -> dict[str, str]:
        """The buyer's bearer token."""
        return {"Authorization": f"Bearer {self.token}"}


def checkout_body(cart_id: uuid.UUID) -> dict[str, Any]:
    """`POST /v1/checkouts`: a tok_visa payment, no coupon."""
    return {
        "cart_id": str(cart_id),
        "shipping_address": demo_address().model_dump(mode="json", exclude_none=True),
        "payment": {"provider": "sandbox", "token": "tok_visa"},
    }


class Api:
    """The benchmark's HTTP clients: one checkout as a buyer runs it."""

    def __init__(self, http: httpx.AsyncClient, shoppers: Sequence[Shopper]) -> None:
        self.http = http
        self.shoppers = shoppers
        self.started: dict[int, uuid.UUID] = {}
        self.polls = 0

    async def _start(self, i: int, path: str) -> dict[str, Any]:
        """`POST` shopper `i`'s checkout to `path` under a new Idempotency-Key; its 202 body (the
        checkout's id is noted as started)."""
        shopper = self.shoppers[i]
        answer = await self.http.post(
            path,
            json=checkout_body(shopper.cart_id),
            headers={**shopper.headers(), "Idempotency-Key": uuid.uuid4().hex},
        )
        if answer.status_code != 202:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text}")
        body: dict[str, Any] = answer.json()
        self.started[i] = uuid.UUID(body["checkout_id"])
        return body

    async def checkout(self, i: int, poll_s: float) -> bool:
        """POST, then poll the status every `poll_s` until the checkout ends; True if completed."""
        shopper = self.shoppers[i]
        checkout_id = uuid.UUID((await self._start(i, "/v1/checkouts"))["checkout_id"])
        while True:
            await asyncio.sleep(poll_s)
            body = await self.status(checkout_id, shopper)
            if body["status"] in FINAL:
                if body["status"] != "completed":
                    raise RuntimeError(f"checkout {checkout_id} ended {body}")
                return True

    async def waiting_checkout(self, i: int) -> bool:
        """A client that waits instead of polling: `POST /v1/checkouts?wait_s=20`, then
        `GET /v1/checkouts/{id}?wait_s=20` while it is processing; True if completed."""
        shopper = self.shoppers[i]
        body = await self._start(i, f"/v1/checkouts?wait_s={WAIT_S}")
        checkout_id = uuid.UUID(body["checkout_id"])
        while body["status"] not in FINAL:
            body = await self.status(checkout_id, shopper, wait_s=WAIT_S)
        if body["status"] != "completed":
            raise RuntimeError(f"checkout {checkout_id} ended {body}")
        return True

    async def status(
        self, checkout_id: uuid.UUID, shopper: Shopper, wait_s: int = 0
    ) -> dict[str, Any]:
        """`GET /v1/checkouts/{id}` as its buyer (held up to `wait_s` while processing)."""
        self.polls += 1
        answer = await self.http.get(
            f"/v1/checkouts/{checkout_id}",
            params={"wait_s": wait_s} if wait_s else None,
            headers=shopper.headers(),
        )
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body


@dataclass
class Figures:
    """Everything one run measured."""

    phases: list[Phase]
    stages: list[list[str]]
    cost: Cost
    floor_history_events: list[int]
    cpu_s: dict[str, float]
    floor_cpu_s: dict[str, float]
    connections: dict[str, int]
    capacity: list[WorkerCapacity]
    idle: dict[str, Any]
    warmup_errors: int
    violations: list[str]
    checked: int
    metrics: tuple[int | None, float, float]
    waiting: Waiting | None = None


async def _history_events(client: Client, workflow_ids: Sequence[str]) -> list[int]:
    histories = await asyncio.gather(
        *(client.get_workflow_handle(wid).fetch_history() for wid in workflow_ids)
    )
    return [len(history.events) for history in histories]


async def _calibrate_poll(
    api: Api, counter: StatementCounter, checkout_id: uuid.UUID, shopper: Shopper
) -> tuple[float, float]:
    """Statements (and transaction-control statements) of one status read."""
    reads = 20
    await counter.reset()
    for _ in range(reads):
        await api.status(checkout_id, shopper)
    counted = await counter.read()
    return counted.total / reads, counted.tx_control / reads


async def _idle(stack: Stack, seconds: float) -> dict[str, Any]:
    """The cost of rest, with `tools/idle.py` when it is there (tx/s), and CPU per process."""
    # The last busy backends report to pg_stat_database within ten seconds of going idle.
    await asyncio.sleep(IDLE_SETTLE_S)
    start = cpu_sample(stack.pids)
    began = time.monotonic()
    figures: dict[str, Any] = {"idle_tx_per_s": None, "idle_cpu_pct": None}
    try:
        idle = importlib.import_module("tools.idle")
        report = await idle.measure(stack.settings, seconds)
        figures["idle_tx_per_s"] = report.total_tx_per_s
    except Exception as exc:  # not there yet, or changed under us: the rest still counts
        sys.stderr.write(f"tools.idle: {type(exc).__name__}: {exc}\n")
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
    elapsed = time.monotonic() - began
    spent = cpu_delta(start, cpu_sample(stack.pids))
    figures["idle_cpu_pct"] = {
        name: round(100 * s / elapsed, 2) for name, s in spent.items() if name != "bench"
    }
    return figures


@dataclass
class Cost:
    """What one checkout costs, from the c=1 phase."""

    statements: Statements
    method: str
    per_checkout: float
    per_checkout_tx_control: float
    per_poll: float
    per_poll_tx_control: float
    history_events: list[int]


class Bench:
    """One run's clients and counters: the floor workflow, checkouts through the API."""

    def __init__(
        self, stack: Stack, client: Client, counter: StatementCounter, stages: list[list[str]]
    ) -> None:
        self.stack = stack
        self.client = client
        self.counter = counter
        self.stages = stages
        self.floor_ids: list[str] = []

    async def floor(self, _i: int) -> bool:
        """One floor workflow, started directly and waited for."""
        wid = f"bench-floor-{uuid.uuid4()}"
        self.floor_ids.append(wid)
        ran = await self.client.execute_workflow(
            CeilingWorkflow.run, self.stages, id=wid, task_queue="checkout"
        )
        return bool(ran == sum(len(stage) for stage in self.stages))

    async def background(self, seconds: float = 3.0) -> tuple[Statements, float]:
        """What the platform runs at rest over a while (subtracted from the c=1 count)."""
        await self.counter.reset()
        began = time.perf_counter()
        await asyncio.sleep(seconds)
        return await self.counter.read(), time.perf_counter() - began

    async def c1(self, api: Api, n1: int) -> tuple[Phase, Cost]:
        """Checkouts one at a time, polling every 20 ms: their latency and their cost."""
        background, background_s = await self.background()
        await self.counter.reset()
        phase = await run_phase("checkout c=1", n1, 1, lambda i: api.checkout(i, C1_POLL_S))
        counted = await self.counter.read()
        polls = api.polls
        per_poll, per_poll_control = await _calibrate_poll(
            api, self.counter, api.started[0], api.shoppers[0]
        )
        quiet = phase.elapsed_s / background_s
        done = max(n1 - phase.errors, 1)
        # The polls a client happened to make are not the checkout's cost: one read is.
        statements = counted.total - quiet * background.total - (polls - done) * per_poll
        control = (
            counted.tx_control - quiet * background.tx_control - (polls - done) * per_poll_control
        )
        events = await _history_events(self.client, [workflow_id(c) for c in api.started.values()])
        cost = Cost(
            counted,
            self.counter.method,
            statements / done,
            control / done,
            per_poll,
            per_poll_control,
            events,
        )
        return phase, cost

    async def load(self, api: Api, n: int, concurrency: int) -> Load:
        """N checkouts through the API at `concurrency`, clients polling every 250 ms: what they
        cost in CPU and connections, and each domain worker's capacity."""
        settings = self.stack.settings
        connections_before = await self.counter.connections()
        cpu_before = cpu_sample(self.stack.pids)
        async with ConnectionPeaks(database_url_for(settings.database.url, OWN_DATABASE)) as peaks:
            phase = await run_phase(
                f"checkout c={concurrency}", n, concurrency, lambda i: api.checkout(i, LOAD_POLL_S)
            )
        cpu_s = cpu_delta(cpu_before, cpu_sample(self.stack.pids))
        connections = {
            db: count - connections_before.get(db, 0)
            for db, count in (await self.counter.connections()).items()
        }
        loaded = [workflow_id(c) for c in api.started.values()][:CAPACITY_HISTORIES]
        capacity = worker_capacity(
            await activities_per_run(self.client, loaded),
            _per_run(cpu_s, phase, digits=6),
            peaks.peak,
            settings.database.pool_size + settings.database.max_overflow,
        )
        return Load(phase, cpu_s, connections, capacity)


@dataclass(frozen=True)
class Waiting:
    """The same checkouts through the API by clients that wait (`wait_s`) instead of polling:
    one at a time and at the load's concurrency; their histories and the CPU they cost."""

    c1: Phase
    load: Phase
    history_events: list[int]
    cpu_s: dict[str, float]


async def waiting_phases(
    bench: Bench, c1_api: Api, load_api: Api, n1: int, n: int, concurrency: int
) -> Waiting:
    """`Api.waiting_checkout` at c=1, then at `concurrency`."""
    c1 = await run_phase("waiting c=1", n1, 1, c1_api.waiting_checkout)
    cpu_before = cpu_sample(bench.stack.pids)
    load = await run_phase(f"waiting c={concurrency}", n, concurrency, load_api.waiting_checkout)
    cpu_s = cpu_delta(cpu_before, cpu_sample(bench.stack.pids))
    started = [workflow_id(c) for api in (c1_api, load_api) for c in api.started.values()]
    events = await _history_events(bench.client, started)
    return Waiting(c1, load, events, cpu_s)


def _print_waiting(figures: Figures, concurrency: int) -> dict[str, Any]:
    """The waiting clients' lines, as ratios against the floor of the same run."""
    waiting = figures.waiting
    if waiting is None:
        return {}
    c1_floor, _, base, _ = figures.phases
    floor_p50 = c1_floor.percentile(0.5)
    c1_ratio = waiting.c1.percentile(0.5) / floor_p50 if floor_p50 else 0.0
    load_ratio = waiting.load.per_s / base.per_s if base.per_s else 0.0
    cpu = _per_run(waiting.cpu_s, waiting.load)
    events = waiting.history_events
    _write(
        f"clients that wait (wait_s={WAIT_S}): c=1 p50 {waiting.c1.percentile(0.5):.0f} ms, "
        f"{c1_ratio:.2f}x the floor's (target at most 1.3x); c={concurrency} "
        f"{waiting.load.per_s:.2f} checkouts/s, {load_ratio:.2f} of the floor's ceiling "
        f"(target at least 0.7); history events per checkout {_median(events)} "
        f"(min {min(events, default=0)}, max {max(events, default=0)}; target at most 60)"
    )
    _write(
        f"CPU seconds per checkout at c={concurrency}, clients waiting: {_total(cpu):.3f} "
        + json.dumps(cpu)
    )
    return {
        "wait_c1_p50_ms": round(waiting.c1.percentile(0.5), 1),
        "wait_c1_ratio": round(c1_ratio, 2),
        "wait_checkouts_per_s": round(waiting.load.per_s, 2),
        "wait_ratio": round(load_ratio, 3),
        "wait_history_events": _median(events),
        "wait_cpu_s_per_checkout": _total(cpu),
        "wait_errors": waiting.c1.errors + waiting.load.errors,
    }


@dataclass(frozen=True)
class Load:
    """The load phase: its runs, CPU per process, connections opened, capacity per worker."""

    phase: Phase
    cpu_s: dict[str, float]
    connections: dict[str, int]
    capacity: list[WorkerCapacity]


async def _shoppers(settings: Settings, seed: Seeder, total: int) -> list[Shopper]:
    """A catalog, and one buyer with a two-line cart per checkout."""
    variants = [await seed.variant(price=f"{10 + i}.99", stock=10 * (total + 1)) for i in range(20)]
    shoppers = []
    for i in range(total):
        user_id = uuid.uuid4()
        lines = [(variants[i % 20], 1 + i % 3), (variants[(i * 7 + 3) % 20], 1)]
        token = issue_token(settings, user_id, ["customer"])
        shoppers.append(Shopper(user_id, await seed.cart(user_id, lines), token))
    return shoppers


async def measure(
    stack: Stack,
    n: int,
    concurrency: int,
    warmup: int,
    n1: int,
    idle_s: float,
    stages: list[list[str]],
) -> Figures:
    """Seed, warm up, run every phase, check the invariants; return the figures."""
    settings = stack.settings
    databases = {d: DomainDatabase.from_settings(d, settings, "bench") for d in DOMAINS}
    counter = await StatementCounter.connect(settings)
    bench = Bench(stack, await _client(settings), counter, stages)
    limits = httpx.Limits(max_connections=4 * concurrency, max_keepalive_connections=64)
    try:
        shoppers = await _shoppers(settings, Seeder(databases), warmup + 2 * (n1 + n))
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, limits=limits) as http:
            apis = [
                Api(http, shoppers[:warmup]),
                Api(http, shoppers[warmup : warmup + n1]),
                Api(http, shoppers[warmup + n1 : warmup + n1 + n]),
                Api(http, shoppers[warmup + n1 + n : warmup + 2 * n1 + n]),
                Api(http, shoppers[warmup + 2 * n1 + n :]),
            ]
            warm_api, c1_api, load_api, c1_waiting, load_waiting = apis
            await run_phase("warm-up floor", warmup, concurrency, bench.floor)
            warm = await run_phase(
                "warm-up checkout", warmup, concurrency, lambda i: warm_api.checkout(i, LOAD_POLL_S)
            )
            bench.floor_ids.clear()
            c1_floor = await run_phase("floor c=1", n1, 1, bench.floor)
            floor_events = await _history_events(bench.client, bench.floor_ids)
            c1, cost = await bench.c1(c1_api, n1)
            floor_cpu_before = cpu_sample(stack.pids)
            base = await run_phase(f"floor c={concurrency}", n, concurrency, bench.floor)
            floor_cpu_s = cpu_delta(floor_cpu_before, cpu_sample(stack.pids))
            started_before = await _counter(settings, "checkouts_started")
            load = await bench.load(load_api, n, concurrency)
            started_after = await _counter(settings, "checkouts_started")
            waiting = await waiting_phases(bench, c1_waiting, load_waiting, n1, n, concurrency)
        ids = [checkout for api in apis for checkout in api.started.values()]
        report = await check_invariants(databases, settings.psp.url, ids)
        idle = await _idle(stack, idle_s)
    finally:
        await counter.close()
        for db in databases.values():
            await db.dispose()
    return Figures(
        phases=[c1_floor, c1, base, load.phase],
        stages=stages,
        cost=cost,
        floor_history_events=floor_events,
        cpu_s=load.cpu_s,
        floor_cpu_s=floor_cpu_s,
        connections=load.connections,
        capacity=load.capacity,
        idle=idle,
        warmup_errors=warm.errors,
        violations=report.violations,
        checked=report.checkouts,
        metrics=(settings.worker.metrics_port, started_before, started_after),
        waiting=waiting,
    )


async def _counter(settings: Settings, name: str) -> float:
    """A counter's total on the checkout worker's /metrics (summed over its labels)."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{settings.worker.metrics_port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _per_run(spent: dict[str, float], phase: Phase, digits: int = 3) -> dict[str, float]:
    """CPU seconds per completed run of `phase`, per process."""
    runs = max(phase.n - phase.errors, 1)
    return {name: round(seconds / runs, digits) for name, seconds in spent.items()}


def _total(per_process: dict[str, float]) -> float:
    """The platform's CPU seconds (not the benchmark's own clients)."""
    return round(sum(v for k, v in per_process.items() if k != "bench"), 3)


def _print_table(figures: Figures) -> None:
    rows = [("phase", "n", "errors", "per_s", "p50_ms", "p99_ms")]
    for phase in figures.phases:
        rows.append(
            (
                phase.name,
                str(phase.n),
                str(phase.errors),
                f"{phase.per_s:.2f}",
                f"{phase.percentile(0.5):.0f}",
                f"{phase.percentile(0.99):.0f}",
            )
        )
    for line in aligned(rows):
        _write(line)


def _targets(figures: Figures) -> str:
    """The figures issue 23 set bounds on, against their bounds (counts, not times)."""
    statements = figures.cost.per_checkout
    idle = figures.idle["idle_tx_per_s"]
    parts = [
        f"SQL statements per checkout {statements:.1f} (at most {MAX_STATEMENTS_PER_CHECKOUT}: "
        + ("met" if statements <= MAX_STATEMENTS_PER_CHECKOUT else "MISSED")
        + ")",
        f"idle transactions/s {idle} (at most {MAX_IDLE_TX_PER_S}: "
        + ("unmeasured" if idle is None else "met" if idle <= MAX_IDLE_TX_PER_S else "MISSED")
        + ")",
    ]
    return "targets: " + "; ".join(parts)


def _print(figures: Figures, n: int, concurrency: int, top: int = 25) -> dict[str, Any]:
    _print_table(figures)
    counted = figures.cost.statements
    events = figures.cost.history_events
    _write(
        f"\nfloor: {sum(len(s) for s in figures.stages)} no-op activities in "
        f"{len(figures.stages)} stages; history events "
        f"per run: floor {_median(figures.floor_history_events)}, checkout "
        f"{_median(events)} (min {min(events, default=0)}, max {max(events, default=0)})"
    )
    _write(
        f"SQL ({figures.cost.method}) during the c=1 phase: {counted.total} statements "
        f"+ {counted.tx_control} BEGIN/COMMIT; per checkout {figures.cost.per_checkout:.1f} "
        f"(+ {figures.cost.per_checkout_tx_control:.1f} BEGIN/COMMIT); one status read "
        f"{figures.cost.per_poll:.1f} (+ {figures.cost.per_poll_tx_control:.1f})"
    )
    _write("  per database: " + json.dumps(dict(sorted(counted.by_database.items()))))
    for calls, database, query in counted.top[:top]:
        _write(f"  {calls:6d}  {database:<13} {query[:140]}")
    per_checkout_cpu = _per_run(figures.cpu_s, figures.phases[3])
    per_floor_cpu = _per_run(figures.floor_cpu_s, figures.phases[2])
    _write(
        f"CPU seconds per floor workflow at c={concurrency}: {_total(per_floor_cpu):.3f} "
        + json.dumps({k: v for k, v in per_floor_cpu.items() if v})
    )
    _write(
        f"CPU seconds per checkout at c={concurrency} (API polls included): "
        f"{_total(per_checkout_cpu):.3f} " + json.dumps(per_checkout_cpu)
    )
    _write(
        f"database connections opened during the c={concurrency} phase: "
        + json.dumps({db: n for db, n in sorted(figures.connections.items()) if n})
    )
    _write(f"capacity per domain worker at c={concurrency} (docs/capacity.md):")
    for line in capacity_table(figures.capacity):
        _write("  " + line)
    _write(
        f"invariants checked on {figures.checked} checkouts: {len(figures.violations)} violations"
    )
    port, before, after = figures.metrics
    _write(
        f"checkout worker metrics http://127.0.0.1:{port}/metrics: "
        f"checkouts_started {before:.0f} -> {after:.0f} during the c={concurrency} phase"
    )
    for violation in figures.violations[:20]:
        _write(f"  violation: {violation}")
    _write(_targets(figures))
    c1_floor, c1, base, real = figures.phases
    floor_p50 = c1_floor.percentile(0.5)
    summary = {
        "c1_p50_ms": round(c1.percentile(0.5), 1),
        "floor_p50_ms": round(floor_p50, 1),
        "c1_ratio": round(c1.percentile(0.5) / floor_p50, 2) if floor_p50 else None,
        "checkouts_per_s": round(real.per_s, 2),
        "ceiling_per_s": round(base.per_s, 2),
        "ratio": round(real.per_s / base.per_s, 3) if base.per_s else 0.0,
        "p50_ms": round(real.percentile(0.5), 1),
        "p99_ms": round(real.percentile(0.99), 1),
        "history_events": _median(figures.cost.history_events),
        "floor_history_events": _median(figures.floor_history_events),
        "sql_statements": round(figures.cost.per_checkout, 1),
        "sql_tx_control": round(figures.cost.per_checkout_tx_control, 1),
        "sql_counted_by": figures.cost.method,
        "cpu_s_per_checkout": _total(per_checkout_cpu),
        "cpu_s_per_floor": _total(per_floor_cpu),
        "capacity": {row.domain: row.as_dict() for row in figures.capacity},
        "idle_tx_per_s": figures.idle["idle_tx_per_s"],
        "idle_cpu_pct": figures.idle["idle_cpu_pct"],
        "errors": c1.errors + real.errors + figures.warmup_errors,
        "violations": len(figures.violations),
        "n": n,
        "concurrency": concurrency,
    }
    summary |= _print_waiting(figures, concurrency)
    summary["errors"] += summary.get("wait_errors", 0)
    _write(json.dumps(summary))
    return summary


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def _worker(domains: list[str]) -> None:
    settings = get_settings()
    configure_logging(settings)
    stop = asyncio.Event()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        extras = Extras(workflows=[CeilingWorkflow], activities=lambda _queue: [noop])
        await run_workers(domains, settings, stop, extras=extras)

    profiles = os.environ.get(PROFILE_DIR_ENV)
    if not profiles:
        asyncio.run(serve())
        return
    profile = cProfile.Profile()
    profile.runcall(asyncio.run, serve())
    profile.dump_stats(Path(profiles) / f"worker-{'-'.join(domains)}.prof")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with `worker`, its worker process)."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("mode", nargs="?", choices=["run", "worker"], default="run")
    parser.add_argument("-n", type=int, default=int(os.environ.get("BENCH_N", "100")))
    parser.add_argument(
        "-c", "--concurrency", type=int, default=int(os.environ.get("BENCH_CONCURRENCY", "16"))
    )
    parser.add_argument("--n1", type=int, default=15, help="checkouts measured one at a time")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--idle-s", type=float, default=10.0, help="the window at rest")
    parser.add_argument(
        "--legacy-floor",
        action="store_true",
        help="the floor of checkouts before `lean-records` (a coupon confirmed in any case)",
    )
    parser.add_argument("--domain", action="append", choices=WORKER_DOMAINS, dest="domains")
    parser.add_argument("--top", type=int, default=25, help="the most run statements listed")
    args = parser.parse_args(argv)
    if args.mode == "worker":
        _worker(args.domains or list(WORKER_DOMAINS))
        return 0
    settings = get_settings().updated(log={"level": "WARNING"})
    configure_logging(settings)
    with services(settings) as stack:
        figures = asyncio.run(
            measure(
                stack,
                args.n,
                args.concurrency,
                args.warmup,
                args.n1,
                args.idle_s,
                LEGACY_STAGES if args.legacy_floor else STAGES,
            )
        )
    summary = _print(figures, args.n, args.concurrency, args.top)
    return 0 if not figures.violations and summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
