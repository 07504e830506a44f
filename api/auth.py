"""Bearer JWTs: who is calling (docs/identity.md).

Two modes, chosen by AUTH_ISSUER:

- unset: HS256 tokens signed with AUTH_JWT_SECRET, claims `sub` (a user id), `scopes` (a list),
  `exp`; development mints them through POST /v1/dev/tokens.
- set: tokens of that OpenID Connect provider, RS256 or ES256 only, verified against its key set
  (JWKS, found by discovery unless AUTH_JWKS_URL), `iss`, `aud` and `exp` required. HS256 is then
  refused, whatever it is signed with.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt

from kit.logging import get_logger
from kit.settings import AuthSettings, Settings

log = get_logger(__name__)

ALGORITHM = "HS256"
# Asymmetric only: the provider signs, this API can only verify.
PROVIDER_ALGORITHMS = frozenset({"RS256", "ES256"})
SCOPES = frozenset({"customer", "operator"})
# With no key cached at all (the provider was down at the first request), how soon a failed
# fetch may be tried again; with keys cached, AUTH_JWKS_MIN_REFRESH_S applies.
EMPTY_RETRY_S = 1.0
# The namespace of user ids derived from subjects that are not UUIDs (user_id_of).
SUBJECT_NAMESPACE = uuid.UUID("5f0b8e1c-4c1e-4f4e-9a55-2d6c0de1d001")
# How many verified tokens each API process remembers (VerifiedTokens): a few hundred bytes each.
VERIFIED_TOKENS = 10_000


class InvalidToken(Exception):
    """The token is missing, malformed, expired or not ours."""


class AuthUnavailable(Exception):
    """The provider's key set cannot be fetched, so no token can be checked right now."""


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    user_id: uuid.UUID
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        """Operators see every customer's objects."""
        return "operator" in self.scopes

    def owner_filter(self) -> uuid.UUID | None:
        """The user id to restrict reads to, or None for an operator."""
        return None if self.is_operator else self.user_id


class Verifier(Protocol):
    """Turns a bearer token into a principal."""

    async def verify(self, token: str) -> Principal:
        """The caller; InvalidToken or AuthUnavailable otherwise."""
        ...

    async def aclose(self) -> None:
        """Release what the verifier holds (connections)."""
        ...


@dataclass(frozen=True)
class Verified:
    """A token this process has verified: whom it names, until when, and with which of the
    provider's keys (None: AUTH_JWT_SECRET) and its header's `kid` and `alg`."""

    principal: Principal
    expires_at: float
    key: jwt.PyJWK | None = None
    kid: str | None = None
    algorithm: str = ALGORITHM


class VerifiedTokens:
    """The tokens verified lately, so that a client's every request does not check the same
    signature again (an RS256 check costs more CPU than the rest of a status read).

    By a digest of the token's exact text, never past its `exp` (nor its leeway), the oldest
    forgotten first beyond `size`. Only accepted tokens are kept: a refused one is checked in
    full each time. A provider token counts only while the key that verified it is still the
    one its key set answers for its `kid` (ProviderVerifier): a key the provider withdrew takes
    its tokens with it, as it would without this.
    """

    def __init__(self, size: int = VERIFIED_TOKENS, clock: Callable[[], float] = time.time):
        self.size, self.clock = size, clock
        self._verified: dict[bytes, Verified] = {}

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str) -> Verified | None:
        """The token's verification, while it holds."""
        digest = self._digest(token)
        found = self._verified.get(digest)
        if found is not None and found.expires_at <= self.clock():
            del self._verified[digest]
            return None
        return found

    def put(self, token: str, verified: Verified) -> None:
        """Remember a token just verified (a size of 0 remembers none)."""
        if self.size <= 0:
            return
        while len(self._verified) >= self.size:
            del self._verified[next(iter(self._verified))]
        self._verified[self._digest(token)] = verified


def issue_token(settings: Settings, user_id: uuid.UUID, scopes: Iterable[str]) -> str:
    """An HS256 token for `user_id` with `scopes`, valid for AUTH_TOKEN_TTL_S."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "scopes": sorted(set(scopes)),
        "iat": now,
        "exp": now + settings.auth.token_ttl_s,
    }
    return jwt.encode(claims, settings.auth.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def decode_token(settings: Settings, token: str) -> Principal:
    """The principal of a valid HS256 token; InvalidToken otherwise (algorithm pinned, exp
    required)."""
    return _decoded(settings, token).principal


def _decoded(settings: Settings, token: str) -> Verified:
    try:
        claims = jwt.decode(
            token,
            settings.auth.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
        )
        user_id = uuid.UUID(str(claims["sub"]))
        scopes = claims.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise InvalidToken("scopes must be a list of strings")
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
    principal = Principal(user_id=user_id, scopes=frozenset(scopes) & SCOPES)
    return Verified(principal, expires_at=float(claims["exp"]))


class SecretVerifier:
    """HS256 with AUTH_JWT_SECRET (no issuer configured)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.verified = VerifiedTokens()

    async def verify(self, token: str) -> Principal:
        """The caller of an HS256 token."""
        known = self.verified.get(token)
        if known is not None:
            return known.principal
        verified = _decoded(self.settings, token)
        self.verified.put(token, verified)
        return verified.principal

    async def aclose(self) -> None:
        """Nothing held."""


def user_id_of(subject: object, issuer: str) -> uuid.UUID:
    """The platform's user id for a token's subject: the subject itself when it is a UUID, else
    a UUID derived from issuer and subject (stable, and distinct across issuers)."""
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the user id claim must be a non-empty string")
    try:
        return uuid.UUID(subject)
    except ValueError:
        return uuid.uuid5(SUBJECT_NAMESPACE, f"{issuer}#{subject}")


def granted_scopes(claims: dict[str, Any], config: AuthSettings) -> frozenset[str]:
    """The platform scopes a provider token grants, per AUTH_SCOPE_CLAIM and the scope mapping."""
    names = [config.scope_claim] if config.scope_claim else ["scope", "scopes"]
    name = next((n for n in names if n in claims), None)
    if name is None:
        return frozenset()
    value = claims[name]
    if isinstance(value, str):
        values = value.split()
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        values = value
    else:
        raise InvalidToken(f"the {name!r} claim must be a string or a list of strings")
    mapping = {config.operator_scope: "operator", config.customer_scope: "customer"}
    return frozenset(mapping[v] for v in values if v in mapping)


class KeySet:
    """The provider's signing keys, cached.

    Fetched at the first token, again once older than AUTH_JWKS_MAX_AGE_S, and when a token names
    a key id the cache does not hold; every fetch after the first waits at least
    AUTH_JWKS_MIN_REFRESH_S after the previous attempt, so tokens with made-up key ids cannot
    make this API hammer the provider. Concurrent requests share one fetch. A provider that is
    down leaves the cached keys in use.
    """

    def __init__(
        self,
        config: AuthSettings,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not config.issuer:
            raise ValueError("a key set needs AUTH_ISSUER")
        self.issuer = config.issuer
        self.config = config
        self.http = http
        self.clock = clock
        self.fetches = 0  # attempts, successful or not
        self._jwks_url = config.jwks_url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._failed = False
        self._generation = 0
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key that signed a token with header `kid` and `alg`."""
        now = self.clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self.config.jwks_max_age_s
        if stale and self._due(now):
            await self._refresh(self._generation)
        found = self._find(kid, algorithm)
        if found is None and self._due(self.clock()):
            await self._refresh(self._generation)
            found = self._find(kid, algorithm)
        if found is not None:
            return found
        if self._failed:
            raise AuthUnavailable("the identity provider's keys could not be fetched")
        raise InvalidToken(f"no {algorithm} key {kid!r} in the provider's key set")

    def _due(self, now: float) -> bool:
        if self._attempted_at is None:
            return True
        wait = self.config.jwks_min_refresh_s if self._keys else EMPTY_RETRY_S
        return now - self._attempted_at >= wait

    def _find(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        if kid is not None:
            key = self._keys.get(kid)
            return key if key is not None and key.algorithm_name == algorithm else None
        # No key id: only unambiguous when the set holds one key for the algorithm.
        matching = [k for k in self._keys.values() if k.algorithm_name == algorithm]
        return matching[0] if len(matching) == 1 else None

    async def _refresh(self, seen: int) -> None:
        async with self._lock:
            if self._generation != seen:
                return  # another request fetched while this one waited
            self._generation += 1
            self._attempted_at = self.clock()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except AuthUnavailable as exc:
                self._failed = True
                log.warning("auth.jwks.fetch_failed", error=str(exc), cached=len(self._keys))
                return
            self._keys, self._failed, self._fetched_at = keys, False, self.clock()
            log.info("auth.jwks.fetched", kids=sorted(keys))

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        url = self._jwks_url or await self._discover()
        document = await self._get_json(url)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                continue  # a key type or curve this API does not verify with
            if key.key_id and key.algorithm_name in PROVIDER_ALGORITHMS:
                keys[key.key_id] = key
        if not keys:
            raise AuthUnavailable(f"no RS256 or ES256 signing key with a kid at {url}")
        self._jwks_url = url
        return keys

    async def _discover(self) -> str:
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        document = await self._get_json(url)
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            raise AuthUnavailable(f"{url} does not describe the issuer {self.issuer}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise AuthUnavailable(f"{url} names no jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> Any:
        try:
            response = await self.http.get(url, timeout=self.config.jwks_timeout_s)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthUnavailable(f"GET {url}: {exc}") from exc


class ProviderVerifier:
    """Tokens of the OpenID Connect provider at AUTH_ISSUER."""

    def __init__(self, config: AuthSettings, keys: KeySet) -> None:
        if not config.issuer:
            raise ValueError("a provider verifier needs AUTH_ISSUER")
        self.issuer = config.issuer
        self.config = config
        self.keys = keys
        self.verified = VerifiedTokens()

    async def verify(self, token: str) -> Principal:
        """The caller of a provider token: signature, `iss`, `aud`, `exp`, then the claims
        (once per token while the key that verified it is still the provider's)."""
        known = self.verified.get(token)
        if known is not None and await self.keys.key(known.kid, known.algorithm) is known.key:
            return known.principal
        verified = await self._verify(token)
        self.verified.put(token, verified)
        return verified.principal

    async def _verify(self, token: str) -> Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in PROVIDER_ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} is not accepted from the provider")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the kid header must be a string")
        key = await self.keys.key(kid, algorithm)
        config = self.config
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=config.audience,
                issuer=self.issuer,
                leeway=config.leeway_s,
                options={"require": ["exp", "iss", "aud", config.user_id_claim]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        user_id = user_id_of(claims[config.user_id_claim], self.issuer)
        principal = Principal(user_id=user_id, scopes=granted_scopes(claims, config))
        # Never remembered past `exp` and the leeway the check itself allows.
        until = float(claims["exp"]) + config.leeway_s
        return Verified(principal, until, key=key, kid=kid, algorithm=algorithm)

    async def aclose(self) -> None:
        """Close the key set's HTTP client."""
        await self.keys.http.aclose()


def verifier_for(settings: Settings) -> Verifier:
    """The verifier AUTH_ISSUER asks for."""
    if not settings.auth.issuer:
        return SecretVerifier(settings)
    http = httpx.AsyncClient(follow_redirects=False)
    return ProviderVerifier(settings.auth, KeySet(settings.auth, http))
