"""`python -m workers <domain> [<domain> ...]` or `python -m workers all`.

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
from kit.settings import get_settings
from workers.bootstrap import WORKER_DOMAINS, run_workers

log = get_logger("workers")


async def _main(domains: list[str]) -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_workers(domains, settings, stop)


def main(argv: list[str] | None = None) -> int:
    """Parse the domains and run their workers until a signal."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("domains", nargs="+", choices=[*WORKER_DOMAINS, "all"])
    args = parser.parse_args(argv)
    domains = list(WORKER_DOMAINS) if "all" in args.domains else list(dict.fromkeys(args.domains))
    configure_logging(get_settings())
    asyncio.run(_main(domains))
    return 0


if __name__ == "__main__":
    sys.exit(main())
