"""Stripe events of another API version than the pinned SDK's: logged, counted, still taken."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import stripe
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from api.services.webhooks import IntentEvent, check_api_version
from sandbox.psp.objects import API_VERSION as SANDBOX_API_VERSION
from tests.api.conftest import Caller
from tests.api.test_webhooks import (
    URL,
    _event,
    _inbox,
    _secret,
    _signals,
    _waiting_checkout,
    stripe_headers,
)
from tests.platform import Platform

pytestmark = pytest.mark.timeout(120)
OLDER = "2024-06-20"


def mismatches(version: str) -> float:
    labels = {"api_version": version}
    return REGISTRY.get_sample_value("stripe_event_api_version_mismatches_total", labels) or 0.0


def _versioned(event: dict[str, object], version: str) -> bytes:
    return json.dumps({**event, "api_version": version}).encode()


def test_only_another_version_is_a_mismatch() -> None:
    assert SANDBOX_API_VERSION == stripe.api_version  # the sandbox speaks the pinned version
    event = _event(str(uuid.uuid4()), "pi_1")
    before = mismatches(OLDER)
    with capture_logs() as logs:
        check_api_version(IntentEvent.parse(_versioned(event, stripe.api_version)))
        check_api_version(IntentEvent.parse(json.dumps(event).encode()))  # none given
        check_api_version(IntentEvent.parse(_versioned(event, OLDER)))
    assert mismatches(OLDER) == before + 1
    assert [log["event"] for log in logs] == ["webhooks.stripe.api_version_mismatch"]
    assert logs[0]["event_api_version"] == OLDER
    assert logs[0]["sdk_api_version"] == stripe.api_version


async def test_an_event_of_another_version_is_counted_and_still_delivered(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    checkout_id, intent = await _waiting_checkout(http, platform, operator, alice)
    event = _event(checkout_id, intent)
    body = _versioned(event, OLDER)
    before = mismatches(OLDER)

    answer = await http.post(URL, content=body, headers=stripe_headers(body, _secret(platform)))

    assert answer.status_code == 200
    assert mismatches(OLDER) == before + 1
    assert await _inbox(platform, str(event["id"])) == 1
    assert await _signals(platform, checkout_id) == 1
    # The pinned version is no mismatch.
    same = _event(checkout_id, intent)
    body = _versioned(same, stripe.api_version)
    answer = await http.post(URL, content=body, headers=stripe_headers(body, _secret(platform)))
    assert answer.status_code == 200
    assert mismatches(stripe.api_version) == 0.0
    await platform.client.get_workflow_handle(f"checkout-{checkout_id}").signal("cancel")
