"""History length of checkouts kept in flight through a PostgreSQL stall, against calm ones.

    python -m tools.outage_history [--checkouts 12] [--stall-s 120]

Starts a private PostgreSQL, Temporal dev server and payment sandbox on free ports in a temporary
directory, runs every domain worker in this process, then in one run:

1. `--checkouts` calm checkouts, start to end with nothing disturbed;
2. as many checkouts started together, with PostgreSQL stalled (every server process stopped
   with SIGSTOP, as a hung disk or a frozen VM would) right after they start and for
   `--stall-s`, then resumed.

It prints each group's history lengths (events per run). A stall adds a bounded handful of
events to a run whatever its length; a record retried as a local activity would add about three
per ten seconds of stall (about 36 in two minutes). Nothing here touches `.data/` or the ports of
a running `just up`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from temporalio.client import Client

from db.migrate import migrate
from devstack.processes import sandbox_process
from devstack.services.postgres import postgres_process
from devstack.services.process import ManagedProcess, free_port
from devstack.services.temporal import DevServerConfig, temporal_process
from kit.codec import data_converter
from kit.db import DomainDatabase
from kit.settings import DOMAINS, Settings, get_settings
from tools.columns import aligned
from tools.seed import Seeder, new_input
from workers.bootstrap import WORKER_DOMAINS, run_workers
from workflows.checkout.client import CheckoutClient

HOST = "127.0.0.1"


def _children(pid: int) -> list[int]:
    """`pid` and every process below it (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


class Services:
    """PostgreSQL, Temporal and the sandbox of one run, in `work_dir`."""

    def __init__(self, work_dir: Path) -> None:
        logs = work_dir / "logs"
        pg_port, psp_port = free_port(), free_port()
        self.temporal_address = f"{HOST}:{free_port()}"
        self.postgres = postgres_process(
            work_dir / "postgres", host=HOST, port=pg_port, log_dir=logs, durable=False
        )
        self.temporal = temporal_process(
            DevServerConfig.load().serving(self.temporal_address), data_dir=None, log_dir=logs
        )
        self.psp_url = f"http://{HOST}:{psp_port}"
        self.psp = sandbox_process(
            port=psp_port,
            db_path=work_dir / "psp.sqlite",
            webhook_url=f"http://{HOST}:{free_port()}/unused",
            log_dir=logs,
            extra_env={"SANDBOX_CARRIER_STEP_S": "3600"},
        )
        os.environ["DATABASE_URL"] = f"postgresql://postgres@{HOST}:{pg_port}"
        os.environ["TEMPORAL_ADDRESS"] = self.temporal_address
        self.processes: list[ManagedProcess] = [self.postgres, self.temporal, self.psp]

    def start(self) -> Settings:
        """Start everything; the settings the workers run with."""
        for process in self.processes:
            process.start()
        get_settings.cache_clear()
        settings = get_settings()
        migrate(settings)
        return settings.updated(
            psp={"url": self.psp_url},
            stripe={"api_base": self.psp_url},
            carrier={"url": self.psp_url},
            relay={"enabled": False},
            worker={"shutdown_grace_s": 2.0},
        )

    def stop(self) -> None:
        """Stop everything (PostgreSQL resumed first, should it still be stalled)."""
        pid = self.postgres.pid
        if pid is not None:
            _signal_all(_children(pid), signal.SIGCONT)
        for process in reversed(self.processes):
            process.stop()

    def stall_postgres(self) -> list[int]:
        """Stop every PostgreSQL process; the pids to resume."""
        assert self.postgres.pid is not None
        pids = _children(self.postgres.pid)
        _signal_all(pids, signal.SIGSTOP)
        return pids


async def _group(client: Client, seed: Seeder, count: int) -> list[uuid.UUID]:
    """Start `count` checkouts (one unit each, a card that pays); their ids."""
    checkouts = CheckoutClient(client)
    ids = []
    for _ in range(count):
        variant = await seed.variant(stock=5)
        user_id = uuid.uuid4()
        cart_id = await seed.cart(user_id, [(variant, 1)])
        checkout = new_input(user_id=user_id, cart_id=cart_id)
        await checkouts.start(checkout)
        ids.append(checkout.checkout_id)
    return ids


async def _lengths(client: Client, ids: list[uuid.UUID]) -> list[tuple[str, int]]:
    """Each checkout's final status and history length, once it has ended."""
    checkouts = CheckoutClient(client)
    found = []
    for checkout_id in ids:
        handle = checkouts.handle(checkout_id)
        body = await handle.result()
        found.append((body.status, len((await handle.fetch_history()).events)))
    return found


async def measure(services: Services, settings: Settings, count: int, stall_s: float) -> str:
    """Both groups in one run; the printed table."""
    client = await Client.connect(
        services.temporal_address, data_converter=data_converter(settings.temporal)
    )
    databases = {domain: DomainDatabase.from_settings(domain, settings) for domain in DOMAINS}
    seed = Seeder(databases)
    stop = asyncio.Event()
    workers = asyncio.create_task(run_workers(WORKER_DOMAINS, settings, stop, client=client))
    try:
        calm = await _lengths(client, await _group(client, seed, count))
        stormy_ids = await _group(client, seed, count)
        stalled = services.stall_postgres()
        began = time.monotonic()
        await asyncio.sleep(stall_s)
        _signal_all(stalled, signal.SIGCONT)
        stormy = await _lengths(client, stormy_ids)
        held = time.monotonic() - began
    finally:
        stop.set()
        await workers
        await asyncio.gather(*(db.dispose() for db in databases.values()))
    rows = [["checkouts", "ended", "events min", "median", "max"]]
    for name, group in ((f"calm ({count})", calm), (f"through a {held:.0f} s stall", stormy)):
        events = [n for _, n in group]
        statuses = sorted({status for status, _ in group})
        rows.append(
            [
                name,
                ",".join(statuses),
                str(min(events)),
                str(statistics.median(events)),
                str(max(events)),
            ]
        )
    return "\n".join(aligned(rows))


def _work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="outage-history-"))
    path.chmod(0o755)  # PostgreSQL runs as an unprivileged user when this runs as root
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=int, default=12, help="checkouts per group")
    parser.add_argument("--stall-s", type=float, default=120.0, help="how long PostgreSQL stalls")
    args = parser.parse_args(argv)
    for work_dir in _work_dir():
        services = Services(work_dir)
        try:
            settings = services.start()
            print(asyncio.run(measure(services, settings, args.checkouts, args.stall_s)))
        finally:
            services.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
