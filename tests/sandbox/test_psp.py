"""The payment-provider sandbox, over real HTTP against a real process."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.services.process import free_port
from sandbox.psp import payments
from tests.sandbox.conftest import (
    ASYNC_DELAY_S,
    AUTH,
    FLAKY_HANG_S,
    MAX_ATTEMPTS,
    Psp,
    SandboxFactory,
    WebhookReceiver,
)

INTENT_ID = re.compile(r"^pi_[0-9a-f]{24}$")


def new_checkout() -> str:
    """A checkout id no other test uses, to tell this test's intents and webhooks apart."""
    return f"co_{uuid.uuid4().hex}"


async def create(
    client: httpx.AsyncClient,
    token: str,
    checkout_id: str,
    *,
    amount: int = 1000,
    key: str | None = None,
    client_timeout: float | None = None,
) -> httpx.Response:
    """POST /v1/payment_intents."""
    return await client.post(
        "/v1/payment_intents",
        json={
            "amount": amount,
            "currency": "EUR",
            "token": token,
            "capture_method": "manual",
            "metadata": {"checkout_id": checkout_id},
        },
        headers={"Idempotency-Key": key} if key else {},
        timeout=client.timeout if client_timeout is None else client_timeout,
    )


async def post(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    client_timeout: float | None = None,
) -> httpx.Response:
    """A POST with an optional Idempotency-Key."""
    return await client.post(
        path,
        json=body or {},
        headers={"Idempotency-Key": key} if key else {},
        timeout=client.timeout if client_timeout is None else client_timeout,
    )


async def ledger(client: httpx.AsyncClient, checkout_id: str) -> list[dict[str, Any]]:
    """The ledger entries of one checkout."""
    response = await client.get("/v1/ledger", params={"checkout_id": checkout_id})
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def events(client: httpx.AsyncClient, intent_id: str) -> list[dict[str, Any]]:
    """The sandbox's events about one intent, with their delivery state."""
    response = await client.get("/v1/events", params={"payment_intent": intent_id})
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def intent(client: httpx.AsyncClient, intent_id: str) -> dict[str, Any]:
    """GET the intent."""
    response = await client.get(f"/v1/payment_intents/{intent_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def error_code(response: httpx.Response) -> str:
    """`error.code` of an error answer."""
    return str(response.json()["error"]["code"])


def intent_of(response: httpx.Response) -> dict[str, Any]:
    """The intent an answer carries: the body itself, or a card error's `payment_intent`."""
    body: dict[str, Any] = response.json()
    if "error" in body:
        carried: dict[str, Any] = body["error"]["payment_intent"]
        return carried
    return body


# --- tokens ---------------------------------------------------------------------------------


async def test_healthz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200


async def test_visa_authorizes_and_captures_with_a_signed_webhook(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    created = await create(client, "tok_visa", checkout, amount=1250)
    assert created.status_code == 200
    body = created.json()
    # Every property, closed set and enums: tests/sandbox/test_conformance.py.
    assert INTENT_ID.match(body["id"])
    assert body["object"] == "payment_intent"
    assert body["currency"] == "eur"
    assert body["status"] == "requires_capture"
    assert body["capture_method"] == "manual"
    assert (body["amount"], body["amount_capturable"], body["amount_received"]) == (1250, 1250, 0)
    assert body["next_action"] is None
    assert body["last_payment_error"] is None
    assert body["livemode"] is False
    assert abs(body["created"] - time.time()) < 60
    assert body["metadata"] == {"checkout_id": checkout}

    captured = await post(client, f"/v1/payment_intents/{body['id']}/capture")
    assert captured.status_code == 200
    assert captured.json()["status"] == "succeeded"
    assert captured.json()["amount_received"] == 1250
    assert captured.json()["amount_capturable"] == 0

    [delivery] = await receiver.wait_for(checkout, "payment_intent.succeeded")
    assert delivery.content_type == "application/json"
    assert delivery.intent["id"] == body["id"]
    assert delivery.intent["status"] == "succeeded"
    assert re.match(r"^evt_[0-9a-f]{24}$", delivery.event_id)
    assert delivery.event["object"] == "event"
    assert re.match(r"^t=\d+,v1=[0-9a-f]{64}$", delivery.headers["Stripe-Signature"])
    assert isinstance(delivery.event["created"], int)
    assert receiver.rejected == 0
    assert await ledger(client, checkout) == [
        {
            "payment_intent": body["id"],
            "status": "succeeded",
            "currency": "eur",
            "amount": 1250,
            "authorized": 1250,
            "captured": 1250,
            "refunded": 0,
            "metadata": {"checkout_id": checkout},
        }
    ]


@pytest.mark.parametrize(
    ("token", "decline_code"),
    [("tok_declined", "generic_decline"), ("tok_insufficient_funds", "insufficient_funds")],
)
async def test_declines_fail_at_authorization(
    client: httpx.AsyncClient, receiver: WebhookReceiver, token: str, decline_code: str
) -> None:
    """A JSON request gets the same 402 card_error envelope as the SDK's form request."""
    checkout = new_checkout()
    response = await create(client, token, checkout)
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("card_error", "card_declined")
    assert error["decline_code"] == decline_code
    assert error["message"]
    failed = error["payment_intent"]
    # Stripe has no `failed` intent: a declined one waits for another payment method.
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["decline_code"] == decline_code
    [delivery] = await receiver.wait_for(checkout, "payment_intent.payment_failed")
    assert delivery.intent["id"] == failed["id"]
    assert delivery.intent["last_payment_error"]["decline_code"] == decline_code
    [entry] = await ledger(client, checkout)
    assert (entry["status"], entry["authorized"], entry["captured"]) == (
        "requires_payment_method",
        0,
        0,
    )


async def test_3ds_is_approved_by_visiting_next_action_url(
    client: httpx.AsyncClient, receiver: WebhookReceiver, psp: Psp
) -> None:
    checkout = new_checkout()
    body = (await create(client, "tok_3ds", checkout)).json()
    assert body["status"] == "requires_action"
    url = body["next_action"]["redirect_to_url"]["url"]
    assert body["next_action"]["type"] == "redirect_to_url"
    assert url == f"{psp.url}/v1/test_helpers/3ds/{body['id']}/authenticate"
    assert (await ledger(client, checkout))[0]["authorized"] == 0

    page = await client.get(url, headers={"accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "approved" in page.text
    [delivery] = await receiver.wait_for(checkout, "payment_intent.amount_capturable_updated")
    assert delivery.intent["status"] == "requires_capture"
    current = await intent(client, body["id"])
    assert current["status"] == "requires_capture"
    assert current["next_action"] is None
    assert current["amount_capturable"] == 1000

    again = await client.get(url)
    assert again.status_code == 200
    assert again.json()["status"] == "requires_capture"
    assert [e["type"] for e in await events(client, body["id"])] == [
        "payment_intent.amount_capturable_updated"
    ]
    assert (await post(client, f"/v1/payment_intents/{body['id']}/capture")).status_code == 200


async def test_3ds_fail_fails_authentication(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    body = (await create(client, "tok_3ds_fail", checkout)).json()
    assert body["status"] == "requires_action"
    answer = await client.get(body["next_action"]["redirect_to_url"]["url"])
    assert answer.status_code == 200
    assert answer.json()["status"] == "requires_payment_method"
    assert answer.json()["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    [delivery] = await receiver.wait_for(checkout, "payment_intent.payment_failed")
    assert delivery.intent["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    [entry] = await ledger(client, checkout)
    assert (entry["status"], entry["authorized"]) == ("requires_payment_method", 0)


async def test_async_becomes_capturable_after_the_delay(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    started = time.monotonic()
    body = (await create(client, "tok_async", checkout)).json()
    assert body["status"] == "processing"
    assert body["amount_capturable"] == 0
    [delivery] = await receiver.wait_for(checkout, "payment_intent.amount_capturable_updated")
    assert time.monotonic() - started >= ASYNC_DELAY_S * 0.9
    assert delivery.intent["status"] == "requires_capture"
    assert (await intent(client, body["id"]))["status"] == "requires_capture"
    assert (await ledger(client, checkout))[0]["authorized"] == 1000


async def test_canceled_async_intent_never_becomes_capturable(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    body = (await create(client, "tok_async", checkout)).json()
    canceled = await post(client, f"/v1/payment_intents/{body['id']}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    await receiver.wait_for(checkout, "payment_intent.canceled")
    await asyncio.sleep(ASYNC_DELAY_S + 0.3)
    assert (await intent(client, body["id"]))["status"] == "canceled"
    assert [e["type"] for e in await events(client, body["id"])] == ["payment_intent.canceled"]
    assert (await ledger(client, checkout))[0]["authorized"] == 0


async def test_no_webhook_token_never_completes(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    body = (await create(client, "tok_no_webhook", checkout)).json()
    assert body["status"] == "requires_action"
    visited = await client.get(body["next_action"]["redirect_to_url"]["url"])
    assert visited.status_code == 200
    await asyncio.sleep(0.3)
    assert (await intent(client, body["id"]))["status"] == "requires_action"
    assert await events(client, body["id"]) == []
    assert receiver.about(checkout) == []


async def test_unknown_token_and_invalid_parameters_are_refused(
    client: httpx.AsyncClient,
) -> None:
    checkout = new_checkout()
    unknown = await create(client, "tok_nonsense", checkout, key=f"{checkout}-1")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "param": "token",
        "message": "No such PaymentMethod: 'tok_nonsense'",
    }

    valid = {"amount": 1000, "currency": "eur", "token": "tok_visa", "capture_method": "manual"}
    # A value Stripe will not take has no `code` at Stripe, only its message and parameter.
    invalid_bodies: list[tuple[dict[str, Any], str | None, str]] = [
        ({**valid, "amount": -5}, "parameter_invalid_integer", "amount"),
        ({**valid, "amount": 0}, "parameter_invalid_integer", "amount"),
        ({**valid, "amount": "1000"}, "parameter_invalid_integer", "amount"),
        ({**valid, "amount": 10.5}, "parameter_invalid_integer", "amount"),
        ({**valid, "currency": "euro"}, None, "currency"),
        ({**valid, "currency": ""}, "parameter_invalid_empty", "currency"),
        ({**valid, "capture_method": "automatic"}, None, "capture_method"),
        ({**valid, "metadata": {"checkout_id": 7}}, None, "metadata[checkout_id]"),
        ({**valid, "surprise": True}, "parameter_unknown", "surprise"),
        ({k: v for k, v in valid.items() if k != "token"}, "parameter_missing", "payment_method"),
        ({k: v for k, v in valid.items() if k != "amount"}, "parameter_missing", "amount"),
    ]
    for body, code, param in invalid_bodies:
        response = await post(client, "/v1/payment_intents", body, key=f"{checkout}-1")
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert (error["type"], error.get("code"), error["param"]) == (
            "invalid_request_error",
            code,
            param,
        ), body
        assert error["message"], body
    not_json = await client.post(
        "/v1/payment_intents", content=b"amount=1000&currency=eur", headers={"content-type": "x"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    assert "code" not in not_json.json()["error"]

    # Validation errors are not stored: the same key still works with a valid body.
    accepted = await post(
        client, "/v1/payment_intents", {**valid, "currency": "EUR"}, key=f"{checkout}-1"
    )
    assert accepted.status_code == 200
    assert accepted.json()["currency"] == "eur"


async def _behaviour(client: httpx.AsyncClient, name: str) -> list[object]:
    """What a token or payment method does: the authorization, then the step that follows it."""
    checkout = new_checkout()
    created = await create(client, name, checkout, key=f"{checkout}:authorize")
    error = created.json().get("error", {})
    if error and "payment_intent" not in error:  # tok_flaky's first answer: a 500 api_error
        return [created.status_code, error["type"]]
    body = intent_of(created)
    # The error names the intent's own charge: the rest must be the same.
    error_seen = {k: v for k, v in (body["last_payment_error"] or {}).items() if k != "charge"}
    seen: list[object] = [created.status_code, body["status"], error_seen]
    if body.get("status") == "requires_action":
        approval = await client.get(body["next_action"]["redirect_to_url"]["url"])
        seen.append(approval.json()["status"])
    elif body.get("status") == "requires_capture":
        capture = await post(client, f"/v1/payment_intents/{body['id']}/capture")
        seen.append((capture.status_code, capture.json().get("error", {}).get("code")))
    elif body.get("status") == "processing":
        deadline = time.monotonic() + ASYNC_DELAY_S + 5
        while (current := await intent(client, body["id"]))["status"] == "processing":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        seen.append(current["status"])
    return seen


@pytest.mark.parametrize(
    ("payment_method", "token"),
    list(payments.PAYMENT_METHODS.items()),
)
async def test_each_payment_method_behaves_like_its_token(
    client: httpx.AsyncClient, payment_method: str, token: str
) -> None:
    assert await _behaviour(client, payment_method) == await _behaviour(client, token)


async def test_unknown_payment_method_is_refused(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    key = f"{checkout}:authorize"
    body = {"amount": 1000, "currency": "eur", "metadata": {"checkout_id": checkout}}
    unknown = await post(
        client, "/v1/payment_intents", {**body, "payment_method": "pm_card_nonsense"}, key=key
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"] == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "param": "payment_method",
        "message": "No such PaymentMethod: 'pm_card_nonsense'",
    }
    both = await post(
        client, "/v1/payment_intents", {**body, "payment_method": "pm_card_visa", "token": "x"}
    )
    assert both.status_code == 400
    assert await ledger(client, checkout) == []
    # Nothing was stored under the key either: it still serves a valid request.
    valid = await post(
        client, "/v1/payment_intents", {**body, "payment_method": "pm_card_visa"}, key=key
    )
    assert valid.status_code == 200
    assert "idempotent-replayed" not in valid.headers
    assert [e["payment_intent"] for e in await ledger(client, checkout)] == [valid.json()["id"]]
    await asyncio.sleep(0.2)
    assert receiver.about(checkout) == []  # the refused requests sent no event


async def test_unknown_intent_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/payment_intents/pi_000000000000000000000000")
    assert response.status_code == 404
    assert error_code(response) == "resource_missing"
    capture = await post(client, "/v1/payment_intents/pi_000000000000000000000000/capture")
    assert capture.status_code == 404


# --- idempotency ----------------------------------------------------------------------------


async def test_same_key_same_body_replays(client: httpx.AsyncClient) -> None:
    checkout = new_checkout()
    key = f"{checkout}:authorize"
    first = await create(client, "tok_visa", checkout, key=key)
    second = await create(client, "tok_visa", checkout, key=key)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(await ledger(client, checkout)) == 1


async def test_same_key_other_body_or_endpoint_is_refused(client: httpx.AsyncClient) -> None:
    checkout = new_checkout()
    key = f"{checkout}:authorize"
    first = await create(client, "tok_visa", checkout, key=key)
    assert first.status_code == 200
    other_body = await create(client, "tok_visa", checkout, key=key, amount=999)
    assert other_body.status_code == 400
    assert other_body.json()["error"]["type"] == "idempotency_error"
    assert error_code(other_body) == "idempotency_key_in_use"
    other_endpoint = await post(
        client, f"/v1/payment_intents/{first.json()['id']}/capture", key=key
    )
    assert other_endpoint.status_code == 400
    assert error_code(other_endpoint) == "idempotency_key_in_use"
    assert (await intent(client, first.json()["id"]))["status"] == "requires_capture"
    assert len(await ledger(client, checkout)) == 1


async def test_concurrent_requests_with_one_key_create_one_intent(
    client: httpx.AsyncClient,
) -> None:
    checkout = new_checkout()
    key = f"{checkout}:authorize"
    responses = await asyncio.gather(
        *(create(client, "tok_visa", checkout, key=key) for _ in range(8))
    )
    assert {r.status_code for r in responses} <= {200, 409}
    ok = [r for r in responses if r.status_code == 200]
    assert ok
    assert len({r.json()["id"] for r in ok}) == 1
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["error"]["type"] == "idempotency_error"
    assert len(await ledger(client, checkout)) == 1


async def test_flaky_create_with_one_key_authorizes_once(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    key = f"{checkout}:authorize"
    first = await create(client, "tok_flaky", checkout, key=key)
    assert first.status_code == 500
    assert first.json()["error"]["type"] == "api_error"
    with pytest.raises(httpx.ReadTimeout):
        await create(client, "tok_flaky", checkout, key=key, client_timeout=FLAKY_HANG_S / 3)
    third = await create(client, "tok_flaky", checkout, key=key)
    assert third.status_code == 200
    assert third.headers["idempotent-replayed"] == "true"
    assert third.json()["status"] == "requires_capture"
    [entry] = await ledger(client, checkout)
    assert entry["payment_intent"] == third.json()["id"]
    assert entry["authorized"] == 1000


async def test_flaky_create_without_key_authorizes_twice(client: httpx.AsyncClient) -> None:
    checkout = new_checkout()
    first = await create(client, "tok_flaky", checkout)
    assert first.status_code == 500
    with pytest.raises(httpx.ReadTimeout):
        await create(client, "tok_flaky", checkout, client_timeout=FLAKY_HANG_S / 3)
    entries = await ledger(client, checkout)
    assert len(entries) == 2
    assert [e["authorized"] for e in entries] == [1000, 1000]


async def test_flaky_capture_commits_then_errors_then_hangs(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    key = f"{checkout}:authorize"
    assert (await create(client, "tok_flaky", checkout, key=key)).status_code == 500
    intent_id = (await create(client, "tok_flaky", checkout, key=key)).json()["id"]
    path = f"/v1/payment_intents/{intent_id}/capture"

    failed = await post(client, path, key=f"{checkout}:capture")
    assert failed.status_code == 500
    assert (await intent(client, intent_id))["status"] == "succeeded"  # committed all the same
    started = time.monotonic()
    slow = await post(client, path, key=f"{checkout}:capture")
    assert time.monotonic() - started >= FLAKY_HANG_S * 0.9
    assert slow.status_code == 200
    assert slow.headers["idempotent-replayed"] == "true"
    started = time.monotonic()
    normal = await post(client, path, key=f"{checkout}:capture")
    assert time.monotonic() - started < FLAKY_HANG_S
    assert normal.json() == slow.json()
    assert normal.json()["status"] == "succeeded"

    [entry] = await ledger(client, checkout)
    assert (entry["authorized"], entry["captured"]) == (1000, 1000)
    await receiver.wait_for(checkout, "payment_intent.succeeded")
    kinds = [e["type"] for e in await events(client, intent_id)]
    assert kinds == ["payment_intent.succeeded"]


# --- capture, cancel, refund ----------------------------------------------------------------


async def test_capture_state_rules(client: httpx.AsyncClient) -> None:
    checkout = new_checkout()
    pending = (await create(client, "tok_3ds", checkout)).json()
    early = await post(client, f"/v1/payment_intents/{pending['id']}/capture")
    assert early.status_code == 400
    assert error_code(early) == "payment_intent_unexpected_state"
    assert early.json()["error"]["payment_intent"]["status"] == "requires_action"

    authorized = (await create(client, "tok_visa", checkout, amount=1000)).json()
    path = f"/v1/payment_intents/{authorized['id']}/capture"
    too_much = await post(client, path, {"amount_to_capture": 1001})
    assert too_much.status_code == 400
    assert error_code(too_much) == "amount_too_large"
    partial = await post(client, path, {"amount_to_capture": 600}, key=f"{checkout}:capture")
    assert partial.status_code == 200
    assert (partial.json()["status"], partial.json()["amount_received"]) == ("succeeded", 600)

    replay = await post(client, path, {"amount_to_capture": 600}, key=f"{checkout}:capture")
    assert replay.status_code == 200
    assert replay.json() == partial.json()
    for key in (f"{checkout}:capture-again", None):
        again = await post(client, path, {"amount_to_capture": 600}, key=key)
        assert again.status_code == 400
        assert error_code(again) == "payment_intent_unexpected_state"
        assert again.json()["error"]["payment_intent"]["status"] == "succeeded"

    entry = next(
        e for e in await ledger(client, checkout) if e["payment_intent"] == authorized["id"]
    )
    assert (entry["authorized"], entry["captured"]) == (1000, 600)


async def test_cancel_state_rules(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    checkout = new_checkout()
    authorized = (await create(client, "tok_visa", checkout)).json()
    cancel = f"/v1/payment_intents/{authorized['id']}/cancel"
    first = await post(client, cancel, {"cancellation_reason": "abandoned"})
    assert first.status_code == 200
    assert (first.json()["status"], first.json()["amount_capturable"]) == ("canceled", 0)
    [delivery] = await receiver.wait_for(checkout, "payment_intent.canceled")
    assert delivery.intent["id"] == authorized["id"]
    again = await post(client, cancel)
    assert again.status_code == 200
    assert again.json()["status"] == "canceled"
    capture = await post(client, f"/v1/payment_intents/{authorized['id']}/capture")
    assert capture.status_code == 400
    assert error_code(capture) == "payment_intent_unexpected_state"
    assert [e["type"] for e in await events(client, authorized["id"])] == [
        "payment_intent.canceled"
    ]

    three_ds = (await create(client, "tok_3ds", checkout)).json()
    assert (await post(client, f"/v1/payment_intents/{three_ds['id']}/cancel")).status_code == 200
    # A canceled challenge cannot be approved afterwards.
    approval = await client.get(three_ds["next_action"]["redirect_to_url"]["url"])
    assert approval.json()["status"] == "canceled"

    captured = (await create(client, "tok_visa", checkout)).json()
    await post(client, f"/v1/payment_intents/{captured['id']}/capture")
    refused = await post(client, f"/v1/payment_intents/{captured['id']}/cancel")
    assert refused.status_code == 400
    assert error_code(refused) == "payment_intent_unexpected_state"
    assert refused.json()["error"]["payment_intent"]["id"] == captured["id"]
    # A declined intent holds nothing, yet Stripe cancels it (it could be confirmed again).
    declined = intent_of(await create(client, "tok_declined", checkout))
    closed = await post(client, f"/v1/payment_intents/{declined['id']}/cancel")
    assert (closed.status_code, closed.json()["status"]) == (200, "canceled")


async def test_capture_fails_token_is_declined_at_capture(client: httpx.AsyncClient) -> None:
    checkout = new_checkout()
    authorized = (await create(client, "tok_capture_fails", checkout)).json()
    assert authorized["status"] == "requires_capture"
    capture = await post(client, f"/v1/payment_intents/{authorized['id']}/capture")
    assert capture.status_code == 402
    error = capture.json()["error"]
    assert (error["type"], error["code"]) == ("card_error", "card_declined")
    assert error["decline_code"] == "generic_decline"
    assert error["payment_intent"]["status"] == "requires_capture"
    assert (await intent(client, authorized["id"]))["status"] == "requires_capture"
    canceled = await post(client, f"/v1/payment_intents/{authorized['id']}/cancel")
    assert canceled.json()["status"] == "canceled"
    [entry] = await ledger(client, checkout)
    assert (entry["authorized"], entry["captured"], entry["status"]) == (1000, 0, "canceled")


async def test_refund_rules(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    checkout = new_checkout()
    body = (await create(client, "tok_visa", checkout, amount=1000)).json()
    not_captured = await post(client, "/v1/refunds", {"payment_intent": body["id"]})
    assert not_captured.status_code == 400
    assert error_code(not_captured) == "payment_intent_unexpected_state"
    await post(client, f"/v1/payment_intents/{body['id']}/capture")

    partial = await post(client, "/v1/refunds", {"payment_intent": body["id"], "amount": 300})
    assert partial.status_code == 200
    refund = partial.json()
    assert re.match(r"^re_[0-9a-f]{24}$", refund["id"])
    assert {k: refund[k] for k in ("object", "amount", "currency", "payment_intent", "status")} == {
        "object": "refund",
        "amount": 300,
        "currency": "eur",
        "payment_intent": body["id"],
        "status": "succeeded",
    }
    too_large = await post(client, "/v1/refunds", {"payment_intent": body["id"], "amount": 701})
    assert too_large.status_code == 400
    assert error_code(too_large) == "amount_too_large"
    rest = await post(client, "/v1/refunds", {"payment_intent": body["id"]})
    assert rest.json()["amount"] == 700
    # Refunds are on the charge, as at Stripe: unexpanded, the intent names it only.
    plain = await intent(client, body["id"])
    assert "amount_refunded" not in plain
    assert plain["latest_charge"].startswith("ch_")
    expanded = await client.get(
        f"/v1/payment_intents/{body['id']}", params={"expand[]": "latest_charge"}, headers=AUTH
    )
    charge = expanded.json()["latest_charge"]
    assert charge["id"] == plain["latest_charge"]
    assert (charge["object"], charge["amount_refunded"]) == ("charge", 1000)
    assert charge["refunded"] is True

    deliveries = await receiver.wait_for(checkout, "charge.refunded", count=2)
    assert {d.intent["object"] for d in deliveries} == {"charge"}
    assert {d.intent["payment_intent"] for d in deliveries} == {body["id"]}
    assert sorted(d.intent["amount_refunded"] for d in deliveries) == [300, 1000]
    [entry] = await ledger(client, checkout)
    assert (entry["captured"], entry["refunded"]) == (1000, 1000)
    unknown = await post(client, "/v1/refunds", {"payment_intent": "pi_000000000000000000000000"})
    assert error_code(unknown) == "resource_missing"


async def test_ledger_lists_every_intent_and_filters_by_checkout(
    client: httpx.AsyncClient,
) -> None:
    mine, other = new_checkout(), new_checkout()
    a = (await create(client, "tok_visa", mine)).json()["id"]
    b = (await create(client, "tok_visa", other)).json()["id"]
    everything = (await client.get("/v1/ledger")).json()
    assert everything["object"] == "list"
    assert {a, b} <= {e["payment_intent"] for e in everything["data"]}
    assert [e["payment_intent"] for e in await ledger(client, mine)] == [a]


# --- webhooks -------------------------------------------------------------------------------


async def test_webhook_is_retried_after_a_500(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    receiver.fail_next(checkout, 1)
    body = intent_of(await create(client, "tok_declined", checkout))
    [delivered] = await receiver.wait_for(checkout, "payment_intent.payment_failed")
    attempts = receiver.about(checkout)
    assert [d.answered for d in attempts] == [500, 200]
    assert attempts[0].event_id == attempts[1].event_id == delivered.event_id
    # Signed at each attempt (the body is the same event, byte for byte).
    assert attempts[0].body == attempts[1].body
    [event] = await events(client, body["id"])
    assert event["id"] == delivered.event_id
    assert event["delivery"]["state"] == "delivered"
    assert event["delivery"]["attempts"] == 2


async def test_webhook_gives_up_after_max_attempts(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout = new_checkout()
    receiver.fail_next(checkout, 1000)
    body = intent_of(await create(client, "tok_declined", checkout))
    deadline = time.monotonic() + 10
    while (event := (await events(client, body["id"]))[0])["delivery"]["state"] == "pending":
        assert time.monotonic() < deadline, event
        await asyncio.sleep(0.1)
    assert event["delivery"]["state"] == "failed"
    assert event["delivery"]["attempts"] == MAX_ATTEMPTS
    assert event["delivery"]["last_error"] == "HTTP 500"
    assert len(receiver.about(checkout)) == MAX_ATTEMPTS


# --- durability -----------------------------------------------------------------------------


async def test_restart_keeps_intents_and_delivers_what_was_pending(
    start_sandbox: SandboxFactory, webhook_receiver: tuple[WebhookReceiver, str]
) -> None:
    receiver, receiver_url = webhook_receiver
    checkout = new_checkout()
    # First life: nobody listens at the webhook URL, and tok_async is not due before the stop.
    first = start_sandbox(
        webhook_url=f"http://127.0.0.1:{free_port()}/hook",
        SANDBOX_ASYNC_DELAY_S="3",
        SANDBOX_WEBHOOK_MAX_ATTEMPTS="50",
    )
    async with httpx.AsyncClient(
        base_url=first.url, headers=AUTH, timeout=10, trust_env=False
    ) as http:
        visa = (await create(http, "tok_visa", checkout, key=f"{checkout}:a")).json()
        await post(http, f"/v1/payment_intents/{visa['id']}/capture")
        slow = (await create(http, "tok_async", checkout)).json()
        before = await ledger(http, checkout)
        [pending] = await events(http, visa["id"])
    assert pending["delivery"]["state"] == "pending"
    first.process.stop()
    # uvicorn drains and runs the lifespan's shutdown on SIGTERM, then re-raises the signal.
    assert first.process.returncode() in (0, -signal.SIGTERM)
    assert "sandbox.stopped" in first.process.log_path.read_text()

    second = start_sandbox(webhook_url=receiver_url, db_path=first.db_path)
    async with httpx.AsyncClient(
        base_url=second.url, headers=AUTH, timeout=10, trust_env=False
    ) as http:
        assert await ledger(http, checkout) == before
        assert (await intent(http, visa["id"]))["status"] == "succeeded"
        replay = await create(http, "tok_visa", checkout, key=f"{checkout}:a")
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["id"] == visa["id"]

        [succeeded] = await receiver.wait_for(checkout, "payment_intent.succeeded")
        assert succeeded.event_id == pending["id"]
        [capturable] = await receiver.wait_for(
            checkout, "payment_intent.amount_capturable_updated", wait_s=10
        )
        assert capturable.intent["id"] == slow["id"]
        assert (await intent(http, slow["id"]))["status"] == "requires_capture"
    second.process.stop()


# The two payment tables as the sandbox created them while a declined intent was `failed`.
OLD_PAYMENT_TABLES = """
CREATE TABLE payment_intents (
    id TEXT PRIMARY KEY,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN (
        'requires_action', 'processing', 'requires_capture', 'succeeded', 'canceled', 'failed'
    )),
    amount_capturable INTEGER NOT NULL DEFAULT 0,
    amount_received INTEGER NOT NULL DEFAULT 0,
    amount_refunded INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded <= amount_received),
    metadata TEXT NOT NULL,
    checkout_id TEXT,
    next_action_url TEXT,
    last_error_code TEXT,
    last_error_message TEXT,
    authorized INTEGER NOT NULL DEFAULT 0,
    due_at REAL,
    created INTEGER NOT NULL
);
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    payment_intent TEXT NOT NULL REFERENCES payment_intents (id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    reason TEXT,
    metadata TEXT NOT NULL,
    created INTEGER NOT NULL
);
"""
OLD_DECLINED = "pi_0000000000000000000000d1"
OLD_REFUNDED = "pi_0000000000000000000000r1"


async def test_a_file_from_before_stripes_declined_state_is_migrated(
    start_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    db_path = tmp_path / "old.sqlite"
    with sqlite3.connect(db_path) as conn:
        conn.executescript(OLD_PAYMENT_TABLES)
        conn.execute(
            "INSERT INTO payment_intents (id, amount, currency, token, status, metadata,"
            " last_error_code, last_error_message, created) VALUES (?, 900, 'eur',"
            " 'tok_insufficient_funds', 'failed', '{}', 'insufficient_funds',"
            " 'Your card has insufficient funds.', 1700000000)",
            (OLD_DECLINED,),
        )
        conn.execute(
            "INSERT INTO payment_intents (id, amount, currency, token, status, amount_received,"
            " amount_refunded, metadata, authorized, created) VALUES (?, 500, 'eur', 'tok_visa',"
            " 'succeeded', 500, 200, '{}', 1, 1700000000)",
            (OLD_REFUNDED,),
        )
        conn.execute(
            "INSERT INTO refunds VALUES ('re_old', ?, 200, 'eur', NULL, '{}', 1700000001)",
            (OLD_REFUNDED,),
        )
    conn.close()

    psp = start_sandbox(webhook_url="", db_path=db_path)
    async with httpx.AsyncClient(base_url=psp.url, headers=AUTH, trust_env=False) as http:
        declined = await intent(http, OLD_DECLINED)
        assert declined["status"] == "requires_payment_method"
        assert declined["last_payment_error"]["decline_code"] == "insufficient_funds"
        refunded = await http.get(
            f"/v1/payment_intents/{OLD_REFUNDED}", params={"expand[]": "latest_charge"}
        )
        charge = refunded.json()["latest_charge"]
        assert charge["amount_refunded"] == 200
        assert [(r["id"], r["status"]) for r in charge["refunds"]["data"]] == [
            ("re_old", "succeeded")
        ]
        rest = await post(http, "/v1/refunds", {"payment_intent": OLD_REFUNDED})
        assert (rest.status_code, rest.json()["amount"]) == (200, 300)
    psp.process.stop()
    with sqlite3.connect(db_path) as conn:
        [[check]] = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'payment_intents'"
        ).fetchall()
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(payment_intents)")}
    conn.close()
    assert "requires_payment_method" in check
    assert "'failed'" not in check
    assert {"payment_intents_checkout_id", "payment_intents_due_at"} <= indexes
