"""`shopctl` (or `python -m api.ops`): the operator's command line over the ops API.

    shopctl list --status requires_action --older-than 600
    shopctl stuck
    shopctl show <checkout_id>
    shopctl cancel <checkout_id>

Tables by default, `--json` for scripts. `--token` (or SHOPCTL_TOKEN) is an operator token; in
development (ENV=dev) one is minted through /v1/dev/tokens when none is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from kit.settings import get_settings

OPERATOR = "00000000-0000-4000-8000-0000000000ff"


def _token(client: httpx.Client, given: str | None) -> str:
    if given:
        return given
    minted = client.post("/v1/dev/tokens", json={"user_id": OPERATOR, "scopes": ["operator"]})
    if minted.status_code != 200:
        raise SystemExit("no --token given and this API mints none (ENV is not dev)")
    token: str = minted.json()["access_token"]
    return token


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    return table


def run(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Parse, call the ops API, print; the exit code is 0 on success."""
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="shopctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", default=f"http://127.0.0.1:{settings.api_port}")
    parser.add_argument("--token", default=None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="checkouts from Temporal visibility")
    listing.add_argument("--status")
    listing.add_argument("--step")
    listing.add_argument("--older-than", type=float, dest="older_than_s")
    commands.add_parser("stuck", help="checkouts that need a look, and why")
    for name in ("show", "cancel"):
        command = commands.add_parser(name, help=f"{name} one checkout")
        command.add_argument("checkout_id", type=uuid.UUID)
    args = parser.parse_args(argv)

    console = Console()
    with httpx.Client(base_url=args.api, timeout=30, transport=transport) as client:
        headers = {"Authorization": f"Bearer {_token(client, args.token)}"}
        if args.command == "list":
            params = {
                k: v
                for k, v in (
                    ("status", args.status),
                    ("step", args.step),
                    ("older_than_s", args.older_than_s),
                )
                if v is not None
            }
            response = client.get("/v1/ops/checkouts", params=params, headers=headers)
        elif args.command == "stuck":
            response = client.get("/v1/ops/checkouts/stuck", headers=headers)
        elif args.command == "show":
            response = client.get(f"/v1/ops/checkouts/{args.checkout_id}", headers=headers)
        else:
            response = client.post(f"/v1/ops/checkouts/{args.checkout_id}/cancel", headers=headers)
    body = response.json()
    if response.status_code >= 400 or args.json:
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return 1 if response.status_code >= 400 else 0
    if args.command == "list":
        console.print(
            _table(
                "checkouts",
                body["data"],
                ["checkout_id", "status", "step", "customer_id", "order_number", "age_s", "ui_url"],
            )
        )
    elif args.command == "stuck":
        rows = [
            {
                **r,
                "reasons": ", ".join(r["reasons"]),
                "retrying": "; ".join(
                    f"{a['activity_type']} #{a['attempt']}: {a['last_failure']}"
                    for a in r["retrying"]
                ),
            }
            for r in body["data"]
        ]
        console.print(
            _table(
                "stuck checkouts",
                rows,
                ["checkout_id", "step", "reasons", "step_age_s", "retrying", "ui_url"],
            )
        )
    elif args.command == "show":
        checkout = body["checkout"]
        where = f"{checkout['status']} at {checkout['step']} ({body['run_status']})"
        console.print(f"[bold]{checkout['checkout_id']}[/bold] {where}")
        console.print(
            _table(
                "steps", body["steps"], ["step", "status", "started_at", "updated_at", "error_code"]
            )
        )
        console.print(
            _table(
                "pending activities",
                body["pending_activities"],
                ["activity_type", "state", "attempt", "last_failure"],
            )
        )
        console.print(f"compensations: {', '.join(body['compensations']) or '-'}")
        console.print(f"web UI: {body['ui_url']}")
    else:
        console.print(f"cancel requested for {body['checkout_id']}: compensation runs")
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
