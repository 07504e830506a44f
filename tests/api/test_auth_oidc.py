"""The real API in provider mode (AUTH_ISSUER = the sandbox's OpenID provider), through HTTP:
provider tokens accepted, a rotated key picked up without restart, HS256, a wrong audience and an
expired token refused, and an unreachable provider answered with 503."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from prometheus_client import REGISTRY

from api.app import create_app
from api.auth import issue_token
from devstack.services.process import free_port
from kit.settings import Settings
from sandbox.settings import DEV_OIDC_CLIENTS
from tests.api.test_routes import assert_problem
from tests.platform import Platform

pytestmark = pytest.mark.timeout(120)

# The sandbox's documented development clients.
OPERATOR_CLIENT = ("shopctl", str(DEV_OIDC_CLIENTS["shopctl"]["secret"]))
CUSTOMER_CLIENT = ("shop-frontend", str(DEV_OIDC_CLIENTS["shop-frontend"]["secret"]))
MIN_REFRESH_S = 1.0


@asynccontextmanager
async def api(platform: Platform, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with `settings`, wired as in production (its own lifespan), over ASGI."""
    app = create_app(settings, temporal=platform.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        yield http


def provider_mode(platform: Platform, **auth: Any) -> Settings:
    return platform.settings.updated(
        auth={
            "issuer": f"{platform.psp_url}/oidc",
            "audience": "checkout-api",
            "jwks_min_refresh_s": MIN_REFRESH_S,
            "leeway_s": 0,
            **auth,
        }
    )


async def provider_token(platform: Platform, client: tuple[str, str], **form: str) -> str:
    async with httpx.AsyncClient(base_url=platform.psp_url) as http:
        answer = await http.post(
            "/oidc/oauth/token", data={"grant_type": "client_credentials", **form}, auth=client
        )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_provider_tokens_are_accepted_and_scoped(platform: Platform) -> None:
    async with api(platform, provider_mode(platform)) as http:
        for alg in ("RS256", "ES256"):
            operator = await provider_token(platform, OPERATOR_CLIENT, alg=alg)
            assert jwt.get_unverified_header(operator)["alg"] == alg
            stuck = await http.get("/v1/ops/checkouts/stuck", headers=bearer(operator))
            assert stuck.status_code == 200, stuck.text
        alice, bob = uuid.uuid4(), uuid.uuid4()
        alice_token = await provider_token(platform, CUSTOMER_CLIENT, subject=str(alice))
        bob_token = await provider_token(platform, CUSTOMER_CLIENT, subject=str(bob))
        created = await http.post(
            "/v1/carts", json={"currency": "USD"}, headers=bearer(alice_token)
        )
        assert created.status_code == 201, created.text
        cart = f"/v1/carts/{created.json()['id']}"
        assert (await http.get(cart, headers=bearer(alice_token))).status_code == 200
        assert_problem(await http.get(cart, headers=bearer(bob_token)), 404, "cart_not_found")
        assert_problem(
            await http.get("/v1/ops/checkouts/stuck", headers=bearer(alice_token)), 403, "forbidden"
        )
        # Development tokens are HS256, which this mode refuses: the route is not there.
        minted = await http.post(
            "/v1/dev/tokens", json={"user_id": str(alice), "scopes": ["operator"]}
        )
        assert_problem(minted, 404, "not_found")


async def test_hs256_wrong_audience_and_expired_tokens_are_refused(platform: Platform) -> None:
    settings = provider_mode(platform)
    async with api(platform, settings) as http:
        # Signed with the very secret the HS256 mode would accept.
        hs256 = issue_token(settings, uuid.uuid4(), ["operator"])
        wrong_audience = await provider_token(platform, OPERATOR_CLIENT, audience="another-api")
        expiring = await provider_token(platform, OPERATOR_CLIENT, expires_in="1")
        assert (await http.get("/v1/ops/checkouts/stuck", headers=bearer(expiring))).is_success
        await asyncio.sleep(2.1)
        for token in (hs256, wrong_audience, expiring, "not-a-jwt"):
            refused = await http.get("/v1/ops/checkouts/stuck", headers=bearer(token))
            assert_problem(refused, 401, "unauthorized")
            assert refused.headers["www-authenticate"] == "Bearer"


async def test_a_rotated_key_is_accepted_without_restart(platform: Platform) -> None:
    async with api(platform, provider_mode(platform)) as http:
        before = await provider_token(platform, OPERATOR_CLIENT)
        assert (await http.get("/v1/ops/checkouts/stuck", headers=bearer(before))).is_success
        async with httpx.AsyncClient(base_url=platform.psp_url) as sandbox:
            rotated = await sandbox.post("/oidc/keys/rotate", params={"alg": "RS256"})
        new_kid = rotated.json()["current"]["RS256"]
        after = await provider_token(platform, OPERATOR_CLIENT)
        assert jwt.get_unverified_header(after)["kid"] == new_kid
        await asyncio.sleep(MIN_REFRESH_S)  # the key set may be refetched once per interval
        assert (await http.get("/v1/ops/checkouts/stuck", headers=bearer(after))).is_success
        # Tokens signed before the rotation stay valid while the provider publishes their key.
        assert (await http.get("/v1/ops/checkouts/stuck", headers=bearer(before))).is_success


async def test_an_unreachable_provider_is_503_not_500(platform: Platform) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/oidc"
    token = await provider_token(platform, OPERATOR_CLIENT)
    before = unavailable()
    async with api(platform, provider_mode(platform, issuer=nowhere)) as http:
        answer = await http.get("/v1/ops/checkouts/stuck", headers=bearer(token))
    body = assert_problem(answer, 503, "auth_unavailable")
    assert "keys" in body["detail"]
    assert answer.headers["retry-after"] == "5"
    assert unavailable() == before + 1


def unavailable() -> float:
    value = REGISTRY.get_sample_value("token_verifications_total", {"outcome": "unavailable"})
    return value or 0.0
