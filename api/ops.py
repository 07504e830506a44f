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


def _parser(api_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", default=f"http://127.0.0.1:{api_port}")
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
    return parser


def _call(client: httpx.Client, args: argparse.Namespace) -> httpx.Response:
    """The ops API's answer to the command."""
    headers = {"Authorization": f"Bearer {_token(client, args.token)}"}
    if args.command == "list":
        filters = {"status": args.status, "step": args.step, "older_than_s": args.older_than_s}
        params = {k: v for k, v in filters.items() if v is not None}
        return client.get("/v1/ops/checkouts", params=params, headers=headers)
    if args.command == "stuck":
        return client.get("/v1/ops/checkouts/stuck", headers=headers)
    if args.command == "show":
        return client.get(f"/v1/ops/checkouts/{args.checkout_id}", headers=headers)
    return client.post(f"/v1/ops/checkouts/{args.checkout_id}/cancel", headers=headers)


def _print_list(console: Console, body: dict[str, Any]) -> None:
    columns = ["checkout_id", "status", "step", "customer_id", "order_number", "age_s", "ui_url"]
    console.print(_table("checkouts", body["data"], columns))


def _print_stuck(console: Console, body: dict[str, Any]) -> None:
    rows = [
        {
            **r,
            "reasons": ", ".join(r["reasons"]),
            "retrying": "; ".join(
                f"{a['activity_type']} #{a['attempt']}: {a['last_failure']}" for a in r["retrying"]
            ),
        }
        for r in body["data"]
    ]
    columns = ["checkout_id", "step", "reasons", "step_age_s", "retrying", "ui_url"]
    console.print(_table("stuck checkouts", rows, columns))


def _print_show(console: Console, body: dict[str, Any]) -> None:
    checkout = body["checkout"]
    where = f"{checkout['status']} at {checkout['step']} ({body['run_status']})"
    console.print(f"[bold]{checkout['checkout_id']}[/bold] {where}")
    steps = ["step", "status", "started_at", "updated_at", "error_code"]
    console.print(_table("steps", body["steps"], steps))
    pending = ["activity_type", "state", "attempt", "last_failure"]
    console.print(_table("pending activities", body["pending_activities"], pending))
    console.print(f"compensations: {', '.join(body['compensations']) or '-'}")
    console.print(f"web UI: {body['ui_url']}")


def _print_cancel(console: Console, body: dict[str, Any]) -> None:
    console.print(f"cancel requested for {body['checkout_id']}: compensation runs")


PRINTERS = {
    "list": _print_list,
    "stuck": _print_stuck,
    "show": _print_show,
    "cancel": _print_cancel,
}


def run(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Parse, call the ops API, print; the exit code is 0 on success."""
    args = _parser(get_settings().api.port).parse_args(argv)
    with httpx.Client(base_url=args.api, timeout=30, transport=transport) as client:
        response = _call(client, args)
    body = response.json()
    if response.status_code >= 400 or args.json:
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return 1 if response.status_code >= 400 else 0
    PRINTERS[args.command](Console(), body)
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
