"""The sandbox's carrier fault switch (`POST /v1/test_helpers/carrier/fault`,
SANDBOX_CARRIER_FAULT): shipment create, buy and refund answer EasyPost's 503 before any effect
(`error`) or only after the client gave up (`hang`), reads keep working, and the platform's
carrier client takes both for an outage to retry (CarrierUnavailable), never for a refusal."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from easypost.easypost_client import EasyPostClient
from easypost.errors.api.service_unavailable_error import ServiceUnavailableError
from easypost.errors.general.easypost_error import EasyPostError

from domains.shipping.carrier import EasyPostCarrier, Parcel
from domains.shipping.errors import CarrierUnavailable
from tests.sandbox.conftest import EASYPOST_API_KEY, Psp, SandboxFactory

pytestmark = pytest.mark.timeout(60)

HANG_S = 2.0
WAREHOUSE = {"company": "Warehouse", "street1": "1 Dock Road", "city": "Springfield",
             "zip": "94107", "country": "US"}  # fmt: skip
BUYER = {"name": "Ada Lovelace", "street1": "12 Analytical St", "city": "London",
         "zip": "94110", "country": "US"}  # fmt: skip
PARCEL = {"weight": 17.7, "length": 11.9, "width": 7.9, "height": 4.0}


@pytest.fixture
def down(start_sandbox: SandboxFactory) -> Psp:
    """A sandbox of its own, starting with the carrier down (the switch must not disturb other
    modules' sandboxes); parcels never move on their own."""
    return start_sandbox(
        webhook_url="",
        SANDBOX_CARRIER_FAULT="error",
        SANDBOX_CARRIER_HANG_S="60",
        SANDBOX_CARRIER_STEP_S="600",
    )


def client_of(psp: Psp, timeout: int = 10) -> EasyPostClient:
    """The official client pointed at the sandbox."""
    return EasyPostClient(EASYPOST_API_KEY, api_base=f"{psp.url}/v2", timeout=timeout)


def carrier_of(psp: Psp, timeout_s: int = 10) -> EasyPostCarrier:
    """The platform's carrier client, as the shipping worker builds it."""
    return EasyPostCarrier(EASYPOST_API_KEY, api_base=f"{psp.url}/v2", timeout_s=timeout_s)


def switch(psp: Psp, mode: str, **extra: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{psp.url}/v1/test_helpers/carrier/fault",
        json={"mode": mode, **extra},
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def create(client: EasyPostClient) -> Any:
    return client.shipment.create(
        to_address=BUYER,
        from_address=WAREHOUSE,
        parcel=PARCEL,
        reference=f"order_{uuid.uuid4().hex}",
    )


def cheapest(shipment: Any) -> Any:
    return min(shipment.rates, key=lambda rate: Decimal(rate.rate))


async def test_a_carrier_down_answers_503_before_any_effect_and_reads_still_work(
    down: Psp,
) -> None:
    client = client_of(down)
    with pytest.raises(ServiceUnavailableError) as refused:
        create(client)
    assert (refused.value.http_status, refused.value.code) == (503, "SHIPMENT.RATES.UNAVAILABLE")
    with pytest.raises(CarrierUnavailable):
        await carrier_of(down).create(
            to_address=BUYER,
            from_address=WAREHOUSE,
            parcel=Parcel(500, Decimal(30), Decimal(20), Decimal(10)),
            reference="order-1",
        )

    assert switch(down, "none") == {"mode": "none", "hang_s": 60.0}
    unbought, bought = create(client), create(client)
    client.shipment.buy(bought.id, rate=cheapest(bought))
    switch(down, "error")
    with pytest.raises(ServiceUnavailableError):
        client.shipment.buy(unbought.id, rate=cheapest(unbought))
    with pytest.raises(ServiceUnavailableError):
        client.shipment.refund(bought.id)
    # Reads keep working while the writes are down, and show that nothing happened.
    assert client.shipment.retrieve(unbought.id).selected_rate is None
    assert client.shipment.retrieve(bought.id).refund_status is None
    with pytest.raises(CarrierUnavailable):
        await carrier_of(down).refund(bought.id)

    switch(down, "none")
    assert client.shipment.buy(unbought.id, rate=cheapest(unbought)).tracking_code
    assert client.shipment.refund(bought.id).refund_status == "submitted"


async def test_a_hanging_carrier_answers_after_the_client_gave_up(down: Psp) -> None:
    client = client_of(down, timeout=1)
    switch(down, "none")
    shipment = create(client)
    assert switch(down, "hang", hang_s=HANG_S) == {"mode": "hang", "hang_s": HANG_S}
    began = time.monotonic()
    with pytest.raises(EasyPostError) as gave_up:
        client.shipment.buy(shipment.id, rate=cheapest(shipment))
    assert not isinstance(gave_up.value, ServiceUnavailableError)
    assert time.monotonic() - began < HANG_S
    with pytest.raises(CarrierUnavailable):
        await carrier_of(down, timeout_s=1).buy(shipment.id, cheapest(shipment).id)
    # The slow carrier did buy, after the client had given up: a retry must find it bought.
    await asyncio.sleep(HANG_S)
    assert client.shipment.retrieve(shipment.id).tracking_code

    switch(down, "none")
    began = time.monotonic()
    create(client)
    assert time.monotonic() - began < 1


def test_the_switch_refuses_what_it_does_not_know(down: Psp) -> None:
    for body in ({"mode": "slow"}, {"mode": "hang", "hang_s": -1}, {}, {"mode": "none", "x": 1}):
        answer = httpx.post(f"{down.url}/v1/test_helpers/carrier/fault", json=body, trust_env=False)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["code"] == "PARAMETER.INVALID"
