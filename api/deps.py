"""Request-scoped dependencies: the platform's resources, the caller, their scope."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.auth import AuthUnavailable, InvalidToken, Principal, Verifier
from api.errors import ApiError
from api.metrics import TOKEN_VERIFICATIONS
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.settings import Settings
from workflows.checkout.client import CheckoutClient

log = get_logger(__name__)
# How long a caller is asked to wait while the identity provider's keys cannot be fetched.
AUTH_RETRY_AFTER_S = 5


class RateLimiter:
    """A token bucket per user, in this process; a request repeating an idempotency key that
    was already admitted (a retry, a racing twin) is free."""

    def __init__(self, per_minute: int, remembered: int = 10_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._admitted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._remembered = remembered

    def take(self, key: str, request_key: str = "") -> float:
        """0 if admitted, else the seconds until a token is available."""
        if request_key and (key, request_key) in self._admitted:
            return 0.0
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            if request_key:
                self._admitted[(key, request_key)] = None
                while len(self._admitted) > self._remembered:
                    self._admitted.popitem(last=False)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate


@dataclass
class Platform:
    """What the API was wired with in its lifespan (api/app.py)."""

    settings: Settings
    databases: dict[str, DomainDatabase]
    temporal: Client
    checkouts: CheckoutClient
    checkout_limiter: RateLimiter
    verifier: Verifier


async def platform(request: Request) -> Platform:
    """The wired platform. A coroutine: FastAPI runs a plain function dependency in a worker
    thread, a hop that cost more CPU than the rest of a status read's dependencies together."""
    wired: Platform = request.app.state.platform
    return wired


PlatformDep = Annotated[Platform, Depends(platform)]

_bearer = HTTPBearer(
    auto_error=False,
    description="A JWT: from POST /v1/dev/tokens in development, else from AUTH_ISSUER",
)


def unauthorized(detail: str) -> ApiError:
    """401 with the challenge RFC 6750 asks for."""
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


async def principal(
    wired: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from a valid bearer token (401 otherwise)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("a bearer token is required")
    try:
        caller = await wired.verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        TOKEN_VERIFICATIONS.labels("rejected").inc()
        log.info("auth.token.rejected", reason=str(exc))
        raise unauthorized("the bearer token is not valid") from None
    except AuthUnavailable as exc:
        TOKEN_VERIFICATIONS.labels("unavailable").inc()
        log.warning("auth.unavailable", error=str(exc))
        raise ApiError(
            503,
            "auth_unavailable",
            "tokens cannot be checked right now: the identity provider's keys are unreachable",
            headers={"Retry-After": str(AUTH_RETRY_AFTER_S)},
        ) from None
    TOKEN_VERIFICATIONS.labels("accepted").inc()
    return caller


def require(scope: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency admitting callers with `scope` (403 otherwise)."""

    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if scope not in caller.scopes:
            raise ApiError(403, "forbidden", f"the {scope!r} scope is required")
        return caller

    return check


Customer = Annotated[Principal, Depends(require("customer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Anyone = Annotated[Principal, Depends(principal)]
