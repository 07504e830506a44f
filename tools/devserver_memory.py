"""`python -m tools.devserver_memory`: the Temporal dev server's memory as closed workflows pile up.

Starts a dev server as `just up` does (temporal/dev-server.yml, persisted SQLite in a temporary
directory), runs `--workflows` small workflows (six activities each) at `--concurrency` against an
in-process worker, and prints the server's RSS, anonymous RSS and file-backed RSS every tenth of
the run, then one JSON line. `--memory-limit none` runs the server without GOMEMLIMIT, to compare:
the same run twice shows whether the growth is live data (both grow) or the collector's slack
(only the unlimited one grows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from devstack.services.process import free_port
from devstack.services.temporal import DevServerConfig, temporal_process
from kit.logging import configure_logging
from kit.settings import get_settings
from kit.temporal import connect

QUEUE = "devserver-memory"
STEPS = 6


@activity.defn
async def step(n: int) -> int:
    """A no-op activity."""
    return n + 1


@workflow.defn
class Steps:
    """Six sequential activities, like a short checkout."""

    @workflow.run
    async def run(self) -> int:
        """Run the steps."""
        n = 0
        for _ in range(STEPS):
            n = await workflow.execute_activity(
                step, n, start_to_close_timeout=timedelta(seconds=30)
            )
        return n


def memory_mb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of a process, in MB (Linux)."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            figures[key] = int(value.split()[0]) // 1024
    return figures


async def drive(address: str, pid: int, workflows: int, concurrency: int) -> list[dict[str, int]]:
    """Run the workflows in ten batches; the server's memory after each."""
    client = await connect(get_settings().temporal.model_copy(update={"address": address}))
    samples = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await client.execute_workflow(Steps.run, id=f"mem-{uuid.uuid4()}", task_queue=QUEUE)

    async with Worker(
        client,
        task_queue=QUEUE,
        workflows=[Steps],
        activities=[step],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        began = time.monotonic()
        batch = max(workflows // 10, 1)
        for done in range(batch, workflows + 1, batch):
            await asyncio.gather(*(one() for _ in range(batch)))
            sample = {"workflows": done, "t_s": round(time.monotonic() - began), **memory_mb(pid)}
            samples.append(sample)
            sys.stdout.write(json.dumps(sample) + "\n")
            sys.stdout.flush()
    return samples


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m tools.devserver_memory", description=__doc__)
    parser.add_argument("--workflows", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--memory-limit", default=None, help="GOMEMLIMIT, or `none`")
    args = parser.parse_args(argv)
    configure_logging(get_settings().updated(log={"level": "WARNING"}))
    config = DevServerConfig.load().serving(f"127.0.0.1:{free_port()}")
    if args.memory_limit is not None:
        limit = None if args.memory_limit == "none" else args.memory_limit
        config = replace(config, memory_limit=limit)
    work = Path(tempfile.mkdtemp(prefix="devserver-memory-"))
    server = temporal_process(config, data_dir=work, log_dir=work)
    try:
        server.start()
        assert server.pid is not None
        samples = asyncio.run(drive(config.address, server.pid, args.workflows, args.concurrency))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    rss = [s["VmRSS"] for s in samples]
    half = rss[len(rss) // 2 :]
    summary = {
        "memory_limit": config.memory_limit,
        "workflows": args.workflows,
        "seconds": samples[-1]["t_s"],
        "rss_mb_first": rss[0],
        "rss_mb_max": max(rss),
        "rss_mb_last": rss[-1],
        "rss_mb_rise_second_half": half[-1] - half[0],
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
