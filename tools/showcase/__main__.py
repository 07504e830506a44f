"""`python -m tools.showcase`: run the scenarios against a running platform."""

from __future__ import annotations

import argparse
import logging
import sys
import time

import httpx
import stripe

from kit.settings import get_settings
from tools.showcase import __doc__ as DESCRIPTION
from tools.showcase.platform import Failed, Platform
from tools.showcase.scenarios import SCENARIOS, Scenario


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.showcase",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="the platform's HTTP API")
    parser.add_argument("--psp", default="http://127.0.0.1:8100", help="the providers' sandbox")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run this scenario (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--stripe-key", help="the sandbox's API key for dashboard refunds (default: STRIPE_API_KEY)"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (see --list)")
    return args


def run(scenarios: list[Scenario], platform: Platform) -> int:
    """Each scenario in turn; a summary; 0 when every one passed."""
    results: list[tuple[str, str]] = []
    for scenario in scenarios:
        print(f"\n== {scenario.name} (issue {scenario.issue}): {scenario.title}", flush=True)
        started = time.monotonic()
        try:
            scenario.run(platform)
        except Failed as exc:
            results.append((scenario.name, f"FAILED: {exc}"))
        except (httpx.HTTPError, stripe.StripeError) as exc:  # unreachable, or an unexpected answer
            print(f"   ERROR {type(exc).__name__}: {exc}")
            results.append((scenario.name, f"FAILED: {type(exc).__name__}: {exc}"))
        else:
            results.append((scenario.name, "passed"))
        print(f"   ({time.monotonic() - started:.1f}s)", flush=True)
    print("\n== summary")
    for name, outcome in results:
        print(f"   {name:24} {outcome}")
    return 0 if all(outcome == "passed" for _, outcome in results) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios (all by default); the exit status."""
    args = parse(argv)
    chosen = [s for s in SCENARIOS.values() if not args.only or s.name in args.only]
    if args.list:
        for scenario in chosen:
            print(f"{scenario.name:24} issue {scenario.issue}: {scenario.title}")
        return 0
    # The SDK logs every request at info; the output is the scenarios' own.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    key = args.stripe_key or get_settings().stripe.api_key.get_secret_value()
    dashboard = stripe.StripeClient(
        api_key=key, base_addresses={"api": args.psp}, max_network_retries=0
    )
    with (
        httpx.Client(base_url=args.api, timeout=30) as api,
        httpx.Client(base_url=args.psp, timeout=30) as sandbox,
    ):
        return run(chosen, Platform(api, sandbox, dashboard))


if __name__ == "__main__":
    sys.exit(main())
