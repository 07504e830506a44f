"""The token verifier on its own: provider tokens against a key set served by a fake provider
(httpx.MockTransport), and the HS256 mode."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from api.auth import (
    AuthUnavailable,
    InvalidToken,
    KeySet,
    Principal,
    ProviderVerifier,
    SecretVerifier,
    Verified,
    VerifiedTokens,
    issue_token,
    user_id_of,
)
from kit.settings import AuthSettings, ConfigurationError, ProcessRole, Settings

ISSUER = "https://id.example.test/tenant"
AUDIENCE = "checkout-api"
USER = uuid.UUID("7d4b0c5e-1111-4a2b-8c3d-000000000001")


@dataclass
class Key:
    """A signing key of the fake provider."""

    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, alg: str) -> Key:
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
        return cls(f"{alg}-{uuid.uuid4().hex[:8]}", alg, private)

    def jwk(self) -> dict[str, Any]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            fields = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            fields = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**fields, "kid": self.kid, "use": "sig"}

    def sign(self, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(USER),
            "iat": now,
            "exp": now + 300,
            "scope": "customer",
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers=headers or {"kid": self.kid}
        )


@dataclass
class Provider:
    """Discovery and a key set; counts requests; can be taken down."""

    keys: list[Key]
    down: bool = False
    requests: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.down:
            return httpx.Response(503)
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/keys"})
        if request.url.path.endswith("/keys"):
            return httpx.Response(200, json={"keys": [k.jwk() for k in self.keys]})
        return httpx.Response(404)

    @property
    def key_fetches(self) -> int:
        return sum(1 for path in self.requests if path.endswith("/keys"))


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(provider: Provider, clock: Clock | None = None, **config: Any) -> ProviderVerifier:
    settings = AuthSettings(issuer=ISSUER, audience=AUDIENCE, **config)
    http = httpx.AsyncClient(transport=httpx.MockTransport(provider.handle))
    return ProviderVerifier(settings, KeySet(settings, http, clock=clock or Clock()))


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return Key.new("RS256")


@pytest.fixture(scope="module")
def ec_key() -> Key:
    return Key.new("ES256")


async def test_rs256_and_es256_tokens_are_accepted_with_their_scopes(
    rsa_key: Key, ec_key: Key
) -> None:
    provider = Provider([rsa_key, ec_key])
    check = verifier(provider)
    customer = await check.verify(rsa_key.sign())
    assert customer.user_id == USER
    assert customer.scopes == {"customer"}
    operator = await check.verify(ec_key.sign(scope="operator customer openid"))
    assert operator.scopes == {"operator", "customer"}
    # Discovery once, the key set once: the second token used the cache.
    assert provider.requests == ["/tenant/.well-known/openid-configuration", "/tenant/keys"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-api"}, "(?i)audience"),
        ({"iss": "https://evil.example.test/"}, "(?i)issuer"),
        ({"exp": int(time.time()) - 120}, "(?i)expired"),
        ({"exp": None}, "exp"),
        ({"aud": None}, "aud"),
        ({"sub": None}, "sub"),
    ],
)
async def test_wrong_audience_issuer_expiry_or_missing_claims_are_refused(
    rsa_key: Key, overrides: dict[str, Any], reason: str
) -> None:
    check = verifier(Provider([rsa_key]))
    with pytest.raises(InvalidToken, match=reason):
        await check.verify(rsa_key.sign(**overrides))


async def test_an_expiry_within_the_leeway_is_accepted(rsa_key: Key) -> None:
    check = verifier(Provider([rsa_key]), leeway_s=30)
    await check.verify(rsa_key.sign(exp=int(time.time()) - 10))
    with pytest.raises(InvalidToken, match="expired"):
        await verifier(Provider([rsa_key]), leeway_s=0).verify(
            rsa_key.sign(exp=int(time.time()) - 10)
        )


async def test_hs256_is_refused_when_an_issuer_is_set(rsa_key: Key) -> None:
    provider = Provider([rsa_key])
    check = verifier(provider)
    settings = Settings().updated(auth={"issuer": ISSUER})
    for token in (
        issue_token(settings, USER, ["operator"]),
        jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": str(USER), "exp": 2**31}, "x" * 32),
        # The "alg": "none" trick, and an HS256 token keyed with the provider's public key.
        jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "exp": 2**31}, "", "none"),
    ):
        with pytest.raises(InvalidToken, match="not accepted"):
            await check.verify(token)
    assert provider.requests == []  # refused before any key is looked up


async def test_a_key_with_the_wrong_algorithm_does_not_verify(rsa_key: Key, ec_key: Key) -> None:
    # An ES256 header pointing at the RSA key's kid.
    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": str(USER), "exp": 2**31},
        ec_key.private,
        algorithm="ES256",
        headers={"kid": rsa_key.kid},
    )
    with pytest.raises(InvalidToken, match="no ES256 key"):
        await verifier(Provider([rsa_key])).verify(forged)


async def test_a_bad_signature_is_refused(rsa_key: Key) -> None:
    impostor = Key("x", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    impostor.kid = rsa_key.kid
    with pytest.raises(InvalidToken, match="Signature"):
        await verifier(Provider([rsa_key])).verify(impostor.sign())


async def test_an_unknown_kid_refetches_once_per_interval(rsa_key: Key) -> None:
    provider, clock = Provider([rsa_key]), Clock()
    check = verifier(provider, clock, jwks_min_refresh_s=60)
    await check.verify(rsa_key.sign())
    assert provider.key_fetches == 1
    clock.now += 61
    stranger = Key.new("RS256")
    with pytest.raises(InvalidToken, match="no RS256 key"):
        await check.verify(stranger.sign())
    assert provider.key_fetches == 2  # one refetch for the unknown kid
    for _ in range(5):  # more made-up kids within the interval: no more fetches
        with pytest.raises(InvalidToken, match="no ES256 key"):
            await check.verify(Key.new("ES256").sign())
    assert provider.key_fetches == 2


async def test_a_rotated_key_is_picked_up_without_restart(rsa_key: Key) -> None:
    provider, clock = Provider([rsa_key]), Clock()
    check = verifier(provider, clock, jwks_min_refresh_s=60)
    await check.verify(rsa_key.sign())
    rotated = Key.new("RS256")
    provider.keys = [rsa_key, rotated]  # the provider publishes its next key, then signs with it
    clock.now += 10
    with pytest.raises(InvalidToken, match="no RS256 key"):
        await check.verify(rotated.sign())  # within the interval of the first fetch
    clock.now += 60
    assert (await check.verify(rotated.sign())).user_id == USER
    assert (await check.verify(rsa_key.sign())).user_id == USER  # the old key still published
    assert provider.key_fetches == 2


async def test_concurrent_requests_share_one_fetch(rsa_key: Key) -> None:
    provider = Provider([rsa_key])
    check = verifier(provider)
    await asyncio.gather(*(check.verify(rsa_key.sign()) for _ in range(20)))
    assert provider.key_fetches == 1


async def test_a_key_removed_by_the_provider_goes_after_the_max_age(
    rsa_key: Key, ec_key: Key
) -> None:
    provider, clock = Provider([rsa_key, ec_key]), Clock()
    check = verifier(provider, clock, jwks_max_age_s=600)
    await check.verify(ec_key.sign())
    provider.keys = [rsa_key]
    clock.now += 601
    with pytest.raises(InvalidToken, match="no ES256 key"):
        await check.verify(ec_key.sign())


async def test_a_provider_down_is_503_until_it_answers_and_cached_keys_keep_working(
    rsa_key: Key,
) -> None:
    provider, clock = Provider([rsa_key], down=True), Clock()
    check = verifier(provider, clock, jwks_max_age_s=600)
    with pytest.raises(AuthUnavailable):
        await check.verify(rsa_key.sign())
    with pytest.raises(AuthUnavailable):  # no new attempt within a second
        await check.verify(rsa_key.sign())
    assert len(provider.requests) == 1
    provider.down = False
    clock.now += 1
    await check.verify(rsa_key.sign())
    provider.down = True
    clock.now += 601  # stale, but the provider is down: the cached key still verifies
    await check.verify(rsa_key.sign())


async def test_discovery_must_name_the_configured_issuer(rsa_key: Key) -> None:
    def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "https://other/", "jwks_uri": f"{ISSUER}/keys"})

    settings = AuthSettings(issuer=ISSUER, audience=AUDIENCE)
    http = httpx.AsyncClient(transport=httpx.MockTransport(lying))
    check = ProviderVerifier(settings, KeySet(settings, http))
    with pytest.raises(AuthUnavailable):
        await check.verify(rsa_key.sign())


async def test_a_configured_jwks_url_skips_discovery(rsa_key: Key) -> None:
    provider = Provider([rsa_key])
    check = verifier(provider, jwks_url=f"{ISSUER}/keys")
    await check.verify(rsa_key.sign())
    assert provider.requests == ["/tenant/keys"]


async def test_scope_claim_and_values_are_configurable(rsa_key: Key) -> None:
    check = verifier(
        Provider([rsa_key]),
        scope_claim="roles",
        operator_scope="Checkout.Operate",
        customer_scope="Checkout.Buy",
    )
    principal = await check.verify(rsa_key.sign(roles=["Checkout.Operate", "Other"], scope=None))
    assert principal.scopes == {"operator"}
    # The default claim names carry no weight once another claim is configured.
    assert (await check.verify(rsa_key.sign(scope="operator customer"))).scopes == set()
    with pytest.raises(InvalidToken, match="roles"):
        await check.verify(rsa_key.sign(roles={"Checkout.Operate": True}))


async def test_a_scopes_list_is_read_when_there_is_no_scope_string(rsa_key: Key) -> None:
    check = verifier(Provider([rsa_key]))
    principal = await check.verify(rsa_key.sign(scope=None, scopes=["operator", "admin"]))
    assert principal.scopes == {"operator"}


async def test_non_uuid_subjects_map_to_stable_distinct_user_ids(rsa_key: Key) -> None:
    check = verifier(Provider([rsa_key]))
    first = await check.verify(rsa_key.sign(sub="auth0|65f1c0ffee"))
    again = await check.verify(rsa_key.sign(sub="auth0|65f1c0ffee"))
    other = await check.verify(rsa_key.sign(sub="auth0|65f1c0ffef"))
    assert first.user_id == again.user_id != other.user_id
    assert user_id_of("auth0|65f1c0ffee", "https://another-issuer/") != first.user_id
    by_claim = verifier(Provider([rsa_key]), user_id_claim="oid")
    oid = uuid.uuid4()
    assert (await by_claim.verify(rsa_key.sign(sub="x", oid=str(oid)))).user_id == oid


async def test_the_secret_mode_still_takes_hs256() -> None:
    settings = Settings()
    check = SecretVerifier(settings)
    principal = await check.verify(issue_token(settings, USER, ["operator", "admin"]))
    assert principal.user_id == USER
    assert principal.scopes == {"operator"}
    with pytest.raises(InvalidToken):
        await check.verify(Key.new("RS256").sign())


async def test_a_verified_token_is_checked_once(
    rsa_key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    settings = Settings()
    secret, provider = SecretVerifier(settings), verifier(Provider([rsa_key]))
    hs, rs = issue_token(settings, USER, ["customer"]), rsa_key.sign()
    for _ in range(3):
        assert (await secret.verify(hs)).user_id == USER
        assert (await provider.verify(rs)).scopes == {"customer"}
    assert decoded == [hs, rs]
    with pytest.raises(InvalidToken):  # a refused token is not remembered: refused each time
        await secret.verify(hs + "x")
    with pytest.raises(InvalidToken):
        await secret.verify(hs + "x")
    assert decoded == [hs, rs, hs + "x", hs + "x"]


async def test_a_remembered_token_goes_with_the_key_that_verified_it(
    rsa_key: Key, ec_key: Key
) -> None:
    provider, clock = Provider([rsa_key, ec_key]), Clock()
    check = verifier(provider, clock, jwks_max_age_s=600)
    token = ec_key.sign()
    await check.verify(token)
    provider.keys = [rsa_key]  # the provider withdraws the key
    clock.now += 601
    with pytest.raises(InvalidToken, match="no ES256 key"):
        await check.verify(token)


def test_verified_tokens_are_forgotten_at_their_expiry_and_beyond_the_size() -> None:
    now = [1000.0]
    tokens = VerifiedTokens(size=2, clock=lambda: now[0])
    caller = Principal(user_id=USER, scopes=frozenset({"customer"}))
    tokens.put("a", Verified(caller, expires_at=1010.0))
    assert tokens.get("a") is not None
    now[0] = 1010.0
    assert tokens.get("a") is None  # at `exp`, no longer
    for name in ("b", "c", "d"):
        tokens.put(name, Verified(caller, expires_at=2000.0))
    assert [tokens.get(name) is not None for name in "bcd"] == [False, True, True]


def test_production_takes_an_issuer_instead_of_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ENV": "production",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "EASYPOST_API_KEY": "EZAKx",
        "EASYPOST_WEBHOOK_SECRET": "easypost-y",
        "TEMPORAL_PAYLOAD_KEYS": "k1:cmVhbC1wYXlsb2FkLWtleS1mcm9tLXRoZS12YXVsdCE=",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    monkeypatch.delenv("AUTH_ISSUER", raising=False)
    api = ProcessRole("api")
    with pytest.raises(ConfigurationError, match="AUTH_ISSUER or AUTH_JWT_SECRET"):
        Settings().validate_for(api)
    monkeypatch.setenv("AUTH_ISSUER", ISSUER)
    assert Settings().validate_for(api).auth.issuer == ISSUER
    monkeypatch.setenv("AUTH_JWKS_URL", "http://id.example.test/keys")
    with pytest.raises(ConfigurationError, match="AUTH_JWKS_URL must be an https"):
        Settings()
    monkeypatch.delenv("AUTH_JWKS_URL")
    monkeypatch.setenv("AUTH_ISSUER", "http://id.example.test/")
    with pytest.raises(ConfigurationError, match="AUTH_ISSUER must be an https"):
        Settings()
