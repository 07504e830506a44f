"""`just bench`: checkouts per second through the real saga, against the bare-Temporal ceiling.

Starts what it needs (PostgreSQL, a Temporal dev server, the payment sandbox, one worker process
serving every domain queue) in a temporary directory, unless DATABASE_URL / TEMPORAL_ADDRESS /
PSP_URL name running ones. Seeds a catalog and one cart per buyer, then runs, in the same run and
on the same server and workers: N no-op ceiling workflows shaped like a checkout, and N real
checkouts with tok_visa, each at concurrency C. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from db.migrate import migrate
from devstack.processes import sandbox_process
from devstack.services.postgres import postgres_process
from devstack.services.process import ManagedProcess, free_port, wait_until
from devstack.services.temporal import DevServerConfig, temporal_process
from kit.db import DomainDatabase
from kit.logging import configure_logging
from kit.settings import DOMAINS, Settings, get_settings
from kit.temporal import queues_without_pollers
from tools.bench_workflow import REMOTE_ACTIVITIES, CeilingWorkflow, local_noop, noop
from tools.invariants import check_invariants
from tools.seed import Seeder, new_input
from workers.bootstrap import WORKER_DOMAINS, Extras, run_workers
from workflows.checkout.client import CheckoutClient

REPO = Path(__file__).resolve().parents[1]


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
                ok = await one(i)
            except Exception:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += 0 if ok else 1

    began = time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(n)))
    return Phase(name, n, time.perf_counter() - began, latencies, errors)


@contextmanager
def services(settings: Settings) -> Iterator[Settings]:
    """Ephemeral services for whatever the environment does not name; yields settings for them."""
    updates: dict[str, Any] = {}
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="checkout-bench-"))
        work.chmod(0o755)
        stack.callback(shutil.rmtree, work, True)
        logs = work / "logs"

        def run(process: ManagedProcess) -> None:
            stack.callback(process.stop)
            process.start()

        if not settings.is_explicit("database.url"):
            port = free_port()
            run(
                postgres_process(
                    work / "pg", host="127.0.0.1", port=port, log_dir=logs, durable=False
                )
            )
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
            updates["psp"] = updates["carrier"] = {"url": f"http://127.0.0.1:{port}"}
        configured = settings.updated(**updates)
        migrate(configured)
        # The deployment shape of `just up`: one worker process per domain queue.
        # Each worker process serves Prometheus metrics; the checkout worker's come first.
        metrics_ports = [free_port() for _ in WORKER_DOMAINS]
        workers = [
            ManagedProcess(
                name=f"bench-worker-{domain}",
                argv=[sys.executable, "-m", "tools.bench", "worker", "--domain", domain],
                log_path=logs / f"bench-worker-{domain}.log",
                ready=lambda: True,
                env={**_env(configured), "WORKER_METRICS_PORT": str(port)},
                cwd=REPO,
            )
            for domain, port in zip(WORKER_DOMAINS, metrics_ports, strict=True)
        ]
        configured = configured.updated(worker={"metrics_port": metrics_ports[0]})
        for worker in workers:
            stack.callback(worker.stop)
            worker.spawn()
        wait_until(lambda: asyncio.run(_all_polled(configured)), what="workers", timeout=120)
        yield configured


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database.url,
        TEMPORAL_ADDRESS=settings.temporal.address,
        PSP_URL=settings.psp.url,
        CARRIER_URL=settings.carrier.url,
        LOG_LEVEL="WARNING",
        # The bench measures the saga; the outbox relay's publishing is not part of it.
        RELAY_ENABLED="false",
    )
    return env


async def _client(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal.address,
        namespace=settings.temporal.namespace,
        data_converter=pydantic_data_converter,
    )


async def _all_polled(settings: Settings) -> bool:
    try:
        return not await queues_without_pollers(await _client(settings), WORKER_DOMAINS)
    except Exception:
        return False


async def measure(settings: Settings, n: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """Seed, warm up, run both phases, check the invariants; return the figures."""
    client = await _client(settings)
    databases = {d: DomainDatabase.from_settings(d, settings) for d in DOMAINS}
    try:
        seed = Seeder(databases)
        variants = [
            await seed.variant(price=f"{10 + i}.99", stock=10 * (n + warmup)) for i in range(20)
        ]
        carts = []
        for i in range(n + warmup):
            user_id = uuid.uuid4()
            lines = [(variants[i % 20], 1 + i % 3), (variants[(i * 7 + 3) % 20], 1)]
            carts.append((user_id, await seed.cart(user_id, lines)))
        inputs = [new_input(user_id=u, cart_id=c, token="tok_visa") for u, c in carts]

        async def checkout(i: int) -> bool:
            body = await (await CheckoutClient(client).start(inputs[i])).result()
            return body.status == "completed"

        async def ceiling(i: int) -> bool:
            await client.execute_workflow(
                CeilingWorkflow.run,
                str(i),
                id=f"bench-ceiling-{uuid.uuid4()}",
                task_queue="checkout",
            )
            return True

        await run_phase("warm-up ceiling", warmup, concurrency, ceiling)
        warm = await run_phase("warm-up checkout", warmup, concurrency, lambda i: checkout(n + i))
        base = await run_phase("ceiling", n, concurrency, ceiling)
        started_before = await _counter(settings, "checkouts_started")
        real = await run_phase("checkout", n, concurrency, checkout)
        started_after = await _counter(settings, "checkouts_started")
        report = await check_invariants(
            databases, settings.psp.url, [c.checkout_id for c in inputs[: n + warmup]]
        )
    finally:
        for db in databases.values():
            await db.dispose()
    return {
        "phases": [base, real],
        "warmup_errors": warm.errors,
        "violations": report.violations,
        "checked": report.checkouts,
        "metrics": (settings.worker.metrics_port, started_before, started_after),
    }


async def _counter(settings: Settings, name: str) -> float:
    """A counter's total on the checkout worker's /metrics (summed over its labels)."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{settings.worker.metrics_port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def _print(result: dict[str, Any], n: int, concurrency: int) -> dict[str, Any]:
    base, real = result["phases"]
    rows = [("phase", "n", "errors", "per_s", "p50_ms", "p99_ms")]
    for phase in (base, real):
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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write(
            "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) + "\n"
        )
    sys.stdout.write(
        f"activities per workflow: {REMOTE_ACTIVITIES} remote; invariants checked on "
        f"{result['checked']} checkouts: {len(result['violations'])} violations\n"
    )
    port, before, after = result["metrics"]
    sys.stdout.write(
        f"checkout worker metrics http://127.0.0.1:{port}/metrics: "
        f"checkouts_started {before:.0f} -> {after:.0f} during the checkout phase\n"
    )
    for violation in result["violations"][:20]:
        sys.stdout.write(f"  violation: {violation}\n")
    summary = {
        "checkouts_per_s": round(real.per_s, 2),
        "ceiling_per_s": round(base.per_s, 2),
        "ratio": round(real.per_s / base.per_s, 3) if base.per_s else 0.0,
        "p50_ms": round(real.percentile(0.5), 1),
        "p99_ms": round(real.percentile(0.99), 1),
        "errors": real.errors + result["warmup_errors"],
        "n": n,
        "concurrency": concurrency,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return summary


def _worker(domains: list[str]) -> None:
    settings = get_settings()
    configure_logging(settings)
    stop = asyncio.Event()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        extras = Extras(
            workflows=[CeilingWorkflow],
            activities=lambda queue: [noop, local_noop] if queue == "checkout" else [noop],
        )
        await run_workers(domains, settings, stop, extras=extras)

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with `worker`, its worker process)."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("mode", nargs="?", choices=["run", "worker"], default="run")
    parser.add_argument("-n", type=int, default=int(os.environ.get("BENCH_N", "300")))
    parser.add_argument(
        "-c", "--concurrency", type=int, default=int(os.environ.get("BENCH_CONCURRENCY", "20"))
    )
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--domain", action="append", choices=WORKER_DOMAINS, dest="domains")
    args = parser.parse_args(argv)
    if args.mode == "worker":
        _worker(args.domains or list(WORKER_DOMAINS))
        return 0
    settings = get_settings().updated(log={"level": "WARNING"})
    configure_logging(settings)
    with services(settings) as configured:
        result = asyncio.run(measure(configured, args.n, args.concurrency, args.warmup))
    summary = _print(result, args.n, args.concurrency)
    return 0 if not result["violations"] and summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
