"""Fidelity, proven: every object and event the sandbox sends in every scenario of its payment
method table is validated against Stripe's description of the pinned SDK's API version
(tests/sandbox/stripe_spec), and Stripe's state machine holds.

The scenarios run through the official SDK (async client on httpx); what is validated is the raw
JSON the sandbox sent, not the SDK's reading of it. Events are the webhook bodies as delivered,
their signatures checked by `stripe.Webhook.construct_event`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import stripe

from sandbox.psp import objects
from tests.sandbox.conftest import (
    API_KEY,
    WEBHOOK_SECRET,
    Psp,
    SandboxFactory,
    WebhookReceiver,
    stripe_header,
)
from tests.sandbox.stripe_spec import Conformance, api_version, document
from tools import stripe_schema

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")

# (payment method, Stripe error code, decline code, outcome type of the failed charge)
DECLINES = [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline", "issuer_declined"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds", None),
    ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card", "issuer_declined"),
    ("pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card", "issuer_declined"),
    ("pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent", "issuer_declined"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card", None),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc", None),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error", None),
    ("pm_card_radarBlock", "card_declined", "fraudulent", "blocked"),
]
# Every event type the sandbox sends.
EVENT_TYPES = {
    "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed",
    "payment_intent.succeeded",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
}
DELAY_S = 0.3


@pytest.fixture(scope="module")
def conformance() -> Conformance:
    """What the module validated; its last test reports it."""
    return Conformance()


@pytest.fixture(scope="module")
def shared(start_sandbox: SandboxFactory, webhook_receiver: tuple[WebhookReceiver, str]) -> Psp:
    """A sandbox whose refunds fail and disputes open quickly."""
    return start_sandbox(
        webhook_url=webhook_receiver[1],
        SANDBOX_REFUND_FAIL_DELAY_S=str(DELAY_S),
        SANDBOX_DISPUTE_DELAY_S=str(DELAY_S),
    )


class Scenario:
    """The SDK against the sandbox, every answer and event validated on the way."""

    def __init__(
        self, client: stripe.StripeClient, receiver: WebhookReceiver, checked: Conformance
    ) -> None:
        self.intents = client.v1.payment_intents
        self.refunds = client.v1.refunds
        self.disputes = client.v1.disputes
        self.receiver = receiver
        self.checked = checked

    def raw(self, obj: stripe.StripeObject) -> dict[str, Any]:
        """The JSON the sandbox sent for an SDK object."""
        assert obj.last_response is not None
        body: dict[str, Any] = json.loads(obj.last_response.body)
        return body

    async def create(self, payment_method: str, key: str | None = None) -> dict[str, Any]:
        """Create and confirm an intent; its JSON, validated."""
        params = cast(
            stripe.params.PaymentIntentCreateParams,
            {
                "amount": 2500,
                "currency": "eur",
                "payment_method": payment_method,
                "payment_method_types": ["card"],
                "confirm": True,
                "capture_method": "manual",
                "metadata": {"checkout_id": "co_conformance"},
            },
        )
        options: stripe.RequestOptions = {"idempotency_key": key} if key else {}
        body = self.raw(await self.intents.create_async(params, options))
        self.checked.intent(body)
        return body

    async def declined(self, payment_method: str) -> dict[str, Any]:
        """Create an intent the card refuses: the 402 error body, validated."""
        with pytest.raises(stripe.CardError) as refused:
            await self.create(payment_method)
        body = refused.value.json_body
        assert isinstance(body, dict)
        self.checked.error(body)
        return body

    async def confirm(self, intent_id: str, payment_method: str) -> dict[str, Any]:
        """Confirm the intent again with another payment method; its JSON, validated."""
        params: stripe.params.PaymentIntentConfirmParams = {"payment_method": payment_method}
        body = self.raw(await self.intents.confirm_async(intent_id, params))
        self.checked.intent(body)
        return body

    async def retrieve(self, intent_id: str) -> dict[str, Any]:
        """The intent with its charge expanded, validated."""
        found = await self.intents.retrieve_async(intent_id, {"expand": ["latest_charge"]})
        body = self.raw(found)
        self.checked.intent(body)
        return body

    async def capture(self, intent_id: str) -> dict[str, Any]:
        """Capture; the intent, validated."""
        body = self.raw(await self.intents.capture_async(intent_id))
        self.checked.intent(body)
        return body

    async def cancel(self, intent_id: str) -> dict[str, Any]:
        """Cancel; the intent, validated."""
        body = self.raw(await self.intents.cancel_async(intent_id))
        self.checked.intent(body)
        return body

    async def refund(self, intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund; the refund, validated."""
        params: stripe.params.RefundCreateParams = {"payment_intent": intent_id}
        if amount is not None:
            params["amount"] = amount
        body = self.raw(await self.refunds.create_async(params))
        self.checked.check("refund", body)
        return body

    async def dispute(self, obj: stripe.Dispute) -> dict[str, Any]:
        """A dispute the SDK read or changed; its JSON, validated."""
        body = self.raw(obj)
        self.checked.check("dispute", body)
        return body

    async def disputed(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A captured pm_card_createDispute intent and the dispute its capture brought."""
        created = await self.create("pm_card_createDispute")
        captured = await self.capture(created["id"])
        event = await self.event(created["id"], "charge.dispute.created")
        return captured, event["data"]["object"]

    async def event(self, intent_id: str, event_type: str) -> dict[str, Any]:
        """The delivered event of that type about the intent: signature checked, validated."""
        delivery = await self.receiver.wait_for_intent(intent_id, event_type)
        header = stripe_header(delivery.headers)
        assert header is not None
        assert stripe.Webhook.construct_event(delivery.body, header, WEBHOOK_SECRET).type == (
            event_type
        )
        event: dict[str, Any] = json.loads(delivery.body)
        self.checked.event(event)
        return event

    async def approve(self, intent: dict[str, Any]) -> None:
        """The buyer visits the 3-D Secure page."""
        url = intent["next_action"]["redirect_to_url"]["url"]
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.get(url)).status_code == 200


@pytest.fixture
async def scenario(
    shared: Psp, receiver: WebhookReceiver, conformance: Conformance
) -> AsyncIterator[Scenario]:
    """The async SDK against the shared sandbox, without retries."""
    http = stripe.HTTPXClient()
    client = stripe.StripeClient(
        api_key=API_KEY,
        base_addresses={"api": shared.url},
        http_client=http,
        max_network_retries=0,
    )
    yield Scenario(client, receiver, conformance)
    await http.close_async()  # type: ignore[no-untyped-call]


def test_the_schemas_are_of_the_pinned_sdks_api_version() -> None:
    assert api_version() == stripe.api_version == objects.API_VERSION
    assert set(document()["schemas"]) == {
        "payment_intent",
        "charge",
        "refund",
        "dispute",
        "event",
        "error",
        "tax.calculation",
        "tax.calculation_line_item",
        "tax.transaction",
        "tax.transaction_line_item",
    }


def test_the_vendored_schemas_are_what_the_generator_makes_of_the_installed_sdk() -> None:
    """Upgrading `stripe` without regenerating (python -m tools.stripe_schema) fails here."""
    assert stripe_schema.generate() == document()


def test_the_schemas_refuse_what_stripe_would_never_send() -> None:
    """The validator bites: an unknown status, an unknown field, a missing field all fail."""
    checked = Conformance()
    intent = objects.payment_intent(
        id="pi_1",
        amount=100,
        currency="eur",
        status="requires_capture",
        amount_capturable=100,
        amount_received=0,
        metadata={},
        created=1,
        next_action_url=None,
        last_payment_error=None,
        latest_charge=None,
        canceled_at=None,
    )
    checked.intent(intent)
    for broken in (
        {**intent, "status": "failed"},
        {**intent, "amount_refunded": 0},
        {k: v for k, v in intent.items() if k != "client_secret"},
    ):
        with pytest.raises(AssertionError, match="does not conform"):
            checked.intent(broken)


async def test_visa_authorizes_captures_and_refunds(scenario: Scenario) -> None:
    created = await scenario.create("pm_card_visa")
    assert (created["status"], created["amount_capturable"]) == ("requires_capture", 2500)
    charge = (await scenario.retrieve(created["id"]))["latest_charge"]
    assert (charge["status"], charge["captured"], charge["outcome"]["type"]) == (
        "succeeded",
        False,
        "authorized",
    )
    captured = await scenario.capture(created["id"])
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 2500)
    await scenario.event(created["id"], "payment_intent.succeeded")
    first = await scenario.refund(created["id"], 1000)
    rest = await scenario.refund(created["id"])
    assert [first["status"], rest["status"]] == ["succeeded", "succeeded"]
    charge = (await scenario.retrieve(created["id"]))["latest_charge"]
    assert (charge["amount_refunded"], charge["refunded"]) == (2500, True)
    assert sorted(r["amount"] for r in charge["refunds"]["data"]) == [1000, 1500]
    event = await scenario.event(created["id"], "charge.refunded")
    assert event["data"]["object"]["object"] == "charge"


@pytest.mark.parametrize(("payment_method", "code", "decline_code", "outcome"), DECLINES)
async def test_a_decline_leaves_the_intent_requiring_a_payment_method(
    scenario: Scenario,
    payment_method: str,
    code: str,
    decline_code: str,
    outcome: str | None,
) -> None:
    error = (await scenario.declined(payment_method))["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        code,
        decline_code,
    )
    intent = error["payment_intent"]
    assert (intent["status"], intent["payment_method"]) == ("requires_payment_method", None)
    assert intent["last_payment_error"]["decline_code"] == decline_code
    charge = (await scenario.retrieve(intent["id"]))["latest_charge"]
    assert (charge["status"], charge["paid"], charge["failure_code"]) == ("failed", False, code)
    if outcome is not None:
        assert charge["outcome"]["type"] == outcome
    event = await scenario.event(intent["id"], "payment_intent.payment_failed")
    assert event["data"]["object"]["status"] == "requires_payment_method"


async def test_a_declined_intent_confirmed_with_another_card_is_the_same_intent(
    scenario: Scenario,
) -> None:
    declined = (await scenario.declined("pm_card_chargeDeclined"))["error"]["payment_intent"]
    confirmed = await scenario.confirm(declined["id"], "pm_card_visa")
    assert (confirmed["id"], confirmed["status"]) == (declined["id"], "requires_capture")
    assert (confirmed["amount_capturable"], confirmed["last_payment_error"]) == (2500, None)
    captured = await scenario.capture(declined["id"])
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 2500)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await scenario.confirm(declined["id"], "pm_card_visa")  # nothing left to confirm
    assert refused.value.code == "payment_intent_unexpected_state"


async def test_a_confirmation_declined_again_replaces_the_error(scenario: Scenario) -> None:
    declined = (await scenario.declined("pm_card_chargeDeclined"))["error"]["payment_intent"]
    with pytest.raises(stripe.CardError) as again:
        await scenario.confirm(declined["id"], "pm_card_chargeDeclinedStolenCard")
    body = again.value.json_body
    assert isinstance(body, dict)
    scenario.checked.error(body)
    intent = body["error"]["payment_intent"]
    assert (intent["id"], intent["status"]) == (declined["id"], "requires_payment_method")
    assert intent["last_payment_error"]["decline_code"] == "stolen_card"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await scenario.confirm(declined["id"], "pm_card_unknown")
    assert unknown.value.code == "resource_missing"
    canceled = await scenario.cancel(declined["id"])
    assert canceled["status"] == "canceled"


@pytest.mark.parametrize(
    "payment_method", ["pm_card_threeDSecure2Required", "pm_card_authenticationRequired"]
)
async def test_authentication_required_then_approved(
    scenario: Scenario, payment_method: str
) -> None:
    created = await scenario.create(payment_method)
    assert created["status"] == "requires_action"
    assert created["next_action"]["type"] == "redirect_to_url"
    await scenario.approve(created)
    event = await scenario.event(created["id"], "payment_intent.amount_capturable_updated")
    assert event["data"]["object"]["status"] == "requires_capture"
    canceled = await scenario.cancel(created["id"])
    assert canceled["status"] == "canceled"
    assert isinstance(canceled["canceled_at"], int)
    await scenario.event(created["id"], "payment_intent.canceled")


async def test_failed_authentication_requires_a_payment_method(scenario: Scenario) -> None:
    created = await scenario.create("pm_sandbox_3ds_fail")
    await scenario.approve(created)
    event = await scenario.event(created["id"], "payment_intent.payment_failed")
    intent = event["data"]["object"]
    assert intent["status"] == "requires_payment_method"
    assert (intent["last_payment_error"]["type"], intent["last_payment_error"]["code"]) == (
        "invalid_request_error",
        "payment_intent_authentication_failure",
    )
    assert (await scenario.retrieve(created["id"]))["latest_charge"] is None


async def test_async_processing_then_capturable(scenario: Scenario) -> None:
    created = await scenario.create("pm_sandbox_async")
    assert created["status"] == "processing"
    event = await scenario.event(created["id"], "payment_intent.amount_capturable_updated")
    assert event["data"]["object"]["status"] == "requires_capture"
    await scenario.retrieve(created["id"])


async def test_no_webhook_waits_until_canceled(scenario: Scenario) -> None:
    created = await scenario.create("pm_sandbox_no_webhook")
    assert created["status"] == "requires_action"
    await scenario.cancel(created["id"])
    await scenario.event(created["id"], "payment_intent.canceled")


async def test_capture_fails_is_a_card_error_keeping_the_authorization(
    scenario: Scenario,
) -> None:
    created = await scenario.create("pm_sandbox_capture_fails")
    with pytest.raises(stripe.CardError) as refused:
        await scenario.capture(created["id"])
    body = refused.value.json_body
    assert isinstance(body, dict)
    scenario.checked.error(body)
    assert body["error"]["payment_intent"]["status"] == "requires_capture"
    await scenario.cancel(created["id"])


async def test_refund_fail_goes_pending_then_failed(scenario: Scenario) -> None:
    created = await scenario.create("pm_card_refundFail")
    await scenario.capture(created["id"])
    refund = await scenario.refund(created["id"])
    assert refund["status"] == "pending"
    failed = await scenario.event(created["id"], "refund.failed")
    assert failed["data"]["object"]["id"] == refund["id"]
    assert failed["data"]["object"]["status"] == "failed"
    assert failed["data"]["object"]["failure_reason"] == "expired_or_canceled_card"
    updated = await scenario.event(created["id"], "charge.refund.updated")
    assert updated["data"]["object"]["status"] == "failed"
    charge = (await scenario.retrieve(created["id"]))["latest_charge"]
    assert (charge["amount_refunded"], charge["refunded"]) == (0, False)
    assert [r["status"] for r in charge["refunds"]["data"]] == ["failed"]


async def test_create_dispute_opens_a_dispute_after_the_capture(scenario: Scenario) -> None:
    created = await scenario.create("pm_card_createDispute")
    captured = await scenario.capture(created["id"])
    assert (await scenario.retrieve(created["id"]))["latest_charge"]["disputed"] is False
    event = await scenario.event(created["id"], "charge.dispute.created")
    dispute = event["data"]["object"]
    assert (dispute["status"], dispute["reason"], dispute["amount"]) == (
        "needs_response",
        "fraudulent",
        captured["amount_received"],
    )
    assert dispute["evidence_details"]["due_by"] > dispute["created"]
    assert dispute["charge"] == captured["latest_charge"]
    assert (await scenario.retrieve(created["id"]))["latest_charge"]["disputed"] is True
    read = await scenario.dispute(await scenario.disputes.retrieve_async(dispute["id"]))
    assert read == dispute


async def test_a_dispute_answered_with_stripes_winning_evidence_is_won(scenario: Scenario) -> None:
    captured, dispute = await scenario.disputed()
    staged = await scenario.dispute(
        await scenario.disputes.update_async(
            dispute["id"],
            {"evidence": {"uncategorized_text": "winning_evidence"}, "submit": False},
        )
    )
    assert (staged["status"], staged["evidence_details"]["has_evidence"]) == (
        "needs_response",
        True,
    )
    await scenario.event(captured["id"], "charge.dispute.updated")
    won = await scenario.dispute(await scenario.disputes.update_async(dispute["id"], {}))
    assert (won["status"], won["evidence_details"]["submission_count"]) == ("won", 1)
    closed = await scenario.event(captured["id"], "charge.dispute.closed")
    assert closed["data"]["object"]["status"] == "won"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await scenario.disputes.close_async(dispute["id"])
    body = refused.value.json_body
    assert isinstance(body, dict)
    scenario.checked.error(body)


async def test_an_accepted_dispute_is_lost(scenario: Scenario) -> None:
    captured, dispute = await scenario.disputed()
    lost = await scenario.dispute(await scenario.disputes.close_async(dispute["id"]))
    assert lost["status"] == "lost"
    closed = await scenario.event(captured["id"], "charge.dispute.closed")
    assert closed["data"]["object"]["id"] == dispute["id"]


async def test_flaky_answers_500_then_hangs_then_replays(scenario: Scenario) -> None:
    key = f"conformance-{uuid.uuid4().hex}"
    with pytest.raises(stripe.APIError) as failed:
        await scenario.create("pm_sandbox_flaky", key)
    body = failed.value.json_body
    assert isinstance(body, dict)
    scenario.checked.error(body)
    assert (failed.value.http_status, body["error"]["type"]) == (500, "api_error")
    hung = await scenario.create("pm_sandbox_flaky", key)  # the hang is short in the tests
    replayed = await scenario.create("pm_sandbox_flaky", key)
    assert replayed["id"] == hung["id"]
    assert replayed["status"] == "requires_capture"


async def test_an_unknown_payment_method_is_resource_missing(scenario: Scenario) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await scenario.create("pm_card_doesNotExist")
    body = refused.value.json_body
    assert isinstance(body, dict)
    scenario.checked.error(body)
    assert (body["error"]["code"], body["error"]["param"]) == ("resource_missing", "payment_method")


async def test_refusals_of_bad_input_are_stripe_errors(scenario: Scenario, shared: Psp) -> None:
    """Every error answer, whatever was wrong, is an error object Stripe defines."""
    unknown = "pi_000000000000000000000000"
    calls = [
        scenario.intents.create_async(
            cast(
                stripe.params.PaymentIntentCreateParams,
                {"amount": -5, "currency": "eur", "payment_method": "pm_card_visa"},
            )
        ),
        scenario.intents.create_async(
            cast(stripe.params.PaymentIntentCreateParams, {"amount": 100, "currency": "euro"})
        ),
        scenario.intents.create_async(
            cast(
                stripe.params.PaymentIntentCreateParams,
                {"amount": 100, "currency": "eur", "payment_method": "pm_card_visa", "x": 1},
            )
        ),
        scenario.intents.retrieve_async(unknown),
        scenario.intents.capture_async(unknown),
        scenario.refunds.create_async({"payment_intent": unknown}),
        scenario.disputes.retrieve_async("dp_000000000000000000000000"),
    ]
    for call in calls:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            await call
        body = refused.value.json_body
        assert isinstance(body, dict)
        scenario.checked.error(body)
    visa = await scenario.create("pm_card_visa")
    await scenario.capture(visa["id"])
    for again in (scenario.capture(visa["id"]), scenario.cancel(visa["id"])):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            await again
        assert isinstance(refused.value.json_body, dict)
        scenario.checked.error(refused.value.json_body)
    async with httpx.AsyncClient(base_url=shared.url, trust_env=False) as http:
        no_key = await http.get(f"/v1/payment_intents/{visa['id']}")
    assert no_key.status_code == 401
    scenario.checked.error(no_key.json())


def test_every_kind_and_event_was_validated(conformance: Conformance) -> None:
    """The must-show: what the suite validated, against which version (run the whole module)."""
    if not conformance.kinds:
        pytest.skip("the scenarios of this module did not run")
    kinds, events = dict(conformance.kinds), dict(conformance.events)
    print(
        f"\nconformance against Stripe {api_version()}: {len(kinds)} object kinds"
        f" ({sum(kinds.values())} objects: {kinds}), {len(events)} event types"
        f" ({sum(events.values())} events: {events})"
    )
    assert set(kinds) == {"payment_intent", "charge", "refund", "dispute", "event", "error"}
    assert set(events) == EVENT_TYPES
