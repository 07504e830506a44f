"""The sandbox's OpenID provider as a real process: discovery, keys, client credentials,
rotation, and keys that survive a restart."""

from __future__ import annotations

import json

import httpx
import jwt
import pytest

from tests.sandbox.conftest import Psp, SandboxFactory

CLIENTS = {
    "ops-robot": {"secret": "s3cret-ops", "scopes": ["operator", "customer"]},
    "web": {"secret": "s3cret-web", "scopes": ["customer"]},
}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def provider(start_sandbox: SandboxFactory) -> Psp:
    return start_sandbox(webhook_url="", SANDBOX_OIDC_CLIENTS=json.dumps(CLIENTS))


async def token(
    http: httpx.AsyncClient, auth: tuple[str, str] | None = ("ops-robot", "s3cret-ops"), **form: str
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **form}
    if auth is None:
        return await http.post("/oidc/oauth/token", data=data)
    return await http.post("/oidc/oauth/token", data=data, auth=auth)


def verify(http_base: str, access_token: str, jwks: dict[str, object]) -> dict[str, object]:
    kid = jwt.get_unverified_header(access_token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims: dict[str, object] = jwt.decode(
        access_token,
        key.key,
        algorithms=["RS256", "ES256"],
        audience="checkout-api",
        issuer=f"{http_base}/oidc",
    )
    return claims


async def test_discovery_keys_and_a_client_credentials_token(provider: Psp) -> None:
    async with httpx.AsyncClient(base_url=provider.url) as http:
        meta = (await http.get("/oidc/.well-known/openid-configuration")).json()
        assert meta["issuer"] == f"{provider.url}/oidc"
        assert meta["token_endpoint"] == f"{provider.url}/oidc/oauth/token"
        jwks = (await http.get(meta["jwks_uri"])).json()
        assert sorted(k["alg"] for k in jwks["keys"]) == ["ES256", "RS256"]
        assert all("d" not in k for k in jwks["keys"])  # public halves only
        answer = await token(http, scope="operator")
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "operator"
        claims = verify(provider.url, body["access_token"], jwks)
        assert claims["sub"] == "ops-robot"
        assert claims["scope"] == "operator"
        # Client secret in the form, an ES256 token for a chosen subject (sandbox extensions).
        posted = await token(
            http, auth=None, client_id="web", client_secret="s3cret-web", alg="ES256", subject="u1"
        )
        assert jwt.get_unverified_header(posted.json()["access_token"])["alg"] == "ES256"
        claims = verify(provider.url, posted.json()["access_token"], jwks)
        assert (claims["sub"], claims["scope"]) == ("u1", "customer")


@pytest.mark.parametrize(
    ("auth", "form", "status", "error"),
    [
        (("ops-robot", "wrong"), {}, 401, "invalid_client"),
        (("nobody", "s3cret-ops"), {}, 401, "invalid_client"),
        (("web", "s3cret-web"), {"scope": "operator"}, 400, "invalid_scope"),
        (("web", "s3cret-web"), {"grant_type": "password"}, 400, "unsupported_grant_type"),
        (("web", "s3cret-web"), {"grant_type": ""}, 400, "invalid_request"),
        (("web", "s3cret-web"), {"expires_in": "0"}, 400, "invalid_request"),
        (("web", "s3cret-web"), {"alg": "HS256"}, 400, "invalid_request"),
    ],
)
async def test_token_errors_are_oauth_errors(
    provider: Psp, auth: tuple[str, str], form: dict[str, str], status: int, error: str
) -> None:
    async with httpx.AsyncClient(base_url=provider.url) as http:
        answer = await token(http, auth=auth, **form)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Basic")


async def test_rotation_publishes_a_new_key_and_a_restart_keeps_them(
    start_sandbox: SandboxFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db_path = tmp_path_factory.mktemp("oidc-restart") / "psp.sqlite"
    first = start_sandbox(webhook_url="", db_path=db_path)
    async with httpx.AsyncClient(base_url=first.url) as http:
        before = {k["kid"] for k in (await http.get("/oidc/jwks")).json()["keys"]}
        rotated = (await http.post("/oidc/keys/rotate", params={"alg": "RS256"})).json()
        new_kid = rotated["current"]["RS256"]
        assert new_kid not in before
        after = {k["kid"] for k in (await http.get("/oidc/jwks")).json()["keys"]}
        assert after == before | {new_kid}  # the replaced key stays published
        signed = (await token(http, auth=("shopctl", "dev-only-shopctl-secret-change-me"))).json()
        assert jwt.get_unverified_header(signed["access_token"])["kid"] == new_kid
        # A second rotation drops the oldest RSA key; the ES256 key is untouched.
        second = (await http.post("/oidc/keys/rotate", params={"alg": "RS256"})).json()
        assert set(second["published"]) == (after - before) | {
            second["current"]["RS256"],
            *(kid for kid in before if kid.startswith("es256-")),
        }
    first.process.stop()
    again = start_sandbox(webhook_url="", db_path=db_path)
    async with httpx.AsyncClient(base_url=again.url) as http:
        kept = {k["kid"] for k in (await http.get("/oidc/jwks")).json()["keys"]}
    assert kept == set(second["published"])
    assert (db_path.parent / "oidc-keys.json").stat().st_mode & 0o077 == 0
