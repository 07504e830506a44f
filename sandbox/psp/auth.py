"""Stripe's API-key check on Stripe's own endpoints (payment intents, refunds).

The key travels as `Authorization: Bearer <key>` (the SDKs) or as HTTP Basic with the key as the
user name and no password (`curl -u sk_test_...:`, Stripe's documented examples). It must equal
STRIPE_API_KEY exactly, or be one of the restricted keys of SANDBOX_RESTRICTED_KEYS (whose
calls sandbox/psp/permissions.py limits). Failures answer 401 `invalid_request_error`, which the
SDKs raise as AuthenticationError; a wrong key is echoed masked, as Stripe does, never in full.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping

from fastapi import Request

from sandbox.psp.errors import ApiError

NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)
_PREFIX = re.compile(r"^(?:sk|rk|pk)_(?:test|live)_")
# A key shorter than this (after its prefix) is masked entirely: its last four would say too much.
MIN_SHOWN_LENGTH = 12


def mask(key: str) -> str:
    """A key as Stripe echoes a wrong one: its `sk_test_` prefix and last four, stars between."""
    match = _PREFIX.match(key)
    prefix = match.group(0) if match else ""
    rest = key[len(prefix) :]
    if len(rest) < MIN_SHOWN_LENGTH:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


def presented_key(authorization: str | None) -> str | None:
    """The key in an Authorization header (Bearer, or Basic with the key as user), if any."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    return None


def require_api_key(
    expected: str, restricted: Mapping[str, Iterable[str]] | None = None
) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency refusing any request that carries neither `expected` (the secret
    key: every permission) nor one of the `restricted` keys (its permissions, kept on
    `request.state` for sandbox/psp/permissions.py)."""
    wanted = expected.encode()
    limited = {k.encode(): frozenset(v) for k, v in (restricted or {}).items()}

    async def check(request: Request) -> None:
        key = presented_key(request.headers.get("authorization"))
        if key is None:
            raise ApiError(401, "invalid_request_error", None, NO_KEY_MESSAGE)
        presented = key.encode()
        request.state.api_key = key
        if hmac.compare_digest(presented, wanted):
            request.state.permissions = None
            return
        for candidate, permissions in limited.items():
            if hmac.compare_digest(presented, candidate):
                request.state.permissions = permissions
                return
        raise ApiError(401, "invalid_request_error", None, f"Invalid API Key provided: {mask(key)}")

    return check
