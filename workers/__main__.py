"""`python -m workers <domain> [<domain> ...]`, `python -m workers all`, or
`python -m workers relay <domain> [...]` for outbox relays alone (any of the ten domains).

One task queue per domain; a process given one domain holds only that domain's database.
SIGTERM (or Ctrl-C) stops polling and lets in-flight activities finish within
WORKER_SHUTDOWN_GRACE_S.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from kit.logging import configure_logging, get_logger
from kit.settings import DOMAINS, ProcessRole, get_settings
from workers.bootstrap import WORKER_DOMAINS, run_relays, run_workers

log = get_logger("workers")


async def _main(domains: list[str], relays_only: bool) -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if relays_only:
        await run_relays(domains, settings, stop)
    else:
        await run_workers(domains, settings, stop)


def main(argv: list[str] | None = None) -> int:
    """Parse the domains and run their workers until a signal."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    relays_only = bool(arguments) and arguments[0] == "relay"
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    choices = list(DOMAINS) if relays_only else [*WORKER_DOMAINS, "all"]
    parser.add_argument("domains", nargs="+", choices=choices)
    args = parser.parse_args(arguments[1:] if relays_only else arguments)
    domains = list(WORKER_DOMAINS) if "all" in args.domains else list(dict.fromkeys(args.domains))
    role = ProcessRole("relay" if relays_only else "worker", tuple(domains))
    configure_logging(get_settings().validate_for(role))
    asyncio.run(_main(domains, relays_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
