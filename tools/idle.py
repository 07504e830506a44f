"""`python -m tools.idle [--seconds 60]`: what a running `just up` costs while nothing happens.

Over the window it samples, at both ends:
- `pg_stat_database` (xact_commit + xact_rollback) of every database of the server at
  DATABASE_URL, less the tool's own transactions (it connects to the `postgres` database only);
- the CPU time (user + system) of the platform's processes, found by their command line
  (`python -m workers ...`, `-m workers relay ...`, `-m api` or uvicorn, `-m sandbox`,
  `-m devstack`) and told apart from another stack's by the URLs in their environment; and of the
  services they stand on (PostgreSQL with its backends, NATS, Temporal), by their listening port.

It prints transactions/s per database and CPU % of one core per process, then one JSON line:
`{"idle_tx_per_s": <total>, "idle_cpu_pct": {<process>: <pct>}, ...}`. Statistics reach
`pg_stat_database` when a backend goes idle (within about a second, at most ten): use a window of
a minute or more. Start no checkout meanwhile: the figures are the cost of rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import psutil  # type: ignore[import-untyped]

from kit.settings import DEFAULT_NATS_URL, DEFAULT_PSP_URL, Settings, database_url_for, get_settings

# The database the tool itself connects to (its own transactions are subtracted there).
OWN_DATABASE = "postgres"
_XACTS = (
    "SELECT datname, xact_commit + xact_rollback AS xacts FROM pg_stat_database "
    "WHERE datname IS NOT NULL"
)


@dataclass(frozen=True)
class Sample:
    """One end of the window."""

    at: float
    xacts: dict[str, int]
    cpu_s: dict[int, float]


def _cpu_seconds(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(times.user + times.system)


def _module_and_args(cmdline: list[str]) -> tuple[str, list[str]] | None:
    """`python -m <module> <args>` -> (module, args); uvicorn serving the API -> ("api", [])."""
    if not cmdline or "python" not in os.path.basename(cmdline[0]):
        return None
    if "-m" in cmdline[:-1]:
        at = cmdline.index("-m")
        return cmdline[at + 1], cmdline[at + 2 :]
    if any("uvicorn" in part for part in cmdline) and any("api" in part for part in cmdline):
        return "api", []
    return None


def _name(module: str, args: list[str]) -> str | None:
    """The process's name in the report, or None when it is not one of the platform's."""
    if module == "workers":
        if args[:1] == ["relay"]:
            return "relays(" + ",".join(args[1:]) + ")"
        return "worker-" + "+".join(args)
    if module in ("api", "uvicorn"):
        return "api"
    if module in ("sandbox", "devstack"):
        return module
    return None


def _belongs(process: psutil.Process, settings: Settings, module: str) -> bool:
    """Whether the process serves this stack: its NATS (or, the sandbox, its PSP) URL is ours."""
    try:
        environment: dict[str, str] = process.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True  # cannot tell: count it
    if module == "sandbox":
        return environment.get("PSP_URL", DEFAULT_PSP_URL) == settings.psp.url
    return environment.get("NATS_URL", DEFAULT_NATS_URL) == settings.nats.url


def platform_processes(settings: Settings) -> dict[str, psutil.Process]:
    """The platform's processes of this stack by report name (replicas numbered `#2`, ...)."""
    found: dict[str, psutil.Process] = {}
    for process in psutil.process_iter(["cmdline"]):
        parsed = _module_and_args(process.info["cmdline"] or [])
        if parsed is None or process.pid == os.getpid():
            continue
        name = _name(*parsed)
        if name is None or not _belongs(process, settings, parsed[0]):
            continue
        unique, replica = name, 1
        while unique in found:
            replica += 1
            unique = f"{name}#{replica}"
        found[unique] = process
    return dict(sorted(found.items()))


def _listening(ports: Mapping[str, int]) -> dict[str, psutil.Process]:
    """The processes listening on `ports` (a service by its client port)."""
    wanted = {port: name for name, port in ports.items()}
    found: dict[str, psutil.Process] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return found
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port in wanted:
            if connection.pid is not None:
                found[wanted[connection.laddr.port]] = psutil.Process(connection.pid)
    return found


def service_processes(settings: Settings) -> dict[str, list[psutil.Process]]:
    """PostgreSQL (the server and its backends), NATS and Temporal of this stack."""
    ports = {
        "postgres": urlsplit(settings.database.url).port or 5432,
        "nats": urlsplit(settings.nats.url).port or 4222,
        "temporal": int(settings.temporal.address.rpartition(":")[2] or 7233),
    }
    services: dict[str, list[psutil.Process]] = {}
    for name, process in _listening(ports).items():
        try:
            services[name] = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return services


async def _xacts(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch(_XACTS)
    return {row["datname"]: int(row["xacts"]) for row in rows}


def _sample(xacts: dict[str, int], processes: Iterable[psutil.Process]) -> Sample:
    cpu = {p.pid: s for p in processes if (s := _cpu_seconds(p)) is not None}
    return Sample(time.monotonic(), xacts, cpu)


def _cpu_pct(processes: Iterable[psutil.Process], start: Sample, end: Sample) -> float:
    """CPU % of one core over the window; a process born meanwhile counts from its birth."""
    elapsed = end.at - start.at
    used = sum(end.cpu_s.get(p.pid, 0.0) - start.cpu_s.get(p.pid, 0.0) for p in processes)
    return round(100.0 * max(used, 0.0) / elapsed, 2)


@dataclass(frozen=True)
class Report:
    """The figures of one window."""

    seconds: float
    tx_per_s: dict[str, float]
    cpu_pct: dict[str, float]
    services_cpu_pct: dict[str, float]

    @property
    def total_tx_per_s(self) -> float:
        """Transactions per second over every database."""
        return round(sum(self.tx_per_s.values()), 2)

    def lines(self) -> list[str]:
        """The human part of the output."""
        lines = [f"idle window: {self.seconds:.0f} s"]
        lines += ["", "transactions/s per database:"]
        lines += [f"  {db:<16} {rate:8.2f}" for db, rate in self.tx_per_s.items()]
        lines += [f"  {'total':<16} {self.total_tx_per_s:8.2f}"]
        lines += ["", "CPU % of one core per platform process:"]
        lines += [f"  {name:<40} {pct:6.2f}" for name, pct in self.cpu_pct.items()]
        lines += ["", "CPU % of one core per service (with its children):"]
        lines += [f"  {name:<40} {pct:6.2f}" for name, pct in self.services_cpu_pct.items()]
        return lines

    def summary(self) -> str:
        """The last line: JSON."""
        return json.dumps(
            {
                "idle_tx_per_s": self.total_tx_per_s,
                "idle_cpu_pct": self.cpu_pct,
                "tx_per_s": self.tx_per_s,
                "services_cpu_pct": self.services_cpu_pct,
                "seconds": round(self.seconds, 1),
            }
        )


async def measure(settings: Settings, seconds: float) -> Report:
    """Sample, wait `seconds`, sample again; the rates in between."""
    processes = platform_processes(settings)
    services = service_processes(settings)
    everyone = [*processes.values(), *(p for group in services.values() for p in group)]
    connection = await asyncpg.connect(database_url_for(settings.database.url, OWN_DATABASE))
    try:
        start = _sample(await _xacts(connection), everyone)
        await asyncio.sleep(seconds)
        # Backends born during the window (a pool growing) count from their birth.
        services = {name: [group[0], *_children(group[0])] for name, group in services.items()}
        everyone = [*processes.values(), *(p for group in services.values() for p in group)]
        end = _sample(await _xacts(connection), everyone)
    finally:
        await connection.close()
    elapsed = end.at - start.at
    own = {OWN_DATABASE: 1}  # the first sample's query; the second is not in its own figures
    tx_per_s = {
        db: round(max(count - start.xacts.get(db, 0) - own.get(db, 0), 0) / elapsed, 2)
        for db, count in sorted(end.xacts.items())
    }
    return Report(
        seconds=elapsed,
        tx_per_s=tx_per_s,
        cpu_pct={name: _cpu_pct([p], start, end) for name, p in processes.items()},
        services_cpu_pct={name: _cpu_pct(group, start, end) for name, group in services.items()},
    )


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return list(process.children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit 1 when no platform process was found."""
    parser = argparse.ArgumentParser(prog="python -m tools.idle", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the window")
    args = parser.parse_args(argv)
    settings = get_settings()
    report = asyncio.run(measure(settings, args.seconds))
    sys.stdout.write("\n".join([*report.lines(), report.summary()]) + "\n")
    if not report.cpu_pct:
        sys.stderr.write("no platform process found: is `just up` running with these URLs?\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
