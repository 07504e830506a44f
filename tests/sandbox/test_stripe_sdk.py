"""The official Stripe SDK, sync and async, drives the sandbox as it drives Stripe test mode.

Most flows run twice through `Api`, once with the synchronous client and once with the
asynchronous one on httpx. Webhook events are checked with `stripe.Webhook.construct_event`,
exactly as the platform's receiver checks them.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import stripe

from sandbox.psp.auth import NO_KEY_MESSAGE
from tests.sandbox.conftest import (
    API_KEY,
    AUTH,
    WEBHOOK_SECRET,
    Psp,
    SandboxFactory,
    WebhookReceiver,
    stripe_header,
    stripe_receiver,
)
from tests.sandbox.test_psp import ledger

# stripe.HTTPXClient posts its encoded body with httpx's deprecated `data=<bytes>`.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
WRONG_KEY = "sk_test_this_is_not_the_right_key_9876"
SIGNATURE = re.compile(r"^t=(\d+),v1=[0-9a-f]{64}$")


def _metadata() -> dict[str, str]:
    return {"checkout_id": f"co_{uuid.uuid4().hex}"}


def _params(
    payment_method: str, amount: int = 1500, metadata: dict[str, str] | None = None, **extra: Any
) -> stripe.params.PaymentIntentCreateParams:
    # payment_method_types is not in this SDK's typed params; the SDK still sends it
    # (`payment_method_types[0]=card`) and the sandbox accepts it as Stripe does.
    return cast(
        stripe.params.PaymentIntentCreateParams,
        {
            "amount": amount,
            "currency": "eur",
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "capture_method": "manual",
            "metadata": metadata or _metadata(),
            **extra,
        },
    )


def _client(
    url: str, *, api_key: str = API_KEY, http: stripe.HTTPXClient | None = None, retries: int = 0
) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=api_key,
        base_addresses={"api": url},
        http_client=http,
        max_network_retries=retries,
    )


def _headers(obj: stripe.StripeObject) -> dict[str, str]:
    """The HTTP headers of the answer an SDK object came from, names lowercased."""
    response = obj.last_response
    assert response is not None
    return {name.lower(): value for name, value in response.headers.items()}


class Api:
    """One StripeClient behind awaitable calls, made with its sync or its async methods."""

    def __init__(self, client: stripe.StripeClient, *, use_async: bool) -> None:
        self.client = client
        self.use_async = use_async

    async def create(
        self,
        params: stripe.params.PaymentIntentCreateParams,
        options: stripe.RequestOptions | None = None,
    ) -> stripe.PaymentIntent:
        service = self.client.v1.payment_intents
        if self.use_async:
            return await service.create_async(params, options)
        return service.create(params, options)

    async def retrieve(self, intent_id: str) -> stripe.PaymentIntent:
        service = self.client.v1.payment_intents
        if self.use_async:
            return await service.retrieve_async(intent_id)
        return service.retrieve(intent_id)

    async def capture(
        self, intent_id: str, params: stripe.params.PaymentIntentCaptureParams | None = None
    ) -> stripe.PaymentIntent:
        service = self.client.v1.payment_intents
        if self.use_async:
            return await service.capture_async(intent_id, params)
        return service.capture(intent_id, params)

    async def cancel(self, intent_id: str) -> stripe.PaymentIntent:
        service = self.client.v1.payment_intents
        if self.use_async:
            return await service.cancel_async(intent_id)
        return service.cancel(intent_id)

    async def refund(self, params: stripe.params.RefundCreateParams) -> stripe.Refund:
        if self.use_async:
            return await self.client.v1.refunds.create_async(params)
        return self.client.v1.refunds.create(params)


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, psp: Psp) -> AsyncIterator[Api]:
    """The shared sandbox through the SDK (no retries: every call is seen once)."""
    if request.param == "sync":
        yield Api(_client(psp.url), use_async=False)
        return
    http = stripe.HTTPXClient()
    yield Api(_client(psp.url, http=http), use_async=True)
    await http.close_async()  # type: ignore[no-untyped-call]


@pytest.fixture
async def plain(psp: Psp) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the shared sandbox that carries no API key."""
    async with httpx.AsyncClient(base_url=psp.url, timeout=10.0, trust_env=False) as http:
        yield http


async def _everything(plain: httpx.AsyncClient) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await plain.get("/v1/ledger")).json()["data"]
    return data


# --- the main flows -------------------------------------------------------------------------


async def test_authorize_capture_and_refund_in_two_parts(
    api: Api, plain: httpx.AsyncClient
) -> None:
    params = _params("pm_card_visa", amount=2000)
    intent = await api.create(params)
    assert intent.object == "payment_intent"
    assert intent.id.startswith("pi_")
    assert (intent.status, intent.capture_method) == ("requires_capture", "manual")
    assert (intent.amount_capturable, intent.amount_received) == (2000, 0)
    assert intent.latest_charge
    assert intent.metadata.to_dict() == params["metadata"]

    captured = await api.capture(intent.id)
    assert captured.status == "succeeded"
    assert (captured.amount_received, captured.amount_capturable) == (2000, 0)

    part = await api.refund({"payment_intent": intent.id, "amount": 500})
    assert (part.object, part.amount, part.status, part.payment_intent) == (
        "refund",
        500,
        "succeeded",
        intent.id,
    )
    rest = await api.refund({"payment_intent": intent.id})
    assert rest.amount == 1500
    with pytest.raises(stripe.InvalidRequestError) as exc:
        await api.refund({"payment_intent": intent.id})
    assert exc.value.code == "charge_already_refunded"
    [entry] = await ledger(plain, params["metadata"]["checkout_id"])
    assert (entry["authorized"], entry["captured"], entry["refunded"]) == (2000, 2000, 2000)


async def test_partial_capture_and_cancel(api: Api, plain: httpx.AsyncClient) -> None:
    metadata = _metadata()
    intent = await api.create(_params("pm_card_visa", amount=1000, metadata=metadata))
    captured = await api.capture(intent.id, {"amount_to_capture": 600})
    assert (captured.status, captured.amount_received) == ("succeeded", 600)

    other = await api.create(_params("pm_card_visa", metadata=metadata))
    canceled = await api.cancel(other.id)
    assert (canceled.status, canceled.amount_capturable) == ("canceled", 0)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        await api.capture(other.id)
    assert exc.value.code == "payment_intent_unexpected_state"
    assert exc.value.http_status == 400
    entries = {e["payment_intent"]: e for e in await ledger(plain, metadata["checkout_id"])}
    assert entries[intent.id]["captured"] == 600
    assert (entries[other.id]["status"], entries[other.id]["captured"]) == ("canceled", 0)


async def test_3ds_is_approved_at_its_url_then_the_event_arrives(
    api: Api, plain: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    metadata = _metadata()
    intent = await api.create(_params("pm_card_threeDSecure2Required", metadata=metadata))
    assert (intent.status, intent.amount_capturable) == ("requires_action", 0)
    assert intent.next_action is not None
    assert intent.next_action.type == "redirect_to_url"
    assert intent.next_action.redirect_to_url is not None
    url = intent.next_action.redirect_to_url.url
    assert url is not None

    visited = await plain.get(url)  # a browser: no API key
    assert visited.status_code == 200
    [delivery] = await receiver.wait_for(
        metadata["checkout_id"], "payment_intent.amount_capturable_updated"
    )
    event = stripe.Webhook.construct_event(
        delivery.body, stripe_header(delivery.headers), WEBHOOK_SECRET
    )
    assert event.type == "payment_intent.amount_capturable_updated"
    assert event.data.object["id"] == intent.id
    assert event.data.object["status"] == "requires_capture"

    approved = await api.retrieve(intent.id)
    assert (approved.status, approved.amount_capturable) == ("requires_capture", 1500)
    assert approved.next_action is None
    captured = await api.capture(intent.id)
    assert (captured.status, captured.amount_received) == ("succeeded", 1500)


@pytest.mark.parametrize(
    ("payment_method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
async def test_declines_raise_card_error(
    api: Api, plain: httpx.AsyncClient, payment_method: str, decline_code: str
) -> None:
    metadata = _metadata()
    with pytest.raises(stripe.CardError) as exc:
        await api.create(_params(payment_method, metadata=metadata))
    error = exc.value
    assert error.http_status == 402
    assert error.code == "card_declined"
    assert error.error is not None
    assert (error.error.type, error.error.decline_code) == ("card_error", decline_code)
    assert error.error.message
    failed = error.error.payment_intent
    assert failed is not None
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error is not None
    assert failed.last_payment_error.decline_code == decline_code
    [entry] = await ledger(plain, metadata["checkout_id"])
    assert (entry["payment_intent"], entry["status"]) == (failed.id, "requires_payment_method")
    assert entry["authorized"] == 0


async def test_declined_capture_raises_card_error(api: Api) -> None:
    intent = await api.create(_params("pm_sandbox_capture_fails"))
    assert intent.status == "requires_capture"
    with pytest.raises(stripe.CardError) as exc:
        await api.capture(intent.id)
    assert (exc.value.http_status, exc.value.code) == (402, "card_declined")
    assert exc.value.error is not None
    assert exc.value.error.decline_code == "generic_decline"
    assert exc.value.error.payment_intent is not None
    assert exc.value.error.payment_intent.status == "requires_capture"
    assert (await api.cancel(intent.id)).status == "canceled"


async def test_unknown_payment_method_is_invalid_request(
    api: Api, plain: httpx.AsyncClient
) -> None:
    metadata = _metadata()
    with pytest.raises(stripe.InvalidRequestError) as exc:
        await api.create(_params("pm_card_nonsense", metadata=metadata))
    error = exc.value
    assert (error.http_status, error.code) == (400, "resource_missing")
    assert error.param == "payment_method"
    assert error.error is not None
    assert error.error.message == "No such PaymentMethod: 'pm_card_nonsense'"
    assert await ledger(plain, metadata["checkout_id"]) == []


# --- idempotency ----------------------------------------------------------------------------


async def test_idempotent_replay_and_other_parameters(api: Api, plain: httpx.AsyncClient) -> None:
    key = f"sdk-{uuid.uuid4()}"
    metadata = _metadata()
    params = _params("pm_card_visa", 1500, metadata)
    first = await api.create(params, {"idempotency_key": key})
    again = await api.create(params, {"idempotency_key": key})
    assert again.id == first.id
    assert again.to_dict() == first.to_dict()
    assert "idempotent-replayed" not in _headers(first)
    assert _headers(again)["idempotent-replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError) as exc:
        await api.create(_params("pm_card_visa", 1501, metadata), {"idempotency_key": key})
    assert exc.value.http_status == 400
    assert exc.value.error is not None
    assert exc.value.error.type == "idempotency_error"
    [entry] = await ledger(plain, metadata["checkout_id"])
    assert (entry["payment_intent"], entry["amount"]) == (first.id, 1500)


async def test_declined_replay_raises_the_same_card_error(api: Api) -> None:
    key = f"sdk-{uuid.uuid4()}"
    params = _params("pm_card_chargeDeclined")
    answers = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as exc:
            await api.create(params, {"idempotency_key": key})
        answers.append(exc.value)
    assert answers[0].json_body == answers[1].json_body
    assert "idempotent-replayed" not in {k.lower() for k in answers[0].headers or {}}
    assert {k.lower(): v for k, v in (answers[1].headers or {}).items()}[
        "idempotent-replayed"
    ] == "true"


async def _same_key_at_once(
    psp: Psp, params: stripe.params.PaymentIntentCreateParams, *, retries: int
) -> list[stripe.PaymentIntent | BaseException]:
    """Twelve concurrent creates under one fresh Idempotency-Key."""
    key = f"sdk-{uuid.uuid4()}"
    http = stripe.HTTPXClient()
    try:
        service = _client(psp.url, http=http, retries=retries).v1.payment_intents
        return await asyncio.gather(
            *(service.create_async(params, {"idempotency_key": key}) for _ in range(12)),
            return_exceptions=True,
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]


async def test_a_key_in_use_is_a_retryable_api_error(psp: Psp, plain: httpx.AsyncClient) -> None:
    """409 while the key's first request executes: stripe.APIError, which the SDK retries."""
    metadata = _metadata()
    params = _params("pm_card_visa", metadata=metadata)
    answers = await _same_key_at_once(psp, params, retries=0)
    intents = [a for a in answers if isinstance(a, stripe.PaymentIntent)]
    refusals = [a for a in answers if not isinstance(a, stripe.PaymentIntent)]
    assert len({i.id for i in intents}) == 1
    # The first request holds the key for its whole transaction: the others arrive meanwhile.
    assert refusals
    for refused in refusals:
        assert type(refused) is stripe.APIError, repr(refused)
        assert refused.http_status == 409
        # APIError leaves `.code` unset; the envelope is on `.error`.
        assert refused.error is not None
        assert (refused.error.type, refused.error.code) == (
            "idempotency_error",
            "idempotency_key_in_use",
        )
        assert {k.lower(): v for k, v in (refused.headers or {}).items()}[
            "stripe-should-retry"
        ] == "true"

    # With the SDK's own retries every caller ends with the one intent of its key.
    retried = await _same_key_at_once(psp, params, retries=5)
    assert all(isinstance(a, stripe.PaymentIntent) for a in retried), retried
    assert len({cast(stripe.PaymentIntent, a).id for a in retried}) == 1
    assert len(await ledger(plain, metadata["checkout_id"])) == 2  # one per key


# --- authentication -------------------------------------------------------------------------


async def test_wrong_key_raises_authentication_error(psp: Psp) -> None:
    for use_async in (False, True):
        http = stripe.HTTPXClient() if use_async else None
        wrong = Api(_client(psp.url, api_key=WRONG_KEY, http=http), use_async=use_async)
        with pytest.raises(stripe.AuthenticationError) as exc:
            await wrong.create(_params("pm_card_visa"))
        assert exc.value.http_status == 401
        assert exc.value.error is not None
        assert exc.value.error.message == (
            "Invalid API Key provided: sk_test_" + "*" * (len(WRONG_KEY) - 12) + "9876"
        )
        # A request without a key: the SDK itself never sends one (see the test below).
        with pytest.raises(stripe.AuthenticationError) as missing:
            await wrong.create(_params("pm_card_visa"), {"headers": {"Authorization": ""}})
        assert missing.value.http_status == 401
        assert missing.value.error is not None
        assert missing.value.error.message == NO_KEY_MESSAGE
        if http is not None:
            await http.close_async()  # type: ignore[no-untyped-call]


async def test_stripe_endpoints_want_the_key_and_the_sandbox_s_own_do_not(
    plain: httpx.AsyncClient,
) -> None:
    before = await _everything(plain)
    intent_path = "/v1/payment_intents/pi_000000000000000000000000"
    calls = [
        ("POST", "/v1/payment_intents"),
        ("GET", intent_path),
        ("POST", f"{intent_path}/capture"),
        ("POST", f"{intent_path}/cancel"),
        ("POST", "/v1/refunds"),
    ]
    for method, path in calls:
        missing = await plain.request(method, path, data={"amount": "x"})
        assert missing.status_code == 401, path
        assert missing.json() == {
            "error": {"type": "invalid_request_error", "message": NO_KEY_MESSAGE}
        }
        wrong = await plain.request(method, path, headers={"Authorization": f"Bearer {WRONG_KEY}"})
        assert wrong.status_code == 401, path
        assert WRONG_KEY not in wrong.text
    # HTTP Basic with the key as user name, as in Stripe's curl examples, is the same key.
    basic = await plain.get(intent_path, auth=(API_KEY, ""))
    assert (basic.status_code, basic.json()["error"]["code"]) == (404, "resource_missing")
    assert (await plain.get(intent_path, auth=(WRONG_KEY, ""))).status_code == 401
    assert (await plain.get("/v1/events")).status_code == 200
    assert await _everything(plain) == before


# --- webhooks -------------------------------------------------------------------------------


async def test_event_verifies_with_construct_event(api: Api, receiver: WebhookReceiver) -> None:
    metadata = _metadata()
    intent = await api.create(_params("pm_card_visa", metadata=metadata))
    await api.cancel(intent.id)
    [delivery] = await receiver.wait_for(metadata["checkout_id"], "payment_intent.canceled")
    assert delivery.content_type == "application/json"
    header = stripe_header(delivery.headers)
    assert header is not None
    signed_at = SIGNATURE.fullmatch(header)  # one v1: no rotation in progress
    assert signed_at is not None
    assert abs(int(signed_at.group(1)) - time.time()) < 60

    event = stripe.Webhook.construct_event(delivery.body, header, WEBHOOK_SECRET)
    assert isinstance(event, stripe.Event)
    assert event.id.startswith("evt_")
    assert (event.object, event.type, event.livemode) == ("event", "payment_intent.canceled", False)
    assert isinstance(event.created, int)
    assert event.data.object["id"] == intent.id
    assert event.data.object["status"] == "canceled"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body, header, "whsec_some_other_secret")
    forged = delivery.body.replace(b'"canceled"', b'"succeeded"')
    assert forged != delivery.body
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(forged, header, WEBHOOK_SECRET)


async def test_rotation_signs_with_both_secrets(start_sandbox: SandboxFactory) -> None:
    new_secret = "whsec_sandbox_tests_rotated_in_secret"
    metadata = _metadata()
    with stripe_receiver(new_secret) as (receiver, url):
        psp = start_sandbox(
            webhook_url=url,
            STRIPE_WEBHOOK_SECRET=new_secret,
            STRIPE_WEBHOOK_SECRET_PREVIOUS=WEBHOOK_SECRET,
        )
        with pytest.raises(stripe.CardError):
            _client(psp.url).v1.payment_intents.create(
                _params("pm_card_chargeDeclined", metadata=metadata)
            )
        [delivery] = await receiver.wait_for(
            metadata["checkout_id"], "payment_intent.payment_failed"
        )
        psp.process.stop()
    header = stripe_header(delivery.headers)
    assert header is not None
    timestamp, current, previous = header.split(",")
    assert timestamp.startswith("t=")
    assert current.startswith("v1=")
    assert previous.startswith("v1=")
    for secret in (new_secret, WEBHOOK_SECRET):
        event = stripe.Webhook.construct_event(delivery.body, header, secret)
        assert event.type == "payment_intent.payment_failed"
    # The current secret signs first; each v1 matches its own secret only.
    stripe.WebhookSignature.verify_header(delivery.body, f"{timestamp},{current}", new_secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(
            delivery.body, f"{timestamp},{current}", WEBHOOK_SECRET
        )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body, header, "whsec_neither_of_the_two")


# --- refusals of bad input ------------------------------------------------------------------


async def test_bad_input_is_refused_stripe_shaped_and_changes_nothing(
    api: Api, plain: httpx.AsyncClient
) -> None:
    before = await _everything(plain)
    unknown_id = "pi_000000000000000000000000"
    refusals: list[tuple[Any, int, str, str | None]] = [
        (
            api.create(_params("pm_card_visa", amount=-5)),
            400,
            "parameter_invalid_integer",
            "amount",
        ),
        (
            api.create(_params("pm_card_visa", amount=cast(int, "lots"))),
            400,
            "parameter_invalid_integer",
            "amount",
        ),
        (api.create(_params("pm_card_visa", surprise="x")), 400, "parameter_unknown", "surprise"),
        (api.retrieve(unknown_id), 404, "resource_missing", None),
        (api.capture(unknown_id), 404, "resource_missing", None),
        (api.cancel(unknown_id), 404, "resource_missing", None),
        (api.refund({"payment_intent": unknown_id}), 400, "resource_missing", "payment_intent"),
    ]
    for call, status, code, param in refusals:
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await call
        assert (exc.value.http_status, exc.value.code, exc.value.param) == (status, code, param)
        assert exc.value.error is not None
        assert exc.value.error.type == "invalid_request_error"
    for body in (b"amount=100&metadata[checkout_id=x", b"amount]=100", b"a=1&a=2", b"%zz"):
        raw = await plain.post(
            "/v1/payment_intents",
            content=body,
            headers={**AUTH, "content-type": "application/x-www-form-urlencoded"},
        )
        assert raw.status_code == 400, body
        assert raw.json()["error"]["type"] == "invalid_request_error", body
        assert "code" not in raw.json()["error"], body  # as at Stripe: no code, a message
    assert await _everything(plain) == before


# --- JSON bodies (a curl convenience) -------------------------------------------------------


async def test_json_body_gets_the_same_answers_as_the_form_body(psp: Psp) -> None:
    """A form body and its JSON twin validate alike, hash alike, and are answered alike."""
    metadata = _metadata()
    key = f"form-{uuid.uuid4()}"
    form_body = {
        "amount": "700",
        "currency": "eur",
        "payment_method": "pm_card_chargeDeclined",
        "payment_method_types[]": "card",
        "confirm": "true",
        "metadata[checkout_id]": metadata["checkout_id"],
    }
    json_body = {
        "amount": 700,
        "currency": "eur",
        "payment_method": "pm_card_chargeDeclined",
        "payment_method_types": ["card"],
        "confirm": True,
        "metadata": metadata,
    }
    headers = {**AUTH, "Idempotency-Key": key}
    async with httpx.AsyncClient(base_url=psp.url, trust_env=False) as http:
        by_form = await http.post("/v1/payment_intents", data=form_body, headers=headers)
        by_json = await http.post("/v1/payment_intents", json=json_body, headers=headers)
        fresh = await http.post("/v1/payment_intents", json=json_body, headers=AUTH)
        refused = await http.post(
            "/v1/payment_intents", data={**form_body, "confirm": "false"}, headers=AUTH
        )
    assert by_form.status_code == 402, by_form.text
    error = by_form.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "generic_decline",
    )
    assert error["payment_intent"]["metadata"] == metadata
    assert error["payment_intent"]["amount"] == 700
    assert by_json.headers.get("idempotent-replayed") == "true"
    assert by_json.json() == by_form.json()
    assert fresh.status_code == 402
    assert set(fresh.json()) == {"error"}
    assert fresh.json()["error"]["payment_intent"]["id"] != error["payment_intent"]["id"]
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "confirm"
