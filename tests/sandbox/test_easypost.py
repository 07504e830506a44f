"""The sandbox's EasyPost API through the official `easypost` package: rates, buying, voiding,
return shipments, trackers moving on their own with signed `tracker.updated` webhooks.

Conformance is checked against what the package itself expects: it turns an answer into its
model classes by id prefix (`shp_` Shipment, `rate_` Rate, `pl_` PostageLabel, `trk_` Tracker,
`evt_` Event), raises its own error class per HTTP status, and verifies webhooks with its
`validate_webhook`. Field names are those of EasyPost's recorded API answers (the package's
test cassettes for `shipment.create`, `shipment.buy` and `shipment.refund`); enum values are
EasyPost's documented tracker and refund statuses.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from easypost.easypost_client import EasyPostClient
from easypost.errors.api.invalid_request_error import InvalidRequestError
from easypost.errors.api.not_found_error import NotFoundError
from easypost.errors.api.unauthorized_error import UnauthorizedError
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
    Tracking,
)

pytestmark = pytest.mark.timeout(60)

STEP_S = 0.3
# Long enough that nothing moves on its own while a test advances a tracker by hand.
MANUAL_STEP_S = 60.0
ROUTE = ["in_transit", "out_for_delivery", "delivered"]
ID = {kind: re.compile(rf"^{kind}_[0-9a-f]{{32}}$") for kind in ("shp", "rate", "pl", "trk", "evt")}
# Fields of EasyPost's recorded answers (the package's cassettes) the sandbox must answer too.
SHIPMENT_FIELDS = {
    "id", "object", "mode", "created_at", "updated_at", "is_return", "reference", "status",
    "tracking_code", "to_address", "from_address", "return_address", "buyer_address", "parcel",
    "options", "messages", "rates", "selected_rate", "postage_label", "tracker",
    "refund_status", "insurance", "fees", "forms",
}  # fmt: skip
RATE_FIELDS = {
    "id", "object", "mode", "service", "carrier", "rate", "currency", "retail_rate",
    "list_rate", "delivery_days", "est_delivery_days", "delivery_date_guaranteed",
    "shipment_id", "carrier_account_id", "created_at", "updated_at",
}  # fmt: skip
LABEL_FIELDS = {
    "id", "object", "label_url", "label_pdf_url", "label_file_type", "label_size",
    "label_resolution", "label_date", "created_at", "updated_at",
}  # fmt: skip
TRACKER_FIELDS = {
    "id", "object", "mode", "tracking_code", "status", "status_detail", "shipment_id",
    "carrier", "tracking_details", "public_url", "created_at", "updated_at", "est_delivery_date",
}  # fmt: skip
EVENT_FIELDS = {
    "id", "object", "mode", "description", "previous_attributes", "result", "status",
    "pending_urls", "completed_urls", "created_at", "updated_at",
}  # fmt: skip
TRACKER_STATUSES = {
    "unknown", "pre_transit", "in_transit", "out_for_delivery", "delivered",
    "available_for_pickup", "return_to_sender", "failure", "cancelled", "error",
}  # fmt: skip
REFUND_STATUSES = {"submitted", "refunded", "rejected"}
WAREHOUSE = {"company": "Warehouse", "street1": "1 Dock Road", "city": "Springfield",
             "zip": "94107", "country": "US"}  # fmt: skip
BUYER = {"name": "Ada Lovelace", "street1": "12 Analytical St", "city": "London",
         "zip": "94110", "country": "US"}  # fmt: skip
PARCEL = {"weight": 17.7, "length": 11.9, "width": 7.9, "height": 4.0}


@pytest.fixture(scope="module")
def fast(start_sandbox: SandboxFactory, carrier_receiver: tuple[CarrierReceiver, str]) -> Psp:
    """A sandbox whose parcels move every STEP_S seconds."""
    return start_sandbox(
        webhook_url="", carrier_webhook_url=carrier_receiver[1], SANDBOX_CARRIER_STEP_S=str(STEP_S)
    )


@pytest.fixture(scope="module")
def manual(start_sandbox: SandboxFactory, carrier_receiver: tuple[CarrierReceiver, str]) -> Psp:
    """A sandbox whose parcels only move when a test advances them."""
    return start_sandbox(
        webhook_url="",
        carrier_webhook_url=carrier_receiver[1],
        SANDBOX_CARRIER_STEP_S=str(MANUAL_STEP_S),
    )


def client_of(psp: Psp, api_key: str = EASYPOST_API_KEY) -> EasyPostClient:
    """The official client pointed at a sandbox, as EASYPOST_API_BASE points the platform's."""
    return EasyPostClient(api_key, api_base=f"{psp.url}/v2", timeout=10)


@pytest.fixture(scope="module")
def easypost_manual(manual: Psp) -> EasyPostClient:
    """The package's client of the manual sandbox."""
    return client_of(manual)


def create(client: EasyPostClient, **overrides: Any) -> Shipment:
    """A shipment from the warehouse to the buyer under a fresh reference."""
    params: dict[str, Any] = {
        "to_address": BUYER,
        "from_address": WAREHOUSE,
        "parcel": PARCEL,
        "reference": f"order_{uuid.uuid4().hex}",
        **overrides,
    }
    shipment: Shipment = client.shipment.create(**params)
    return shipment


def cheapest(shipment: Shipment) -> Any:
    """The lowest of the shipment's rates."""
    return min(shipment.rates, key=lambda rate: Decimal(rate.rate))


def test_a_shipment_answers_rates_the_package_reads(easypost_manual: EasyPostClient) -> None:
    shipment = create(easypost_manual)
    document = shipment.to_dict()
    assert type(shipment).__name__ == "Shipment"
    assert SHIPMENT_FIELDS <= set(document)
    assert ID["shp"].match(shipment.id)
    assert (shipment.object, shipment.mode, shipment.is_return) == ("Shipment", "test", False)
    assert shipment.postage_label is None
    assert shipment.selected_rate is None
    services = {rate.service: rate for rate in shipment.rates}
    assert set(services) == {"GroundAdvantage", "Priority", "Express"}
    for rate in shipment.rates:
        assert type(rate).__name__ == "Rate"
        assert RATE_FIELDS <= set(rate.to_dict())
        assert ID["rate"].match(rate.id)
        assert rate.shipment_id == shipment.id
        assert rate.currency == "USD"
        assert Decimal(rate.rate) == Decimal(rate.rate).quantize(Decimal("0.01")) > 0
    # 17.7 oz is two started pounds: the table's base plus two per-pound prices.
    assert services["GroundAdvantage"].rate == "6.70"
    assert services["Express"].rate == "30.10"
    assert services["Express"].delivery_days < services["GroundAdvantage"].delivery_days
    again = easypost_manual.shipment.retrieve(shipment.id)
    assert again.to_dict() == document


@pytest.mark.parametrize("is_return", [False, True])
def test_a_parcel_abroad_is_quoted_international_services(
    easypost_manual: EasyPostClient, is_return: bool
) -> None:
    """To (or a return from) Great Britain: USPS's international services, in USD as a US
    account is quoted; never the domestic ones."""
    abroad = {**BUYER, "zip": "SW1Y 4JH", "country": "gb"}
    shipment = create(easypost_manual, to_address=abroad, is_return=is_return)
    services = {rate.service: rate for rate in shipment.rates}
    assert set(services) == {
        "FirstClassPackageInternationalService",
        "PriorityMailInternational",
        "ExpressMailInternational",
    }
    assert {(rate.carrier, rate.currency) for rate in shipment.rates} == {("USPS", "USD")}
    # 17.7 oz is two started pounds.
    assert services["FirstClassPackageInternationalService"].rate == "20.75"
    bought = easypost_manual.shipment.buy(shipment.id, rate=cheapest(shipment))
    assert bought.selected_rate.service == "FirstClassPackageInternationalService"

    # First-Class International takes parcels up to 4 lb; a heavier one goes by Priority or Express.
    heavy = create(easypost_manual, to_address=abroad, parcel={**PARCEL, "weight": 64.1})
    assert sorted(rate.service for rate in heavy.rates) == [
        "ExpressMailInternational",
        "PriorityMailInternational",
    ]
    # Puerto Rico is served as the US is, and a missing country is the US (EasyPost's default).
    for home in ({**BUYER, "country": "PR"}, {k: v for k, v in BUYER.items() if k != "country"}):
        domestic = create(easypost_manual, to_address=home)
        assert {rate.service for rate in domestic.rates} == {
            "GroundAdvantage",
            "Priority",
            "Express",
        }


def test_buying_a_rate_gives_a_label_and_a_tracker(
    easypost_manual: EasyPostClient, manual: Psp
) -> None:
    shipment = create(easypost_manual)
    rate = cheapest(shipment)
    bought = easypost_manual.shipment.buy(shipment.id, rate=rate)
    assert bought.selected_rate.id == rate.id
    assert re.match(r"^9400\d{18}$", bought.tracking_code)
    label, tracker = bought.postage_label, bought.tracker
    assert type(label).__name__ == "PostageLabel"
    assert ID["pl"].match(label.id)
    assert LABEL_FIELDS <= set(label.to_dict())
    assert type(tracker).__name__ == "Tracker"
    assert ID["trk"].match(tracker.id)
    assert TRACKER_FIELDS <= set(tracker.to_dict())
    assert (tracker.status, tracker.shipment_id) == ("pre_transit", shipment.id)
    assert tracker.tracking_code == bought.tracking_code
    assert bought.status in TRACKER_STATUSES
    pdf = httpx.get(label.label_url, trust_env=False)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")

    # EasyPost buys a shipment once: a second buy is refused, the shipment stays as bought.
    with pytest.raises(InvalidRequestError) as twice:
        easypost_manual.shipment.buy(shipment.id, rate=cheapest(shipment))
    assert (twice.value.http_status, twice.value.code) == (422, "SHIPMENT.POSTAGE.EXISTS")
    assert easypost_manual.shipment.retrieve(shipment.id).to_dict() == bought.to_dict()


def test_refunding_voids_a_label_once_and_a_moving_parcel_is_rejected(
    easypost_manual: EasyPostClient, manual: Psp
) -> None:
    shipment = create(easypost_manual)
    easypost_manual.shipment.buy(shipment.id, rate=cheapest(shipment))
    voided = easypost_manual.shipment.refund(shipment.id)
    assert voided.refund_status == "submitted"
    assert easypost_manual.shipment.refund(shipment.id).refund_status == "submitted"
    # A voided label's parcel never moves.
    stuck = httpx.post(f"{manual.url}/v2/test_helpers/shipments/{shipment.id}/advance")
    assert stuck.status_code == 422

    moving = create(easypost_manual)
    easypost_manual.shipment.buy(moving.id, rate=cheapest(moving))
    assert httpx.post(f"{manual.url}/v2/test_helpers/shipments/{moving.id}/advance").is_success
    rejected = easypost_manual.shipment.refund(moving.id)
    assert rejected.refund_status == "rejected"
    assert {voided.refund_status, rejected.refund_status} <= REFUND_STATUSES

    never_bought = create(easypost_manual)
    with pytest.raises(InvalidRequestError):
        easypost_manual.shipment.refund(never_bought.id)


def test_return_shipments_and_unserviceable_addresses(easypost_manual: EasyPostClient) -> None:
    returned = create(easypost_manual, is_return=True)
    assert returned.is_return is True
    bought = easypost_manual.shipment.buy(returned.id, rate=cheapest(returned))
    assert bought.is_return is True
    assert bought.tracker.status == "pre_transit"

    nowhere = create(easypost_manual, to_address={**BUYER, "zip": "00000"})
    assert nowhere.rates == []
    assert [m["type"] for m in nowhere.to_dict()["messages"]] == ["rate_error"]
    with pytest.raises(InvalidRequestError):
        easypost_manual.shipment.buy(nowhere.id, rate={"id": "rate_" + "0" * 32})


def test_the_api_key_and_parameters_are_checked(manual: Psp) -> None:
    with pytest.raises(UnauthorizedError):
        create(client_of(manual, "EZTKnotthesandboxkey"))
    client = client_of(manual)
    with pytest.raises(NotFoundError):
        client.shipment.retrieve("shp_" + "0" * 32)
    with pytest.raises(InvalidRequestError) as no_weight:
        create(client, parcel={"length": 10})
    assert no_weight.value.code == "PARCEL.PARAMETERS.INVALID"


async def _bought(psp: Psp) -> Shipment:
    client = client_of(psp)
    shipment = await asyncio.to_thread(create, client)
    bought: Shipment = await asyncio.to_thread(
        client.shipment.buy, shipment.id, rate=cheapest(shipment)
    )
    return bought


def assert_spaced(deliveries: list[Tracking], step_s: float) -> None:
    """Statuses follow the route, each one step after the previous (to the second, EasyPost's
    timestamps' precision)."""
    ordered = sorted(deliveries, key=lambda d: (d.occurred_at, ROUTE.index(d.status)))
    assert [d.status for d in ordered] == ROUTE
    for before, after in itertools.pairwise(ordered):
        gap = (after.occurred_at - before.occurred_at).total_seconds()
        assert 0 <= gap <= step_s + 1, (before.event, after.event)


async def test_a_bought_label_moves_on_its_own_with_signed_tracker_events(
    fast: Psp, carrier_receiver: tuple[CarrierReceiver, str]
) -> None:
    receiver = carrier_receiver[0]
    bought = await _bought(fast)
    deliveries = await receiver.wait_for(bought.id, count=3)
    assert_spaced(deliveries, STEP_S)
    previous = "pre_transit"
    for delivery in sorted(deliveries, key=lambda d: ROUTE.index(d.status)):
        event = delivery.event
        assert EVENT_FIELDS <= set(event)
        assert ID["evt"].match(event["id"])
        assert (event["object"], event["description"]) == ("Event", "tracker.updated")
        assert event["previous_attributes"] == {"status": previous}
        assert TRACKER_FIELDS <= set(delivery.tracker)
        assert delivery.tracker["id"] == bought.tracker.id
        assert delivery.status in TRACKER_STATUSES
        # The package verifies the delivery; a forged body or another secret is refused.
        headers = {"X-Hmac-Signature": delivery.headers["X-Hmac-Signature"]}
        assert validate_webhook(delivery.body, headers, CARRIER_SECRET)["id"] == event["id"]
        with pytest.raises(SignatureVerificationError):
            validate_webhook(delivery.body, headers, "not-the-secret")
        with pytest.raises(SignatureVerificationError):
            validate_webhook(delivery.body + b" ", headers, CARRIER_SECRET)
        previous = delivery.status
    assert receiver.rejected == 0
    shipment = await asyncio.to_thread(client_of(fast).shipment.retrieve, bought.id)
    assert (shipment.status, shipment.tracker.status) == ("delivered", "delivered")


def test_the_signer_matches_the_package() -> None:
    body = b'{"id": "evt_1", "description": "tracker.updated"}'
    # "\ufb01" (the fi ligature) becomes "fi" under NFKD: the package and the sandbox agree.
    header = {"X-Hmac-Signature": signature("secret-\ufb01", body)}
    assert validate_webhook(body, header, "secret-fi")["id"] == "evt_1"
    with pytest.raises(SignatureVerificationError):
        validate_webhook(body, header, "secret-f")


async def test_tracker_events_are_retried_after_a_500(
    manual: Psp, carrier_receiver: tuple[CarrierReceiver, str]
) -> None:
    receiver = carrier_receiver[0]
    bought = await _bought(manual)
    receiver.fail_next(bought.id, 1)
    async with httpx.AsyncClient(base_url=manual.url, trust_env=False) as http:
        moved = await http.post(f"/v2/test_helpers/shipments/{bought.id}/advance")
        assert moved.json()["status"] == "in_transit"
        [delivered] = await receiver.wait_for(bought.id, count=1)
        attempts = receiver.about(bought.id)
        assert [d.answered for d in attempts] == [500, 200]
        assert attempts[0].body == attempts[1].body
        listed = (await http.get("/v2/events", params={"shipment": bought.id})).json()["events"]
    [event] = listed
    assert event["id"] == delivered.webhook_id
    assert (event["delivery"]["state"], event["delivery"]["attempts"]) == ("delivered", 2)


def stored_status(db_path: Path, shipment_id: str) -> str:
    """The tracker's status in the file of a stopped sandbox."""
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT tracker_status FROM easypost_shipments WHERE id = ?", (shipment_id,)
        ).fetchone()
    conn.close()
    return str(row[0])


async def test_restart_resumes_progression(
    start_sandbox: SandboxFactory, carrier_receiver: tuple[CarrierReceiver, str]
) -> None:
    receiver, url = carrier_receiver
    step_s = 1.0
    env = {"SANDBOX_CARRIER_STEP_S": str(step_s)}
    first = start_sandbox(webhook_url="", carrier_webhook_url=url, **env)
    bought = await _bought(first)
    await receiver.wait_for(bought.id, count=1, wait_s=5)
    first.process.stop()
    assert stored_status(first.db_path, bought.id) in ("in_transit", "out_for_delivery")

    second = start_sandbox(webhook_url="", carrier_webhook_url=url, db_path=first.db_path, **env)
    deliveries = await receiver.wait_for(bought.id, count=3, wait_s=10)
    assert_spaced(deliveries, step_s)
    shipment = await asyncio.to_thread(client_of(second).shipment.retrieve, bought.id)
    assert shipment.tracker.status == "delivered"
    second.process.stop()
