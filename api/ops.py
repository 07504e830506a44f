"""`shopctl` (or `python -m api.ops`): the operator's command line over the ops API.

Checkouts:
    shopctl list [--status requires_action] [--step awaiting_payment] [--older-than 600]
    shopctl stuck
    shopctl show <checkout_id>
    shopctl cancel <checkout_id>
    shopctl retry <checkout_id>
    shopctl resolve <checkout_id> --note "refunded by hand, ticket 4711"
Money and goods after the sale:
    shopctl refund <order_id> --amount 12.50 --reason "damaged" [--idempotency-key K]
    shopctl returns list <order_id> | show <return_id> | approve <return_id>
    shopctl returns reject <return_id> [--reason ...]
    shopctl returns retry <return_id> | resolve <return_id> --note "..."
    shopctl returns receive <return_id> --line <order_item_id>:<quantity>[:no-restock] ...
    shopctl disputes

Tables by default, `--output json` (or `--json`) for scripts: the API's JSON as it came.

Credentials, the first that is configured:
  1. a token file: `--token-file PATH` or SHOPCTL_TOKEN_FILE (the whole file is the token);
  2. a token: SHOPCTL_TOKEN;
  3. client credentials: SHOPCTL_CLIENT_ID and SHOPCTL_CLIENT_SECRET, exchanged at the
     provider's token endpoint (SHOPCTL_TOKEN_URL, else discovered from AUTH_ISSUER) for a token
     with scope SHOPCTL_SCOPE (default AUTH_OPERATOR_SCOPE) and audience AUTH_AUDIENCE;
  4. in development (ENV=dev, no AUTH_ISSUER): a token minted through POST /v1/dev/tokens.

Exit codes:
  0  done
  1  the API refused the request (4xx other than 401/403): its problem is printed
  2  usage: the command line is wrong
  3  unavailable: the API or the identity provider could not be reached, or answered 5xx
  4  authentication: no credentials, credentials refused, or 401/403 from the API
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from kit.settings import ProcessRole, Settings, get_settings

OPERATOR = "00000000-0000-4000-8000-0000000000ff"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_AUTH = 4


class CliError(Exception):
    """A failure that ends the command with `exit_code`; `problem` is the API's answer, if any."""

    def __init__(self, exit_code: int, message: str, problem: Any = None) -> None:
        super().__init__(message)
        self.exit_code, self.message, self.problem = exit_code, message, problem


# -- credentials -----------------------------------------------------------------------------


def obtain_token(settings: Settings, token_file: Path | None, api: httpx.Client) -> str:
    """A bearer token from the first configured source (module docstring)."""
    config = settings.shopctl
    path = token_file or config.token_file
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise CliError(EXIT_AUTH, f"cannot read the token file {path}: {exc}") from None
        if not token:
            raise CliError(EXIT_AUTH, f"the token file {path} is empty")
        return token
    if config.token is not None and config.token.get_secret_value():
        return config.token.get_secret_value().strip()
    if config.client_id and config.client_secret is not None:
        secret = config.client_secret.get_secret_value()
        return client_credentials(settings, (config.client_id, secret), api.timeout)
    if settings.env == "dev" and not settings.auth.issuer:
        return _dev_token(api)
    raise CliError(
        EXIT_AUTH,
        "no credentials: set SHOPCTL_TOKEN_FILE (or --token-file), SHOPCTL_TOKEN, or "
        "SHOPCTL_CLIENT_ID and SHOPCTL_CLIENT_SECRET",
    )


def client_credentials(settings: Settings, client: tuple[str, str], timeout: httpx.Timeout) -> str:
    """A token from the provider's client-credentials grant (client_secret_basic)."""
    config = settings.shopctl
    with httpx.Client(timeout=timeout) as provider:
        url = config.token_url or _token_endpoint(settings, provider)
        form = {
            "grant_type": "client_credentials",
            "scope": config.scope or settings.auth.operator_scope,
            "audience": settings.auth.audience,
        }
        try:
            answer = provider.post(url, data=form, auth=client)
        except httpx.HTTPError as exc:
            raise CliError(EXIT_UNAVAILABLE, f"token endpoint {url}: {exc}") from None
    if answer.status_code >= 500:
        raise CliError(EXIT_UNAVAILABLE, f"token endpoint {url} answered {answer.status_code}")
    body = _json_or_text(answer)
    if answer.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise CliError(EXIT_AUTH, f"the provider refused the client credentials at {url}", body)
    return str(body["access_token"])


def _token_endpoint(settings: Settings, provider: httpx.Client) -> str:
    issuer = settings.auth.issuer
    if not issuer:
        raise CliError(EXIT_AUTH, "client credentials need SHOPCTL_TOKEN_URL or AUTH_ISSUER")
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        answer = provider.get(url)
        answer.raise_for_status()
        endpoint = answer.json().get("token_endpoint")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise CliError(EXIT_UNAVAILABLE, f"discovery at {url}: {exc}") from None
    if not isinstance(endpoint, str) or not endpoint:
        raise CliError(EXIT_AUTH, f"{url} names no token_endpoint")
    return endpoint


def _dev_token(api: httpx.Client) -> str:
    try:
        minted = api.post("/v1/dev/tokens", json={"user_id": OPERATOR, "scopes": ["operator"]})
    except httpx.HTTPError as exc:
        raise CliError(EXIT_UNAVAILABLE, f"{api.base_url}: {exc}") from None
    if minted.status_code != 200:
        raise CliError(EXIT_AUTH, "no credentials configured and this API mints no dev tokens")
    token: str = minted.json()["access_token"]
    return token


# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request to the API."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _amount(raw: str) -> str:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal amount: {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"the amount must be positive: {raw!r}")
    return str(value)


def _line(raw: str) -> dict[str, Any]:
    """`<order_item_id>:<quantity>[:no-restock]` -> a received line."""
    parts = raw.split(":")
    try:
        if len(parts) not in (2, 3) or (
            len(parts) == 3 and parts[2] not in ("restock", "no-restock")
        ):
            raise ValueError
        item, quantity = uuid.UUID(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected <order_item_id>:<quantity>[:no-restock], got {raw!r}"
        ) from None
    restock = len(parts) == 2 or parts[2] == "restock"
    return {"order_item_id": str(item), "quantity": quantity, "restock": restock}


def _checkout_commands(commands: Any) -> None:
    listing = commands.add_parser("list", help="checkouts from Temporal visibility")
    listing.add_argument("--status")
    listing.add_argument("--step")
    listing.add_argument("--older-than", type=float, dest="older_than_s", metavar="SECONDS")
    listing.add_argument("--limit", type=int)
    commands.add_parser("stuck", help="checkouts that need a look, and why")
    for name, text in (
        ("show", "one checkout: steps, pending activities, compensations"),
        ("cancel", "end a running checkout (compensation runs, a capture is refunded)"),
        ("retry", "run a checkout's failed compensations again (step needs_attention)"),
        ("resolve", "record that what a checkout could not give back was settled by hand"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("checkout_id", type=uuid.UUID)
        if name == "resolve":
            command.add_argument("--note", required=True, help="what was done (ticket, ...)")


def _after_sale_commands(commands: Any) -> None:
    refund = commands.add_parser("refund", help="refund part of an order's captured payment")
    refund.add_argument("order_id", type=uuid.UUID)
    refund.add_argument("--amount", type=_amount, required=True, help="e.g. 12.50")
    refund.add_argument("--reason", required=True)
    refund.add_argument(
        "--idempotency-key",
        default=None,
        help="repeat a refund safely: the key of the earlier attempt (default: a new one)",
    )
    returns = commands.add_parser("returns", help="an order's returns, and deciding them")
    actions = returns.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the returns of an order").add_argument(
        "order_id", type=uuid.UUID
    )
    for name in ("show", "approve", "reject", "receive", "retry", "resolve"):
        action = actions.add_parser(name, help=f"{name} one return")
        action.add_argument("return_id", type=uuid.UUID)
        if name == "reject":
            action.add_argument("--reason")
        if name == "resolve":
            action.add_argument("--note", required=True, help="how it was settled by hand")
        if name == "receive":
            action.add_argument("--line", type=_line, action="append", required=True, dest="lines")
    commands.add_parser("disputes", help="disputed payments and their deadlines")
    cancel = commands.add_parser(
        "cancel-order", help="cancel a paid order before the carrier has its parcel"
    )
    cancel.add_argument("order_id", type=uuid.UUID)


def parser(settings: Settings) -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(
        prog="shopctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_argument(
        "--api", default=settings.shopctl.api_url or f"http://127.0.0.1:{settings.api.port}"
    )
    cli.add_argument("--token-file", type=Path, default=None, help="a file holding the token")
    cli.add_argument("--output", choices=("table", "json"), default="table")
    cli.add_argument(
        "--json", dest="output", action="store_const", const="json", help="--output json"
    )
    cli.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    commands = cli.add_subparsers(dest="command", required=True)
    _checkout_commands(commands)
    _after_sale_commands(commands)
    return cli


def call_for(args: argparse.Namespace) -> Call:
    """The request a parsed command line makes."""
    checkout = f"/v1/ops/checkouts/{getattr(args, 'checkout_id', '')}"
    simple: dict[str, Callable[[], Call]] = {
        "stuck": lambda: Call("GET", "/v1/ops/checkouts/stuck"),
        "show": lambda: Call("GET", checkout),
        "cancel": lambda: Call("POST", f"{checkout}/cancel"),
        "retry": lambda: Call("POST", f"{checkout}/retry"),
        "resolve": lambda: Call("POST", f"{checkout}/resolve", body={"note": args.note}),
        "disputes": lambda: Call("GET", "/v1/ops/disputes"),
        "cancel-order": lambda: Call("POST", f"/v1/orders/{args.order_id}/cancel"),
    }
    if args.command in simple:
        return simple[args.command]()
    if args.command == "list":
        filters = {
            "status": args.status,
            "step": args.step,
            "older_than_s": args.older_than_s,
            "limit": args.limit,
        }
        params = {k: v for k, v in filters.items() if v is not None}
        return Call("GET", "/v1/ops/checkouts", params=params)
    if args.command == "refund":
        return Call(
            "POST",
            f"/v1/ops/orders/{args.order_id}/refunds",
            body={"amount": args.amount, "reason": args.reason},
            headers={"Idempotency-Key": args.idempotency_key or str(uuid.uuid4())},
        )
    return _returns_call(args)


def _returns_call(args: argparse.Namespace) -> Call:
    if args.action == "list":
        return Call("GET", f"/v1/orders/{args.order_id}/returns")
    if args.action == "show":
        return Call("GET", f"/v1/returns/{args.return_id}")
    path = f"/v1/ops/returns/{args.return_id}/{args.action}"
    if args.action == "receive":
        return Call("POST", path, body={"lines": args.lines})
    if args.action == "reject" and args.reason:
        return Call("POST", path, body={"note": args.reason})
    if args.action == "resolve":
        return Call("POST", path, body={"note": args.note})
    return Call("POST", path)


# -- output ----------------------------------------------------------------------------------


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


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


def _accepted(action: str) -> Callable[[Console, dict[str, Any]], None]:
    def show(console: Console, body: dict[str, Any]) -> None:
        console.print(f"{action} requested for {body.get('checkout_id', '')}")

    return show


def _print_any(console: Console, body: Any) -> None:
    """Rows as a table, an object as field/value pairs."""
    rows = body.get("data") if isinstance(body, dict) else body
    if isinstance(rows, list):
        columns = list(dict.fromkeys(k for r in rows if isinstance(r, dict) for k in r))
        console.print(_table("", [r for r in rows if isinstance(r, dict)], columns))
    elif isinstance(body, dict):
        console.print(
            _table("", [{"field": k, "value": v} for k, v in body.items()], ["field", "value"])
        )
    else:
        console.print(_cell(body))


PRINTERS: dict[str, Callable[[Console, Any], None]] = {
    "list": _print_list,
    "stuck": _print_stuck,
    "show": _print_show,
    "cancel": _accepted("cancel"),
    "retry": _accepted("retry"),
    "resolve": _accepted("resolve"),
}


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _refusal(call: Call, response: httpx.Response) -> CliError:
    """The exit code and message of an API answer >= 400."""
    problem = _json_or_text(response)
    code = problem.get("code") if isinstance(problem, dict) else None
    detail = problem.get("detail") if isinstance(problem, dict) else problem
    message = f"{call.method} {call.path}: {response.status_code} {code or ''}: {detail}"
    if response.status_code == 405 or (response.status_code == 404 and code == "not_found"):
        message += " (this API does not serve the route: it may predate this command)"
    if response.status_code in (401, 403):
        return CliError(EXIT_AUTH, message, problem)
    if response.status_code >= 500:
        return CliError(EXIT_UNAVAILABLE, message, problem)
    return CliError(EXIT_REFUSED, message, problem)


def execute(
    settings: Settings, args: argparse.Namespace, transport: httpx.BaseTransport | None
) -> Any:
    """Authenticate, make the call, and the API's JSON answer (CliError on any failure)."""
    call = call_for(args)
    if "Idempotency-Key" in call.headers:
        # Printed first, so that a refund whose answer is lost can be repeated under its key.
        sys.stderr.write(f"Idempotency-Key: {call.headers['Idempotency-Key']}\n")
    with httpx.Client(base_url=args.api, timeout=args.timeout, transport=transport) as api:
        token = obtain_token(settings, args.token_file, api)
        headers = {**call.headers, "Authorization": f"Bearer {token}"}
        try:
            response = api.request(
                call.method, call.path, params=call.params, json=call.body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise CliError(EXIT_UNAVAILABLE, f"{args.api}: {exc}") from None
    if response.status_code >= 400:
        raise _refusal(call, response)
    return _json_or_text(response)


def run(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Parse, call the ops API, print; the exit code (module docstring)."""
    settings = get_settings().validate_for(ProcessRole("shopctl"))
    args = parser(settings).parse_args(argv)
    try:
        body = execute(settings, args, transport)
    except CliError as exc:
        if args.output == "json" and exc.problem is not None:
            sys.stdout.write(json.dumps(exc.problem, indent=2) + "\n")
        sys.stderr.write(f"shopctl: {exc.message}\n")
        return exc.exit_code
    if args.output == "json":
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        PRINTERS.get(args.command, _print_any)(Console(), body)
    return EXIT_OK


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
