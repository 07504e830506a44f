"""The official Stripe SDK, sync and async, drives the sandbox over its wire protocol (§6)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest
import stripe

from tests.sandbox.conftest import Psp

API_KEY = "sk_test_sandbox"
# stripe.HTTPXClient posts its encoded body with httpx's deprecated `data=<bytes>`.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


def _metadata() -> dict[str, str]:
    return {"checkout_id": f"co_{uuid.uuid4().hex}"}


def _params(
    payment_method: str, amount: int = 1500, metadata: dict[str, str] | None = None
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
        },
    )


@pytest.fixture
def sdk(psp: Psp) -> stripe.StripeClient:
    """A synchronous client of the shared sandbox (no retries: every call is seen once)."""
    return stripe.StripeClient(
        api_key=API_KEY, base_addresses={"api": psp.url}, max_network_retries=0
    )


@pytest.fixture
async def async_sdk(psp: Psp) -> AsyncIterator[stripe.StripeClient]:
    """An asynchronous client of the shared sandbox, on httpx."""
    http_client = stripe.HTTPXClient()
    yield stripe.StripeClient(
        api_key=API_KEY,
        base_addresses={"api": psp.url},
        http_client=http_client,
        max_network_retries=0,
    )
    await http_client.close_async()  # type: ignore[no-untyped-call]


def test_authorize_capture_and_refund_in_two_parts(sdk: stripe.StripeClient) -> None:
    params = _params("pm_card_visa", amount=2000)
    intent = sdk.v1.payment_intents.create(params)
    assert intent.object == "payment_intent"
    assert intent.id.startswith("pi_")
    assert intent.status == "requires_capture"
    assert intent.amount_capturable == 2000
    assert intent.amount_received == 0
    assert intent.latest_charge
    assert intent.metadata.to_dict() == params["metadata"]

    captured = sdk.v1.payment_intents.capture(intent.id)
    assert captured.status == "succeeded"
    assert captured.amount_received == 2000
    assert captured.amount_capturable == 0

    part = sdk.v1.refunds.create({"payment_intent": intent.id, "amount": 500})
    assert (part.object, part.amount, part.status) == ("refund", 500, "succeeded")
    rest = sdk.v1.refunds.create({"payment_intent": intent.id})
    assert rest.amount == 1500
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sdk.v1.refunds.create({"payment_intent": intent.id})
    assert exc.value.code == "charge_already_refunded"
    assert sdk.v1.payment_intents.retrieve(intent.id).amount_received == 2000


def test_partial_capture_then_cancel_of_another(sdk: stripe.StripeClient) -> None:
    intent = sdk.v1.payment_intents.create(_params("pm_card_visa", amount=1000))
    captured = sdk.v1.payment_intents.capture(intent.id, {"amount_to_capture": 600})
    assert captured.amount_received == 600

    other = sdk.v1.payment_intents.create(_params("pm_card_visa"))
    canceled = sdk.v1.payment_intents.cancel(other.id)
    assert canceled.status == "canceled"
    assert canceled.amount_capturable == 0
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sdk.v1.payment_intents.capture(other.id)
    assert exc.value.code == "payment_intent_unexpected_state"


@pytest.mark.parametrize(
    ("payment_method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
def test_declines_raise_card_error(
    sdk: stripe.StripeClient, payment_method: str, decline_code: str
) -> None:
    with pytest.raises(stripe.CardError) as exc:
        sdk.v1.payment_intents.create(_params(payment_method))
    error = exc.value
    assert error.http_status == 402
    assert error.code == "card_declined"
    assert error.error is not None
    assert error.error.decline_code == decline_code
    assert error.error.type == "card_error"
    assert error.error.payment_intent is not None
    failed = error.error.payment_intent
    assert failed.status == "failed"
    assert failed.last_payment_error is not None
    assert failed.last_payment_error.decline_code == decline_code


async def test_json_decline_still_answers_the_failed_intent(psp: Psp) -> None:
    """The platform's JSON client keeps reading a decline as a 402 carrying the intent itself."""
    async with httpx.AsyncClient(base_url=psp.url, trust_env=False) as http:
        response = await http.post(
            "/v1/payment_intents",
            json={"amount": 100, "currency": "EUR", "token": "tok_declined"},
        )
    assert response.status_code == 402
    body = response.json()
    assert body["object"] == "payment_intent"
    assert body["last_error"]["code"] == "card_declined"


def test_idempotent_replay_and_conflict(sdk: stripe.StripeClient) -> None:
    key = f"sdk-{uuid.uuid4()}"
    metadata = _metadata()
    params = _params("pm_card_visa", 1500, metadata)
    first = sdk.v1.payment_intents.create(params, {"idempotency_key": key})
    again = sdk.v1.payment_intents.create(params, {"idempotency_key": key})
    assert again.id == first.id
    other = _params("pm_card_visa", 1501, metadata)
    with pytest.raises(stripe.IdempotencyError) as exc:
        sdk.v1.payment_intents.create(other, {"idempotency_key": key})
    assert exc.value.http_status == 400


def test_declined_replay_raises_card_error_again(sdk: stripe.StripeClient) -> None:
    key = f"sdk-{uuid.uuid4()}"
    params = _params("pm_card_chargeDeclined")
    ids = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as exc:
            sdk.v1.payment_intents.create(params, {"idempotency_key": key})
        assert exc.value.error is not None
        assert exc.value.error.payment_intent is not None
        ids.append(exc.value.error.payment_intent.id)
    assert ids[0] == ids[1]


async def test_async_3ds_flow(async_sdk: stripe.StripeClient) -> None:
    intent = await async_sdk.v1.payment_intents.create_async(
        _params("pm_card_threeDSecure2Required")
    )
    assert intent.status == "requires_action"
    assert intent.next_action is not None
    assert intent.next_action.type == "redirect_to_url"
    assert intent.next_action.redirect_to_url is not None
    url = intent.next_action.redirect_to_url.url
    assert url is not None
    async with httpx.AsyncClient(trust_env=False) as http:
        visited = await http.get(url)
    assert visited.status_code == 200
    approved = await async_sdk.v1.payment_intents.retrieve_async(intent.id)
    assert approved.status == "requires_capture"
    assert approved.next_action is None
    captured = await async_sdk.v1.payment_intents.capture_async(intent.id)
    assert captured.status == "succeeded"
    assert captured.amount_received == 1500


async def test_async_capture_cancel_refund_and_errors(async_sdk: stripe.StripeClient) -> None:
    payment_intents = async_sdk.v1.payment_intents
    intent = await payment_intents.create_async(_params("pm_card_visa", amount=800))
    assert intent.status == "requires_capture"
    captured = await payment_intents.capture_async(intent.id)
    assert captured.amount_received == 800
    refund = await async_sdk.v1.refunds.create_async({"payment_intent": intent.id, "amount": 300})
    assert refund.amount == 300

    other = await payment_intents.create_async(_params("pm_card_visa"))
    assert (await payment_intents.cancel_async(other.id)).status == "canceled"

    with pytest.raises(stripe.CardError) as declined:
        await payment_intents.create_async(_params("pm_card_chargeDeclinedInsufficientFunds"))
    assert declined.value.code == "card_declined"
    assert declined.value.error is not None
    assert declined.value.error.decline_code == "insufficient_funds"

    key = f"sdk-{uuid.uuid4()}"
    params = _params("pm_card_visa")
    first = await payment_intents.create_async(params, {"idempotency_key": key})
    assert (await payment_intents.create_async(params, {"idempotency_key": key})).id == first.id
    with pytest.raises(stripe.IdempotencyError):
        await payment_intents.create_async(_params("pm_card_visa"), {"idempotency_key": key})


async def test_form_body_with_empty_brackets_equals_its_json_body(psp: Psp) -> None:
    """`a[]=x` appends, and a form body hashes like its JSON twin under one Idempotency-Key."""
    metadata = _metadata()
    key = f"form-{uuid.uuid4()}"
    form_body = {
        "amount": "700",
        "currency": "eur",
        "payment_method": "pm_card_visa",
        "payment_method_types[]": "card",
        "confirm": "true",
        "metadata[checkout_id]": metadata["checkout_id"],
    }
    json_body = {
        "amount": 700,
        "currency": "eur",
        "payment_method": "pm_card_visa",
        "payment_method_types": ["card"],
        "confirm": True,
        "metadata": metadata,
    }
    headers = {"Idempotency-Key": key, "Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=psp.url, trust_env=False) as http:
        by_form = await http.post("/v1/payment_intents", data=form_body, headers=headers)
        by_json = await http.post("/v1/payment_intents", json=json_body, headers=headers)
        refused = await http.post(
            "/v1/payment_intents", data={**form_body, "confirm": "false"}, headers={}
        )
    assert by_form.status_code == 200, by_form.text
    assert by_form.json()["metadata"] == metadata
    assert by_form.json()["amount"] == 700
    assert by_json.headers.get("idempotent-replayed") == "true"
    assert by_json.json()["id"] == by_form.json()["id"]
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"
