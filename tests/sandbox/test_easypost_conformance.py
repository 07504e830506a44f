"""Fidelity, proven: every object, error and webhook event the sandbox's carrier API sends is
validated against EasyPost's own published description (tests/sandbox/easypost_spec: its client
libraries' types and enums, recordings of its real answers), never against the platform's code.

The scenarios run through the official `easypost` package as the platform does; what is validated
is the raw JSON the sandbox answered (the package's response hook hands it over before the package
reads it), and the webhook bodies as delivered, their signatures checked by the package's
`validate_webhook`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from easypost.easypost_client import EasyPostClient
from easypost.errors.api.api_error import ApiError
from easypost.errors.general.signature_verification_error import SignatureVerificationError
from easypost.models.shipment import Shipment
from easypost.util import validate_webhook

from sandbox.easypost.signing import signature
from tests.sandbox.conftest import (
    CARRIER_SECRET,
    EASYPOST_API_KEY,
    CarrierReceiver,
    Psp,
    SandboxFactory,
)
from tests.sandbox.easypost_spec import Conformance, document, enum, examples, kinds
from tools import easypost_schema

pytestmark = pytest.mark.timeout(90)

STEP_S = 0.3
WAREHOUSE = {"company": "Warehouse", "street1": "1 Dock Road", "city": "Springfield",
             "state": "IL", "zip": "62701", "country": "US", "phone": "5555555555"}  # fmt: skip
BUYER = {"name": "Ada Lovelace", "street1": "12 Analytical St", "city": "San Francisco",
         "state": "CA", "zip": "94110", "country": "US", "email": "ada@example.com"}  # fmt: skip
ABROAD = {"name": "Ada Lovelace", "street1": "1 Pall Mall", "city": "London",
          "zip": "SW1Y 4JH", "country": "GB"}  # fmt: skip
PARCEL = {"weight": 17.7, "length": 11.9, "width": 7.9, "height": 4.0}
# The tracker statuses a sandbox parcel goes through, and the refund statuses it answers.
ROUTE = ["pre_transit", "in_transit", "out_for_delivery", "delivered"]
REFUNDS = {"submitted", "rejected"}


@pytest.fixture(scope="module")
def conformance() -> Conformance:
    """What the module validated; its last test checks the coverage."""
    return Conformance()


@pytest.fixture(scope="module")
def sandbox(start_sandbox: SandboxFactory, carrier_receiver: tuple[CarrierReceiver, str]) -> Psp:
    """A sandbox whose parcels move every STEP_S seconds, sending signed webhooks."""
    return start_sandbox(
        webhook_url="", carrier_webhook_url=carrier_receiver[1], SANDBOX_CARRIER_STEP_S=str(STEP_S)
    )


def hooked(psp: Psp, conformance: Conformance, api_key: str = EASYPOST_API_KEY) -> EasyPostClient:
    """The official client of a sandbox, every raw answer validated as it arrives."""
    easypost = EasyPostClient(api_key, api_base=f"{psp.url}/v2", timeout=10)

    def validate(**response: Any) -> None:
        conformance.answer(response["http_status"], json.loads(response["response_body"]))

    easypost.subscribe_to_response_hook(validate)  # type: ignore[no-untyped-call]
    return easypost


@pytest.fixture
def client(sandbox: Psp, conformance: Conformance) -> EasyPostClient:
    """The package's client of the sandbox, validating."""
    return hooked(sandbox, conformance)


def create(client: EasyPostClient, **overrides: Any) -> Shipment:
    """A shipment from the warehouse to the buyer, as the platform creates one."""
    params: dict[str, Any] = {
        "to_address": BUYER,
        "from_address": WAREHOUSE,
        "parcel": PARCEL,
        "reference": f"order_{uuid.uuid4().hex}",
        "is_return": False,
        **overrides,
    }
    shipment: Shipment = client.shipment.create(**params)
    return shipment


def buy(client: EasyPostClient, shipment: Shipment) -> Shipment:
    """Buy the shipment's cheapest rate, by id as the platform does."""
    cheapest = min(shipment.rates, key=lambda rate: Decimal(rate.rate))
    bought: Shipment = client.shipment.buy(shipment.id, rate={"id": cheapest.id})
    return bought


def refused(call: Any, status: int, code: str) -> None:
    """`call` fails with EasyPost's `status` and error `code` (its body validated by the hook)."""
    with pytest.raises(ApiError) as raised:
        call()
    assert (raised.value.http_status, raised.value.code) == (status, code)
    assert code in enum("Error", "code")


def test_the_published_examples_conform_and_the_schemas_are_current() -> None:
    """EasyPost's own recordings pass (the description is not stricter than EasyPost), and the
    schemas are what the generator makes of the vendored facts."""
    assert easypost_schema.generate() == document()
    checked = Conformance()
    for answer in examples()["responses"]:
        checked.answer(answer["status"], answer["body"])
    checked.event(examples()["webhook"]["body"])
    assert {"Shipment", "Rate", "PostageLabel", "Tracker", "Address", "Parcel"} <= set(
        checked.kinds
    )


def test_a_divergence_fails() -> None:
    """The description is closed and its enums and id prefixes hold: a recorded tracker with an
    unpublished status, a property EasyPost does not send, a foreign id prefix or a property
    missing is refused."""
    tracker = next(
        answer["body"]
        for answer in examples()["responses"]
        if answer["body"].get("object") == "Tracker"
    )
    checked = Conformance()
    checked.check("Tracker", tracker)
    for broken in (
        {**tracker, "status": "shipped"},
        {**tracker, "eta": "tomorrow"},
        {**tracker, "id": "tracker_" + "0" * 32},
        {key: value for key, value in tracker.items() if key != "tracking_details"},
    ):
        with pytest.raises(AssertionError):
            checked.check("Tracker", broken)


def test_the_published_webhook_signature_is_the_sandboxs() -> None:
    """EasyPost's published event, secret and signature: the package accepts them, and the
    sandbox's signer computes the same signature (the secret is not ASCII: NFKD applies)."""
    hook = examples()["webhook"]
    body = hook["raw_body"].encode()
    assert json.loads(body) == hook["body"]
    headers = {"X-Hmac-Signature": hook["hmac_signature"]}
    assert validate_webhook(body, headers, hook["secret"])["description"] == "tracker.updated"
    assert signature(hook["secret"], body) == hook["hmac_signature"]
    with pytest.raises(SignatureVerificationError):
        validate_webhook(body + b" ", headers, hook["secret"])


def test_shipments_rates_labels_and_refunds(client: EasyPostClient) -> None:
    shipment = create(client)
    assert client.shipment.retrieve(shipment.id).id == shipment.id
    bought = buy(client, shipment)
    assert bought.tracker.status == "pre_transit"
    refused(lambda: buy(client, shipment), 422, "SHIPMENT.POSTAGE.EXISTS")
    assert client.shipment.refund(shipment.id).refund_status == "submitted"
    assert client.shipment.refund(shipment.id).refund_status == "submitted"

    returned = create(client, is_return=True, to_address=WAREHOUSE, from_address=BUYER)
    bought_back = buy(client, returned)
    assert (bought_back.is_return, bought_back.tracker.is_return) == (True, True)
    abroad = create(client, to_address=ABROAD)
    assert {rate.service for rate in abroad.rates} >= {"PriorityMailInternational"}
    nowhere = create(client, to_address={**BUYER, "zip": "00000"})
    assert nowhere.rates == []
    assert len(nowhere.messages) == 1


def test_errors_answer_in_easyposts_shape(
    client: EasyPostClient, sandbox: Psp, conformance: Conformance
) -> None:
    refused(lambda: client.shipment.retrieve("shp_" + "0" * 32), 404, "NOT_FOUND")
    refused(lambda: create(client, parcel={"length": 10}), 422, "PARCEL.PARAMETERS.INVALID")
    never_bought = create(client)
    refused(lambda: client.shipment.refund(never_bought.id), 422, "SHIPMENT.REFUND.UNAVAILABLE")
    refused(
        lambda: client.shipment.buy(never_bought.id, rate={"id": "rate_" + "0" * 32}),
        422,
        "SHIPMENT.INVALID_PARAMS",
    )
    refused(lambda: create(hooked(sandbox, conformance, "EZTKnotthekey")), 401, "UNAUTHORIZED")
    # What the package never sends: no `shipment` at all, and a body that is not JSON.
    headers = {"Authorization": f"Bearer {EASYPOST_API_KEY}"}
    for body, status, code in ((b"{}", 422, "PARAMETER.REQUIRED"), (b"{", 400, "BAD_REQUEST")):
        answer = httpx.post(f"{sandbox.url}/v2/shipments", content=body, headers=headers)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
        conformance.answer(status, answer.json())


def test_a_carrier_down_answers_easyposts_503(client: EasyPostClient, sandbox: Psp) -> None:
    bought = buy(client, create(client))
    unbought = create(client)
    fault = f"{sandbox.url}/v1/test_helpers/carrier/fault"
    assert httpx.post(fault, json={"mode": "error"}).is_success
    try:
        refused(lambda: create(client), 503, "SHIPMENT.RATES.UNAVAILABLE")
        refused(lambda: buy(client, unbought), 503, "SHIPMENT.POSTAGE.NO_RESPONSE")
        refused(lambda: client.shipment.refund(bought.id), 503, "REFUND.NO_RESPONSE")
    finally:
        assert httpx.post(fault, json={"mode": "none"}).is_success


async def test_trackers_move_with_signed_events(
    client: EasyPostClient,
    conformance: Conformance,
    carrier_receiver: tuple[CarrierReceiver, str],
) -> None:
    receiver = carrier_receiver[0]
    bought = await asyncio.to_thread(lambda: buy(client, create(client)))
    deliveries = await receiver.wait_for(bought.id, count=len(ROUTE) - 1)
    for delivery in deliveries:
        headers = {"X-Hmac-Signature": delivery.headers["X-Hmac-Signature"]}
        assert validate_webhook(delivery.body, headers, CARRIER_SECRET) == delivery.event
        conformance.event(json.loads(delivery.body))
    assert sorted(d.status for d in deliveries) == sorted(ROUTE[1:])
    delivered = await asyncio.to_thread(client.shipment.retrieve, bought.id)
    assert (delivered.tracker.status, delivered.tracker.finalized) == ("delivered", True)
    # A parcel the carrier has is no longer voided: the refund is rejected.
    assert (await asyncio.to_thread(client.shipment.refund, bought.id)).refund_status == "rejected"


def test_what_was_validated_covers_every_kind_status_and_error(conformance: Conformance) -> None:
    """The scenarios above met every kind the sandbox sends, every tracker status and refund
    status it uses, and every error; a scenario that stops validating fails here."""
    sent = {
        "Shipment", "Rate", "PostageLabel", "Tracker", "TrackingDetail", "TrackingLocation",
        "Address", "Parcel", "Event", "Message", "Error",
    }  # fmt: skip
    assert sent <= set(conformance.kinds), conformance.kinds
    assert sent <= set(kinds())
    met: dict[tuple[str, str], set[str]] = {(k, n): set() for k, n, _ in conformance.values}
    for kind, name, value in conformance.values:
        met[(kind, name)].add(value)
    assert set(ROUTE) <= met[("Tracker", "status")]
    assert set(ROUTE) <= met[("TrackingDetail", "status")]
    assert met[("Shipment", "refund_status")] == REFUNDS
    assert met[("Event", "description")] == {"tracker.updated"}
    assert len(conformance.errors) >= 9, conformance.errors
    print(
        f"\nvalidated {sum(conformance.kinds.values())} objects of {len(conformance.kinds)} kinds,"
        f" {sum(conformance.events.values())} events, {len(conformance.values)} enum values,"
        f" {len(conformance.errors)} errors: {dict(conformance.kinds)} {dict(conformance.errors)}"
    )
