"""`python -m tools.chaos` (`just chaos`): see tools/chaos/__init__.py. Exit 0 only when every
invariant held, every checkout ended as allowed and every fault was recovered from."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from kit.logging import configure_logging
from kit.settings import get_settings
from tools.chaos.faults import catalog
from tools.chaos.report import render
from tools.chaos.run import ChaosConfig, run

# The faults that last a while (`--<name>-s` seconds each).
HELD_FAULTS = ("psp-down", "psp-slow", "carrier-down", "carrier-slow")


def parse(argv: list[str] | None = None) -> ChaosConfig:
    """The command line as a ChaosConfig."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description="Run the platform under a mixed checkout load while faults are injected, "
        "then audit it against the platform's invariants.",
    )
    parser.add_argument("--checkouts", type=int, default=100, help="checkouts to start (100)")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="checkouts started per second (default: paced to span the fault schedule)",
    )
    parser.add_argument(
        "--faults",
        default="all",
        help="all (every fault, each worker kind), kinds (one of each kind), rolling (SIGTERM of "
        "every worker process in turn: a rolling restart; with WORKER_REPLICAS=2), none, or a "
        f"comma list of: {', '.join(catalog())}",
    )
    parser.add_argument("--rounds", type=int, default=1, help="run the fault schedule N times")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="at most N checkouts of the load in flight; later ones wait (64)",
    )
    for held in HELD_FAULTS:
        parser.add_argument(f"--{held}-s", type=float, default=30.0, help=f"{held} lasts (30 s)")
    parser.add_argument("--gap-s", type=float, default=3.0, help="least pause between faults")
    parser.add_argument("--seed", type=int, default=None, help="seed of the workload's draws")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="DATA_DIR (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep DATA_DIR even when all is well")
    parser.add_argument(
        "--quiesce-timeout-s",
        type=float,
        default=600.0,
        help="how long to wait for everything to settle after the load (600 s)",
    )
    parser.add_argument(
        "--recovery-timeout-s",
        type=float,
        default=300.0,
        help="a fault not recovered from within this long fails the run (300 s)",
    )
    parser.add_argument(
        "--worker-replicas",
        type=int,
        default=1,
        help="worker processes per domain queue (WORKER_REPLICAS of the stack; 2 for rolling)",
    )
    args = parser.parse_args(argv)
    config = ChaosConfig(
        checkouts=args.checkouts,
        rate=args.rate,
        faults=args.faults,
        rounds=args.rounds,
        max_in_flight=args.max_in_flight,
        psp_down_s=args.psp_down_s,
        psp_slow_s=args.psp_slow_s,
        carrier_down_s=args.carrier_down_s,
        carrier_slow_s=args.carrier_slow_s,
        gap_s=args.gap_s,
        seed=args.seed,
        data_dir=args.data_dir,
        keep=args.keep,
        quiesce_timeout_s=args.quiesce_timeout_s,
        recovery_timeout_s=args.recovery_timeout_s,
        extra_env={"WORKER_REPLICAS": str(args.worker_replicas)},
    )
    try:
        config.fault_schedule()
    except ValueError as exc:
        parser.error(str(exc))
    return config


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: asyncio.run cancels the run's tasks cleanly on SIGINT."""
    os.kill(os.getpid(), signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    """Run, print the report (last line JSON), exit 0 when all was well."""
    config = parse(argv)
    configure_logging(get_settings())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the run
    # SIGTERM unwinds like Ctrl-C: the stack this run started is stopped either way. A shell
    # starts a background job with SIGINT ignored; Ctrl-C's handler is put back for it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run(config)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; the stack was stopped\n")
        return 130
    sys.stdout.write(render(outcome))
    sys.stdout.flush()
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
