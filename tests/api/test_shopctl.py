"""`shopctl` through the real API in provider mode: how it authenticates (client credentials via
discovery, a token file, a token in the environment), what it prints, and its exit codes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from api.auth import issue_token
from api.ops import EXIT_AUTH, EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, run
from devstack.services.process import free_port
from kit.settings import get_settings
from sandbox.settings import DEV_OIDC_CLIENTS
from tests.api.test_auth_oidc import CUSTOMER_CLIENT, provider_mode, provider_token
from tests.platform import Platform

pytestmark = pytest.mark.timeout(120)

SHOPCTL_SECRET = str(DEV_OIDC_CLIENTS["shopctl"]["secret"])


@pytest.fixture(scope="module")
async def provider_api(platform: Platform) -> AsyncIterator[str]:
    """The API in provider mode (the sandbox's OpenID provider), served over HTTP."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(provider_mode(platform), temporal=platform.client),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            log_config=None,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the API did not start"
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
def environment(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.MonkeyPatch]:
    """shopctl's environment: the sandbox's issuer; no credentials until a test sets some."""
    monkeypatch.setenv("AUTH_ISSUER", f"{platform.psp_url}/oidc")
    for name in ("TOKEN", "TOKEN_FILE", "CLIENT_ID", "CLIENT_SECRET", "TOKEN_URL", "SCOPE"):
        monkeypatch.delenv(f"SHOPCTL_{name}", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


async def shopctl(api: str, *argv: str) -> int:
    """The CLI, synchronous, off the loop that serves the API; settings re-read per run."""
    get_settings.cache_clear()
    return await asyncio.to_thread(run, ["--api", api, *argv])


def printed(capsys: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    """The JSON document shopctl wrote (log lines of the in-process platform, which share its
    stdout here, may come before or after it), and what it wrote to stderr."""
    out, err = capsys.readouterr()
    start = min(i for i in (out.find("{\n"), out.find("[\n")) if i >= 0)
    document, _ = json.JSONDecoder().raw_decode(out[start:])
    return document, err


async def test_client_credentials_found_by_discovery(
    provider_api: str, environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("SHOPCTL_CLIENT_ID", "shopctl")
    environment.setenv("SHOPCTL_CLIENT_SECRET", SHOPCTL_SECRET)
    assert await shopctl(provider_api, "--output", "json", "stuck") == EXIT_OK
    assert isinstance(printed(capsys)[0]["data"], list)
    assert await shopctl(provider_api, "list", "--older-than", "0") == EXIT_OK
    assert "checkouts" in capsys.readouterr().out
    environment.setenv("SHOPCTL_CLIENT_SECRET", "not-the-secret")
    assert await shopctl(provider_api, "stuck") == EXIT_AUTH
    assert "refused the client credentials" in capsys.readouterr().err


async def test_a_token_file_or_a_token_in_the_environment(
    platform: Platform,
    provider_api: str,
    environment: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(await provider_token(platform, ("shopctl", SHOPCTL_SECRET)) + "\n")
    assert await shopctl(provider_api, "--token-file", str(token_file), "stuck") == EXIT_OK
    environment.setenv("SHOPCTL_TOKEN_FILE", str(token_file))
    assert await shopctl(provider_api, "stuck") == EXIT_OK
    token_file.write_text("")
    assert await shopctl(provider_api, "stuck") == EXIT_AUTH
    assert "is empty" in capsys.readouterr().err
    environment.delenv("SHOPCTL_TOKEN_FILE")
    # A customer's token: 403, an authorization failure.
    environment.setenv("SHOPCTL_TOKEN", await provider_token(platform, CUSTOMER_CLIENT))
    assert await shopctl(provider_api, "--json", "stuck") == EXIT_AUTH
    assert printed(capsys)[0]["code"] == "forbidden"
    # HS256 is refused once an issuer is set, even signed with the API's own secret.
    environment.setenv("SHOPCTL_TOKEN", issue_token(platform.settings, uuid.uuid4(), ["operator"]))
    assert await shopctl(provider_api, "stuck") == EXIT_AUTH
    assert "401 unauthorized" in capsys.readouterr().err
    environment.delenv("SHOPCTL_TOKEN")
    # Nothing configured, and an issuer set: no development fallback.
    assert await shopctl(provider_api, "stuck") == EXIT_AUTH
    assert "no credentials" in capsys.readouterr().err


async def test_checkout_actions_and_what_they_answer(
    platform: Platform,
    provider_api: str,
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    environment.setenv("SHOPCTL_CLIENT_ID", "shopctl")
    environment.setenv("SHOPCTL_CLIENT_SECRET", SHOPCTL_SECRET)
    checkout, handle = await platform.checkout(token="tok_no_webhook")
    await platform.wait_status(handle, "requires_action")
    checkout_id = str(checkout.checkout_id)
    assert await shopctl(provider_api, "show", checkout_id) == EXIT_OK
    assert "awaiting_payment" in capsys.readouterr().out
    # Not waiting for an operator: retry and resolve are refused with the API's problem.
    assert await shopctl(provider_api, "--json", "retry", checkout_id) == EXIT_REFUSED
    assert printed(capsys)[0]["code"] == "not_waiting_for_operator"
    assert await shopctl(provider_api, "resolve", checkout_id, "--note", "x") == EXIT_REFUSED
    assert "409 not_waiting_for_operator" in capsys.readouterr().err
    assert await shopctl(provider_api, "cancel", checkout_id) == EXIT_OK
    assert "cancel requested" in capsys.readouterr().out
    assert (await handle.result()).status == "cancelled"


async def test_after_sale_commands_report_what_the_api_answers(
    provider_api: str, environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("SHOPCTL_CLIENT_ID", "shopctl")
    environment.setenv("SHOPCTL_CLIENT_SECRET", SHOPCTL_SECRET)
    order = str(uuid.uuid4())
    # An unknown order (or, on an API without the route, an unknown route): refused, printed.
    code = await shopctl(
        provider_api, "refund", order, "--amount", "5.00", "--reason", "damaged in transit"
    )
    assert code == EXIT_REFUSED
    err = capsys.readouterr().err
    assert err.startswith("Idempotency-Key: ")
    assert f"POST /v1/ops/orders/{order}/refunds: 404 order_not_found" in err
    assert await shopctl(provider_api, "returns", "list", order) == EXIT_REFUSED
    assert f"GET /v1/orders/{order}/returns" in capsys.readouterr().err


async def test_refund_prints_its_key_and_a_replay_under_it_refunds_once(
    platform: Platform,
    provider_api: str,
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    environment.setenv("SHOPCTL_CLIENT_ID", "shopctl")
    environment.setenv("SHOPCTL_CLIENT_SECRET", SHOPCTL_SECRET)
    checkout, handle = await platform.checkout()
    body = await handle.result()
    assert body.order is not None
    order = str(body.order.id)
    refund = ("refund", order, "--amount", "2.50", "--reason", "scratched")

    assert await shopctl(provider_api, "--json", *refund) == EXIT_OK
    first, err = printed(capsys)
    key = err.split("Idempotency-Key: ", 1)[1].split()[0]
    assert (first["amount"], first["reason"]) == ("2.50", "scratched")
    assert await shopctl(provider_api, "--json", *refund, "--idempotency-key", key) == EXIT_OK
    assert printed(capsys)[0]["refund_id"] == first["refund_id"]
    ledger = await platform.ledger(checkout.checkout_id)
    assert [r["refunded"] for r in ledger] == [250]


async def test_usage_and_unavailable_exit_codes(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("SHOPCTL_TOKEN", "anything")
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert await shopctl(nowhere, "stuck") == EXIT_UNAVAILABLE
    with pytest.raises(SystemExit) as usage:
        await shopctl(nowhere, "refund", str(uuid.uuid4()), "--amount", "-1", "--reason", "r")
    assert usage.value.code == EXIT_USAGE
    # Client credentials with the provider down: unavailable, not an auth failure.
    environment.delenv("SHOPCTL_TOKEN")
    environment.setenv("SHOPCTL_CLIENT_ID", "shopctl")
    environment.setenv("SHOPCTL_CLIENT_SECRET", SHOPCTL_SECRET)
    environment.setenv("SHOPCTL_TOKEN_URL", f"{nowhere}/oauth/token")
    assert await shopctl(nowhere, "stuck") == EXIT_UNAVAILABLE
    assert "token endpoint" in capsys.readouterr().err


def test_the_calls_match_the_documented_routes() -> None:
    from api.ops import call_for, parser

    cli = parser(get_settings())
    item = uuid.uuid4()
    call = call_for(
        cli.parse_args(
            [
                "returns",
                "receive",
                str(item),
                "--line",
                f"{item}:2",
                "--line",
                f"{item}:1:no-restock",
            ]
        )
    )
    assert (call.method, call.path) == ("POST", f"/v1/ops/returns/{item}/receive")
    assert call.body == {
        "lines": [
            {"order_item_id": str(item), "quantity": 2, "restock": True},
            {"order_item_id": str(item), "quantity": 1, "restock": False},
        ]
    }
    refund = call_for(
        cli.parse_args(
            ["refund", str(item), "--amount", "12.5", "--reason", "r", "--idempotency-key", "k1"]
        )
    )
    assert refund.body == {"amount": "12.5", "reason": "r"}
    assert refund.headers == {"Idempotency-Key": "k1"}
    assert call_for(cli.parse_args(["disputes"])).path == "/v1/ops/disputes"
    assert call_for(cli.parse_args(["returns", "approve", str(item)])).path.endswith("/approve")
    rejected = call_for(cli.parse_args(["returns", "reject", str(item), "--reason", "worn"]))
    assert (rejected.path, rejected.body) == (f"/v1/ops/returns/{item}/reject", {"note": "worn"})
    resolved = call_for(cli.parse_args(["returns", "resolve", str(item), "--note", "paid"]))
    assert (resolved.path, resolved.body) == (f"/v1/ops/returns/{item}/resolve", {"note": "paid"})
    retried = call_for(cli.parse_args(["returns", "retry", str(item)]))
    assert (retried.method, retried.path) == ("POST", f"/v1/ops/returns/{item}/retry")
