"""The payload codec endpoint (operators and the web UI) and what a checkout leaves in Temporal."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from api.app import create_app
from api.auth import issue_token
from api.routers.codec import open_without_token
from devstack.services.temporal import DevServerConfig
from kit.codec import CODEC_ENDPOINT_PATH, EncryptionCodec
from kit.settings import DEV_TEMPORAL_PAYLOAD_KEYS, Settings
from tests.api.conftest import Caller
from tests.api.test_routes import assert_problem, checkout_body, new_variant
from tests.platform import Platform
from workflows.checkout.contract import FINAL

pytestmark = pytest.mark.timeout(120)

DECODE = f"{CODEC_ENDPOINT_PATH}/decode"
ENCODE = f"{CODEC_ENDPOINT_PATH}/encode"
UI_ORIGIN = "http://127.0.0.1:8233"


def wire(*payloads: Payload) -> dict[str, Any]:
    """The JSON the web UI posts."""
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


def unwire(body: dict[str, Any]) -> list[Payload]:
    return [json_format.ParseDict(p, Payload()) for p in body["payloads"]]


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


@pytest.fixture
async def keyed(platform: Platform) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """An API whose payload keys are not the development key (as in production)."""
    key = base64.b64encode(os.urandom(32)).decode()
    settings = platform.settings.updated(
        temporal={"payload_keys": SecretStr(f"k1:{key}"), "ui_url": f"{UI_ORIGIN}/namespaces"}
    )
    app = create_app(settings, temporal=platform.client)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        )
        yield http, settings


def token(settings: Settings, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, uuid.uuid4(), scopes)}"}


async def test_an_operator_decodes_and_encodes(
    keyed: tuple[httpx.AsyncClient, Settings],
) -> None:
    http, settings = keyed
    codec = EncryptionCodec.from_settings(settings.temporal)
    [stored] = await codec.encode([plain("Ada Lovelace")])
    older = plain("stored before encryption")
    answer = await http.post(DECODE, json=wire(stored, older), headers=token(settings, "operator"))
    assert answer.status_code == 200, answer.text
    assert unwire(answer.json()) == [plain("Ada Lovelace"), older]

    sealed = await http.post(ENCODE, json=wire(plain("Grace")), headers=token(settings, "operator"))
    assert sealed.status_code == 200, sealed.text
    [encrypted] = unwire(sealed.json())
    assert encrypted.metadata["encoding"] == b"binary/encrypted"
    assert await codec.decode([encrypted]) == [plain("Grace")]


async def test_customers_and_strangers_are_refused(
    keyed: tuple[httpx.AsyncClient, Settings],
) -> None:
    http, settings = keyed
    [stored] = await EncryptionCodec.from_settings(settings.temporal).encode([plain("Ada")])
    body = wire(stored)
    assert_problem(await http.post(DECODE, json=body), 401, "unauthorized")
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert_problem(await http.post(DECODE, json=body, headers=bad), 401, "unauthorized")
    customer = token(settings, "customer")
    assert_problem(await http.post(DECODE, json=body, headers=customer), 403, "forbidden")
    assert_problem(await http.post(ENCODE, json=body, headers=customer), 403, "forbidden")


async def test_bad_payloads_are_problems(keyed: tuple[httpx.AsyncClient, Settings]) -> None:
    http, settings = keyed
    operator = token(settings, "operator")
    junk: list[Any] = [{"payloads": [{"data": 5}]}, {"payloads": [{"size": 1}]}, {"nope": []}, [1]]
    for body in junk:
        assert_problem(
            await http.post(DECODE, json=body, headers=operator), 422, "validation_error"
        )
    [elsewhere] = await EncryptionCodec([("other", os.urandom(32))]).encode([plain("x")])
    assert_problem(
        await http.post(DECODE, json=wire(elsewhere), headers=operator), 422, "payload_key_unknown"
    )
    [stored] = await EncryptionCodec.from_settings(settings.temporal).encode([plain("x")])
    altered = Payload(metadata=dict(stored.metadata), data=stored.data[:-1] + b"\0")
    assert_problem(
        await http.post(DECODE, json=wire(altered), headers=operator), 422, "payload_undecodable"
    )


async def test_only_the_web_ui_origin_may_call_cross_origin(
    keyed: tuple[httpx.AsyncClient, Settings],
) -> None:
    http, settings = keyed
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    allowed = await http.options(DECODE, headers={"Origin": UI_ORIGIN, **asks})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert allowed.headers["access-control-allow-methods"] == "POST"
    assert {"authorization", "content-type", "x-namespace"} <= {
        h.strip() for h in allowed.headers["access-control-allow-headers"].split(",")
    }
    assert allowed.headers["access-control-allow-credentials"] == "true"
    for origin in ("https://evil.example", "http://127.0.0.1:8234"):
        refused = await http.options(DECODE, headers={"Origin": origin, **asks})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
    # The answers to the UI carry the origin, a 401 included (the UI then shows why).
    unauthenticated = await http.post(DECODE, json={"payloads": []}, headers={"Origin": UI_ORIGIN})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["access-control-allow-origin"] == UI_ORIGIN
    answered = await http.post(
        DECODE,
        json={"payloads": []},
        headers={"Origin": UI_ORIGIN, "X-Namespace": "default", **token(settings, "operator")},
    )
    assert (answered.status_code, answered.json()) == (200, {"payloads": []})
    assert answered.headers["access-control-allow-origin"] == UI_ORIGIN
    stranger = await http.post(
        DECODE, json={"payloads": []}, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers
    # Other routes are not opened to the UI's origin.
    other = await http.options("/v1/products", headers={"Origin": UI_ORIGIN, **asks})
    assert "access-control-allow-origin" not in other.headers


async def test_the_dev_server_ui_decodes_without_a_token_under_the_dev_key(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    """The session's platform runs on the public development key: its web UI has no login."""
    codec = EncryptionCodec.from_settings(platform.settings.temporal)
    [stored] = await codec.encode([plain("Ada")])
    answer = await http.post(DECODE, json=wire(stored))
    assert answer.status_code == 200, answer.text
    assert unwire(answer.json()) == [plain("Ada")]


async def test_a_completed_checkout_leaves_no_personal_data_in_temporal(
    http: httpx.AsyncClient, platform: Platform, operator: Caller
) -> None:
    marker = uuid.uuid4().hex[:8]
    email = f"ada.{marker}@example.com"
    personal = {
        "name": f"Ada Lovelace{marker}",
        "line1": f"12 St James's Square {marker}",
        "line2": f"Flat {marker}",
        "city": f"Londinium{marker}",
        "phone": f"+44 20 7946 {int(marker, 16) % 10_000:04d}",
    }
    registered = await http.post("/v1/users", json={"email": email, "phone": personal["phone"]})
    assert registered.status_code == 201, registered.text
    user_id = uuid.UUID(registered.json()["id"])
    buyer = Caller(
        user_id,
        {"Authorization": f"Bearer {issue_token(platform.settings, user_id, ['customer'])}"},
    )
    variant = await new_variant(http, operator)
    cart = await http.post("/v1/carts", json={"currency": "USD"}, headers=buyer.headers)
    await http.post(
        f"/v1/carts/{cart.json()['id']}/items",
        json={"variant_id": variant, "quantity": 1},
        headers=buyer.headers,
    )
    body = checkout_body(cart.json()["id"])
    body["shipping_address"] |= {**personal, "postal_code": "SW1Y 4JH", "country": "GB"}
    body["billing_address"] = body["shipping_address"]
    started = await http.post(
        "/v1/checkouts", json=body, headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert started.status_code == 202, started.text
    checkout_id = started.json()["checkout_id"]
    for _ in range(600):
        status = (await http.get(f"/v1/checkouts/{checkout_id}", headers=buyer.headers)).json()
        if status["status"] in FINAL:
            break
        await asyncio.sleep(0.1)
    assert status["status"] == "completed", status

    # The history as Temporal stores and exports it, read without the codec.
    history = await platform.client.get_workflow_handle(f"checkout-{checkout_id}").fetch_history()
    stored = b"".join(event.SerializeToString() for event in history.events)
    for value in (*personal.values(), email, marker):  # the marker is in nothing else
        assert value.encode() not in stored, f"{value!r} is in the stored history"

    # Control: the same history through the codec endpoint shows the buyer's address.
    started_event = history.events[0].workflow_execution_started_event_attributes
    decoded = await http.post(
        DECODE, json=wire(*started_event.input.payloads), headers=operator.headers
    )
    assert decoded.status_code == 200, decoded.text
    shown = b"".join(p.data for p in unwire(decoded.json()))
    assert personal["name"].encode() in shown
    assert personal["city"].encode() in shown


def test_just_up_points_the_web_ui_at_its_api_codec() -> None:
    config = DevServerConfig.load().with_codec_of("http://127.0.0.1:8001")
    argv = config.argv(data_dir=None)
    endpoint = argv[argv.index("--ui-codec-endpoint") + 1]
    assert endpoint == f"http://127.0.0.1:8001{CODEC_ENDPOINT_PATH}"
    elsewhere = replace(config, ui_codec_endpoint="https://codec.internal/x")
    assert elsewhere.with_codec_of("http://127.0.0.1:8001") == elsewhere


def test_only_the_development_key_alone_opens_the_endpoint_without_a_token() -> None:
    other = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    assert open_without_token(Settings(temporal={"payload_keys": DEV_TEMPORAL_PAYLOAD_KEYS}))
    for keys in (
        other,
        f"{other},{DEV_TEMPORAL_PAYLOAD_KEYS}",
        f"{DEV_TEMPORAL_PAYLOAD_KEYS},{other}",
    ):
        assert not open_without_token(Settings(temporal={"payload_keys": keys}))
