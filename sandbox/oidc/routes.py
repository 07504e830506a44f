"""The sandbox's OpenID provider endpoints, under /oidc on the sandbox's port.

- `GET /oidc/.well-known/openid-configuration`: discovery (issuer, jwks_uri, token_endpoint).
- `GET /oidc/jwks`: the public keys (RS256 and ES256), current and previous.
- `POST /oidc/oauth/token`: the client-credentials grant (RFC 6749 §4.4), the client
  authenticated by HTTP Basic or by `client_id`/`client_secret` in the form. `scope` asks for
  some of the client's scopes (default: all), `audience` for another audience than the default.
  Sandbox extensions for tests and demonstrations: `subject` (the token's `sub`; default: the
  client id), `alg` (`RS256` or `ES256`) and `expires_in` (seconds).
- `POST /oidc/keys/rotate` (sandbox only): new current signing keys (`?alg=RS256` for one
  algorithm); the replaced keys stay in the key set until the next rotation.

Errors are OAuth's: `{"error": "invalid_client" | "invalid_request" | "invalid_scope" |
"unsupported_grant_type", "error_description": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from sandbox.oidc.keys import ALGORITHMS, Algorithm, KeyRing
from sandbox.settings import SandboxSettings

PREFIX = "/oidc"
# No cache for token answers (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An OAuth error answer."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def response(self) -> Response:
        """The JSON answer; 401s challenge for Basic, as RFC 6749 §5.2 asks."""
        headers = dict(NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


def issuer_of(psp_url: str) -> str:
    """The provider's issuer URL: PSP_URL/oidc."""
    return f"{psp_url.rstrip('/')}{PREFIX}"


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
    if not sep:
        raise OAuthError(401, "invalid_client", "malformed Basic credentials")
    # RFC 6749 §2.3.1: both halves are form-urlencoded before they are joined.
    return unquote(user), unquote(password)


def _client(config: SandboxSettings, form: dict[str, str], authorization: str | None) -> str:
    """The authenticated client's id."""
    basic = _basic_credentials(authorization)
    client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
    client = config.oidc_clients.get(client_id)
    if client is None or not hmac.compare_digest(secret.encode(), client.secret.encode()):
        raise OAuthError(401, "invalid_client", "unknown client or wrong secret")
    return client_id


def _int_field(form: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = form.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise OAuthError(400, "invalid_request", f"{name} must be an integer in {low}..{high}")
    return int(raw)


def _claims(
    config: SandboxSettings, issuer: str, client_id: str, form: dict[str, str]
) -> dict[str, Any]:
    allowed = config.oidc_clients[client_id].scopes
    asked = form["scope"].split() if form.get("scope") else list(allowed)
    refused = sorted(set(asked) - set(allowed))
    if refused:
        raise OAuthError(400, "invalid_scope", f"not granted to {client_id}: {' '.join(refused)}")
    subject = form.get("subject") or client_id
    expires_in = _int_field(form, "expires_in", config.oidc_token_ttl_s, 1, 86_400)
    now = int(time.time())
    return {
        "iss": issuer,
        "sub": subject,
        "aud": form.get("audience") or config.oidc_audience,
        "iat": now,
        "exp": now + expires_in,
        "jti": secrets.token_hex(12),
        "client_id": client_id,
        "scope": " ".join(dict.fromkeys(asked)),
    }


def oidc_router(psp_url: str, config: SandboxSettings, keys: KeyRing) -> APIRouter:
    """The provider's routes; `psp_url` is the sandbox's base URL as clients reach it."""
    router = APIRouter(prefix=PREFIX, tags=["openid provider"])
    issuer = issuer_of(psp_url)

    @router.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        """The provider's metadata (OpenID Connect Discovery 1.0)."""
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "token_endpoint": f"{issuer}/oauth/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(ALGORITHMS),
            "scopes_supported": sorted({s for c in config.oidc_clients.values() for s in c.scopes}),
        }

    @router.get("/jwks")
    async def jwks() -> dict[str, Any]:
        """The public keys tokens are verified with."""
        return {"keys": [key.jwk() for key in keys.published()]}

    @router.post("/oauth/token")
    async def token(request: Request) -> Response:
        """An access token for a client (client-credentials grant)."""
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            if not form.get("grant_type"):
                raise OAuthError(400, "invalid_request", "grant_type is required")
            if form["grant_type"] != "client_credentials":
                raise OAuthError(400, "unsupported_grant_type", "only client_credentials")
            client_id = _client(config, form, request.headers.get("authorization"))
            alg = form.get("alg") or config.oidc_signing_alg
            if alg not in ALGORITHMS:
                raise OAuthError(400, "invalid_request", f"alg must be one of {ALGORITHMS}")
            claims = _claims(config, issuer, client_id, form)
        except OAuthError as exc:
            return exc.response()
        signed = keys.current(alg).sign(claims)
        body = {
            "access_token": signed,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "scope": claims["scope"],
        }
        return JSONResponse(body, headers=NO_STORE)

    @router.post("/keys/rotate")
    async def rotate(alg: Annotated[Algorithm | None, Query()] = None) -> dict[str, Any]:
        """Sandbox only: new current signing keys; the key set keeps the replaced ones."""
        fresh = await keys.rotate((alg,) if alg else ALGORITHMS)
        return {
            "current": {key.alg: key.kid for key in fresh},
            "published": [key.kid for key in keys.published()],
        }

    return router
