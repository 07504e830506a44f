"""The one place the platform's environment is read, grouped by concern.

`Settings` holds one small model per concern (`settings.database`, `settings.api`,
`settings.worker`, ...); the variable names are public (docs/reference/configuration.md) and
never change. How a variable finds its field:

1. A variable's first word names its group, the rest is the field: `API_MAX_BODY_BYTES` ->
   `api.max_body_bytes`, `CHECKOUT_RATE_PER_MINUTE` -> `checkout.rate_per_minute`. This is
   pydantic-settings' own nested reading (`env_nested_delimiter="_"`, `env_nested_max_split=1`),
   so a new setting is one field on the right group and its variable follows.
2. The few variables whose first word is not their group's (`DB_POOL_SIZE` -> `database`,
   `<DOMAIN>_DATABASE_URL` -> `database.domain_urls`) are
   listed by exact name in `ELSEWHERE`, which `_Environment` reads after the nested reading.

Why a table for the exceptions rather than `AliasChoices("database", "db")` on a group or a
`mode="before"` validator: an alias on a group accepts every cross spelling too (`DB_URL` would
set the server URL, and many environments carry a `DB_URL` for other tools), and a before
validator never sees a variable, because the environment source yields declared fields only.
The table names exactly the documented variables, and it ranks above the nested reading, so a
documented name wins over an accidental second spelling (`DATABASE_POOL_SIZE`). Groups ignore
unknown keys: variables of another concern may share a first word (`CHECKOUT_DATABASE_URL`
also reads as `checkout.database_url`), and a group is read field by field only: a variable
named like a group itself (`LOG=/var/log`, set for some other tool) is not taken for its JSON.

Every process reads the same settings, but needs only some of its secrets: each entry point
names its `ProcessRole` and calls `Settings.validate_for(role)`, which with ENV=production refuses
a missing or development-default secret that process uses and looks at no other
(`SECRETS_BY_KIND`, `SECRETS_BY_WORKER_DOMAIN`, `PRODUCTION_CHECKS`).

The payment-provider sandbox is not the platform: its `SANDBOX_*` settings are its own, in
`sandbox/settings.py`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DOMAINS: tuple[str, ...] = (
    "products",
    "cart",
    "orders",
    "payments",
    "inventory",
    "checkout",
    "shipping",
    "coupons",
    "accounts",
    "notifications",
)

# Documented development defaults (docs/reference/configuration.md). They are public on purpose
# and refused when ENV=production by each process that uses them (`Settings.validate_for`), so a
# forgotten variable can never ship a known secret.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
# Stripe's test-mode shapes: an `sk_test_` key (the sandbox accepts exactly the configured key)
# and a `whsec_` signing secret, used as Stripe uses it (the whole string is the HMAC key).
DEV_STRIPE_API_KEY = "sk_test_dev_only_sandbox_key_change_me"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_dev_only_stripe_webhook_secret_change_me"
# The key that encrypts Temporal payloads in development: id `dev`, the 32 bytes
# `dev-only-payload-key-change-me!!` in base64 (`TEMPORAL_PAYLOAD_KEYS`, kit/codec.py).
DEV_TEMPORAL_PAYLOAD_KEYS = "dev:ZGV2LW9ubHktcGF5bG9hZC1rZXktY2hhbmdlLW1lISE="
# EasyPost's shapes: a test key (`EZTK...`; the sandbox accepts exactly the configured key) and the
# webhook secret its HMAC signatures are made with.
DEV_EASYPOST_API_KEY = "EZTKdevonlysandboxkeychangeme"
DEV_EASYPOST_WEBHOOK_SECRET = "dev-only-easypost-webhook-secret-change-me"

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:54329"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_PSP_URL = "http://127.0.0.1:8100"
STRIPE_LIVE_API_BASE = "https://api.stripe.com"
# Stripe's secret and restricted keys by mode: the key's prefix says which money it moves.
STRIPE_KEY_MODES = {"live": ("sk_live_", "rk_live_"), "test": ("sk_test_", "rk_test_")}
EASYPOST_LIVE_API_BASE = "https://api.easypost.com/v2"
# Where the sandbox serves EasyPost's API, under PSP_URL.
EASYPOST_SANDBOX_PATH = "/v2"


EmbeddedService = Literal["postgres", "temporal", "nats", "sandbox"]


class ConfigurationError(RuntimeError):
    """The environment describes a configuration the platform refuses to run with."""


ProcessKind = Literal["api", "worker", "relay", "migrate", "shopctl", "sandbox"]

# The secret settings each kind of process reads, and so the only ones it is given
# (deploy/kubernetes) and the only ones ENV=production checks in it (`Settings.validate_for`):
# the API verifies tokens and webhooks, quotes shipping rates and starts workflows; a worker talks
# to Temporal; the relays and the migrations use no secret beyond their database and NATS URLs;
# `shopctl` holds an operator's credentials; the sandbox, a stand-in for Stripe and EasyPost in
# development and tests only, accepts the keys and signs with the secrets the platform is given.
# Optional ones (a Temporal Cloud API key, the previous webhook secret during a rotation) are read
# when given and never required.
SECRETS_BY_KIND: dict[ProcessKind, frozenset[str]] = {
    "api": frozenset(
        {
            "AUTH_JWT_SECRET",
            "STRIPE_WEBHOOK_SECRET",
            "STRIPE_WEBHOOK_SECRET_PREVIOUS",
            "EASYPOST_API_KEY",
            "EASYPOST_WEBHOOK_SECRET",
            "EASYPOST_WEBHOOK_SECRET_PREVIOUS",
            "TEMPORAL_PAYLOAD_KEYS",
            "TEMPORAL_API_KEY",
        }
    ),
    "worker": frozenset({"TEMPORAL_PAYLOAD_KEYS", "TEMPORAL_API_KEY"}),
    "relay": frozenset(),
    "migrate": frozenset(),
    "shopctl": frozenset({"SHOPCTL_TOKEN", "SHOPCTL_CLIENT_SECRET"}),
    "sandbox": frozenset(
        {
            "STRIPE_API_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "STRIPE_WEBHOOK_SECRET_PREVIOUS",
            "EASYPOST_API_KEY",
            "EASYPOST_WEBHOOK_SECRET",
        }
    ),
}
# What a worker reads beyond that for a domain it serves: the payments worker calls Stripe, the
# shipping worker EasyPost.
SECRETS_BY_WORKER_DOMAIN: dict[str, frozenset[str]] = {
    "payments": frozenset({"STRIPE_API_KEY"}),
    "shipping": frozenset({"EASYPOST_API_KEY"}),
}


@dataclass(frozen=True)
class ProcessRole:
    """What a process is: the API, a worker of some domains, a relay of some domains, the
    migrations, `shopctl` or the provider sandbox. Its role says which secrets it reads
    (`secrets`), and so which it needs with ENV=production (`Settings.validate_for`)."""

    kind: ProcessKind
    domains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.domains) - set(DOMAINS))
        if unknown:
            raise ConfigurationError(f"{self.kind} process of unknown domains: {unknown}")
        if self.kind == "worker" and not self.domains:
            raise ConfigurationError("a worker process serves at least one domain")
        if self.domains and self.kind not in ("worker", "relay"):
            raise ConfigurationError(f"a {self.kind} process serves no domain")

    def secrets(self) -> frozenset[str]:
        """The secret variables this process reads: it is given these and no others."""
        used = set(SECRETS_BY_KIND[self.kind])
        if self.kind == "worker":
            for domain in self.domains:
                used |= SECRETS_BY_WORKER_DOMAIN.get(domain, frozenset())
        return frozenset(used)

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(self.domains)}" if self.domains else self.kind


def database_url_for(server_url: str, database: str) -> str:
    """The URL of `database` on the server of `server_url` (its path, if any, replaced)."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def async_driver_url(url: str) -> str:
    """The SQLAlchemy asyncpg form of a libpq-style `postgresql://` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(f"not a database URL: {scheme!r}")
    base = scheme.split("+", 1)[0]
    if base not in ("postgresql", "postgres"):
        raise ConfigurationError(f"only PostgreSQL is supported, got scheme {scheme!r}")
    return f"postgresql+asyncpg://{rest}"


class Group(BaseModel):
    """One concern's settings; each field is read from `<GROUP>_<FIELD>` (module docstring)."""

    # A field's docstring is its description (docs/reference/configuration.md is made from them).
    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)


class DatabaseSettings(Group):
    """PostgreSQL: `DATABASE_URL`, `<DOMAIN>_DATABASE_URL`, `DB_POOL_SIZE`, `DB_MAX_OVERFLOW`,
    `DB_PGBOUNCER`, `DB_BUDGET_CHECK`, `DB_FLEET_CONNECTIONS`."""

    url: str = DEFAULT_DATABASE_URL
    """The PostgreSQL server; each domain uses the database named after it on this server."""
    domain_urls: dict[str, str] = Field(default_factory=dict)
    """One domain's database elsewhere (`PAYMENTS_DATABASE_URL`), by domain name; a worker
    process gets only its own domains' URLs."""
    pool_size: int = Field(default=5, ge=1, le=200)
    """Connections kept open per domain database and process."""
    max_overflow: int = Field(default=5, ge=0, le=200)
    """Connections a process may open beyond `DB_POOL_SIZE` per domain database under load."""
    pgbouncer: bool = False
    """Connections go through PgBouncer in transaction mode: no prepared statement caches
    (kit/db.py). Session mode and PgBouncer >= 1.21 with max_prepared_statements need nothing."""
    budget_check: Literal["enforce", "warn", "off"] = "enforce"
    """The connection budget, checked by every process at start (kit/budget.py): `enforce`
    refuses to start over it, `warn` logs, `off` skips (behind a pooler, whose limits are its
    own)."""
    fleet_connections: int | None = Field(default=None, ge=1)
    """The deployment's worst case on one PostgreSQL server, every process at its maximum replica
    count plus surge, checked against the server's `max_connections` at start (docs/deployment.md,
    "Connection budget")."""

    @field_validator("domain_urls")
    @classmethod
    def _known_domains(cls, urls: dict[str, str]) -> dict[str, str]:
        unknown = set(urls) - set(DOMAINS)
        if unknown:
            raise ConfigurationError(f"database URLs of unknown domains: {sorted(unknown)}")
        return urls


PAYLOAD_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
PAYLOAD_KEY_BYTES = 32
_URLSAFE = str.maketrans("-_", "+/")


def payload_keyring(text: str) -> tuple[tuple[str, bytes], ...]:
    """`TEMPORAL_PAYLOAD_KEYS` read: `id:base64key[,id:base64key...]`, the first encrypting.

    Each key is 32 bytes (AES-256) in standard or URL-safe base64; ids are 1-64 letters, digits,
    `.`, `_` or `-`, and unique. ConfigurationError names the entry that is wrong, never a key.
    """
    ring: list[tuple[str, bytes]] = []
    for position, entry in enumerate(text.split(","), start=1):
        key_id, sep, encoded = entry.strip().partition(":")
        if not sep or not PAYLOAD_KEY_ID.fullmatch(key_id):
            raise ConfigurationError(
                f"TEMPORAL_PAYLOAD_KEYS entry {position}: expected id:base64key with an id of "
                "1-64 letters, digits, '.', '_' or '-'"
            )
        try:
            key = base64.b64decode(encoded.strip().translate(_URLSAFE), validate=True)
        except binascii.Error:
            key = b""
        if len(key) != PAYLOAD_KEY_BYTES:
            raise ConfigurationError(
                f"TEMPORAL_PAYLOAD_KEYS key {key_id!r}: expected {PAYLOAD_KEY_BYTES} bytes "
                "in base64 (`openssl rand -base64 32`)"
            )
        if any(key_id == known for known, _ in ring):
            raise ConfigurationError(f"TEMPORAL_PAYLOAD_KEYS: key id {key_id!r} given twice")
        ring.append((key_id, key))
    return tuple(ring)


class TemporalSettings(Group):
    """`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_UI_URL`, and in production either
    mTLS (`TEMPORAL_TLS_CERT`, `TEMPORAL_TLS_KEY`, `TEMPORAL_TLS_CA`: paths to PEM files) or a
    Temporal Cloud API key (`TEMPORAL_API_KEY`); `TEMPORAL_PAYLOAD_KEYS` encrypts payloads."""

    address: str = DEFAULT_TEMPORAL_ADDRESS
    """The Temporal frontend, `host:port`."""
    namespace: str = "default"
    """The Temporal namespace checkouts run in."""
    ui_url: str = "http://127.0.0.1:8233"
    """The Temporal web UI: the ops API links to it, and its origin alone may call the payload
    codec endpoint from a browser."""
    tls_cert: Path | None = None
    """mTLS: the client certificate (PEM file)."""
    tls_key: Path | None = None
    """mTLS: the client certificate's private key (PEM file)."""
    tls_ca: Path | None = None
    """mTLS: the CA that signed the server's certificate (PEM file); unset: the system's."""
    api_key: SecretStr | None = None
    """A Temporal Cloud API key, instead of mTLS."""
    payload_keys: SecretStr | None = SecretStr(DEV_TEMPORAL_PAYLOAD_KEYS)
    """AES-256 keys of the payload codec (kit/codec.py): `id:base64key[,id:base64key...]`, the
    first encrypts, all decrypt (rotation: docs/operations.md, "Payload encryption"). The default
    is public on purpose and refused when ENV=production, where a process refuses to make a
    Temporal client without keys (processes that never talk to Temporal, such as the relays,
    need none)."""

    @field_validator("payload_keys")
    @classmethod
    def _readable_keyring(cls, keys: SecretStr | None) -> SecretStr | None:
        if keys is not None:
            payload_keyring(keys.get_secret_value())
        return keys

    def keyring(self) -> tuple[tuple[str, bytes], ...]:
        """The payload keys as (id, key) pairs, the encrypting key first."""
        if self.payload_keys is None:
            raise ConfigurationError("TEMPORAL_PAYLOAD_KEYS must be set when ENV=production")
        return payload_keyring(self.payload_keys.get_secret_value())

    def uses_dev_payload_key(self) -> bool:
        """Whether the public development key is among the payload keys."""
        if self.payload_keys is None:
            return False
        dev_key = payload_keyring(DEV_TEMPORAL_PAYLOAD_KEYS)[0][1]
        return any(key == dev_key for _, key in self.keyring())


class NatsSettings(Group):
    """`NATS_URL`."""

    url: str = DEFAULT_NATS_URL
    """NATS with JetStream, where the outbox relays publish and the consumers read."""


class ApiSettings(Group):
    """The HTTP API: `API_HOST`, `API_PORT`, `API_MAX_BODY_BYTES`."""

    host: str = "127.0.0.1"
    """The address the HTTP API listens on."""
    port: int = Field(default=8000, ge=1, le=65535)
    """The port the HTTP API listens on."""
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    """Request bodies larger than this are refused with 413 `body_too_large`."""


class AuthSettings(Group):
    """Bearer tokens (docs/identity.md): HS256 with `AUTH_JWT_SECRET` (`AUTH_TOKEN_TTL_S` for the
    development tokens), or, with `AUTH_ISSUER` set, RS256/ES256 tokens of that OpenID Connect
    provider: `AUTH_AUDIENCE`, `AUTH_JWKS_URL`, `AUTH_JWKS_MIN_REFRESH_S`, `AUTH_JWKS_MAX_AGE_S`,
    `AUTH_JWKS_TIMEOUT_S`, `AUTH_LEEWAY_S`, `AUTH_SCOPE_CLAIM`, `AUTH_OPERATOR_SCOPE`,
    `AUTH_CUSTOMER_SCOPE`, `AUTH_USER_ID_CLAIM`."""

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    """The HS256 key of bearer tokens (the default is public on purpose; ENV=production refuses
    it unless AUTH_ISSUER is set, when HS256 tokens are refused anyway)."""
    token_ttl_s: int = Field(default=3600, gt=0)
    """Lifetime of the tokens `POST /v1/dev/tokens` issues, in seconds."""
    issuer: str | None = None
    """The OpenID Connect provider's issuer URL exactly as its tokens' `iss` says it; unset: HS256
    tokens signed with AUTH_JWT_SECRET (docs/identity.md)."""
    audience: str = "checkout-api"
    """The `aud` this API's tokens must carry (the API's identifier at the provider)."""
    jwks_url: str | None = None
    """The provider's key set. Unset: the `jwks_uri` of
    `{issuer}/.well-known/openid-configuration`."""
    jwks_min_refresh_s: float = Field(default=60.0, ge=0)
    """A token signed with a key id not in the cached key set refetches the set at most this
    often."""
    jwks_max_age_s: float = Field(default=3600.0, gt=0)
    """The key set is refetched once it is older than this (keys the provider removed go)."""
    jwks_timeout_s: float = Field(default=5.0, gt=0)
    """How long fetching the discovery document or the key set may take."""
    leeway_s: int = Field(default=30, ge=0, le=300)
    """Clock skew allowed on `exp`, `nbf` and `iat`."""
    scope_claim: str | None = None
    """Where the scopes are: unset, `scope` (a space-separated string) if present, else `scopes`
    (a list); either shape is read from whichever claim is named here (`roles`, `scp`, ...)."""
    operator_scope: str = "operator"
    """The provider's scope value that grants the platform's `operator` scope."""
    customer_scope: str = "customer"
    """The provider's scope value that grants the platform's `customer` scope."""
    user_id_claim: str = "sub"
    """The claim naming the user; a value that is not a UUID maps to a stable UUID
    (docs/identity.md)."""


class ShopctlSettings(Group):
    """The operator CLI (`shopctl`): `SHOPCTL_API_URL`, a token (`SHOPCTL_TOKEN`,
    `SHOPCTL_TOKEN_FILE`) or client credentials (`SHOPCTL_CLIENT_ID`, `SHOPCTL_CLIENT_SECRET`,
    `SHOPCTL_TOKEN_URL`, `SHOPCTL_SCOPE`)."""

    api_url: str | None = None
    """The API `shopctl` talks to. Unset: http://127.0.0.1:API_PORT."""
    token: SecretStr | None = None
    """A bearer token with the operator scope, used when no token file is given."""
    token_file: Path | None = None
    """A file whose whole content is the bearer token (`--token-file` overrides it)."""
    client_id: str | None = None
    """Client credentials at the provider: the client id."""
    client_secret: SecretStr | None = None
    """Client credentials at the provider: the client secret."""
    token_url: str | None = None
    """The provider's token endpoint. Unset: `token_endpoint` from AUTH_ISSUER's discovery
    document."""
    scope: str | None = None
    """The scope asked for in the client-credentials grant; unset: AUTH_OPERATOR_SCOPE."""


class PspSettings(Group):
    """The local provider sandbox (Stripe and EasyPost stand-in): `PSP_URL`, `PSP_TIMEOUT_S`."""

    url: str = DEFAULT_PSP_URL
    """The local payment-provider and carrier sandbox; `just up` starts it when this is unset."""
    timeout_s: float = Field(default=10.0, gt=0)
    """The carrier's calls: slower than this is treated as lost and retried under the same key."""


class StripeSettings(Group):
    """Stripe as the platform calls it: `STRIPE_API_BASE`, `STRIPE_API_KEY`,
    `STRIPE_WEBHOOK_SECRET[_PREVIOUS]`, `STRIPE_RETURN_URL`, `STRIPE_TIMEOUT_S`,
    `STRIPE_WEBHOOK_RETENTION`.

    Going live changes the first three and the return URL, nothing else (README, "Going live
    with Stripe"); the key's mode is checked against ENV where it is used (`_stripe_key_refusal`)
    and refused everywhere outside production when it is live.
    """

    api_base: str = ""
    """Where the `stripe` client sends its requests. Unset: the sandbox at PSP_URL, or
    `https://api.stripe.com` when ENV=production."""
    api_key: SecretStr = SecretStr(DEV_STRIPE_API_KEY)
    """The Stripe secret (or restricted) key; the sandbox accepts exactly this key (the default,
    public on purpose). Live keys (`sk_live_...`, `rk_live_...`) only with ENV=production, and
    only live keys there in the process that calls Stripe (the payments worker)."""
    webhook_secret: SecretStr = SecretStr(DEV_STRIPE_WEBHOOK_SECRET)
    """The webhook endpoint's signing secret (`whsec_...`). The default is public on purpose and
    refused when ENV=production."""
    webhook_secret_previous: SecretStr | None = None
    """During a rotation: the previous secret, still accepted until the provider stops using it."""
    return_url: str | None = None
    """Where the buyer's browser returns after a 3-D Secure redirect: your shop's page that then
    polls the checkout. Live Stripe needs it to answer a card that must authenticate with
    `next_action.redirect_to_url` (without it: `use_stripe_sdk`, for Stripe.js). Required
    (https) with ENV=production in the process that calls Stripe (the payments worker)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """A call slower than this is treated as lost and retried under the same idempotency key."""
    webhook_retention: timedelta = timedelta(days=7)
    """How long a received event's id is kept to drop its redeliveries: longer than Stripe retries
    a delivery (about 3 days in live mode)."""


class TaxSettings(Group):
    """Sales tax and VAT: `TAX_PROVIDER`, `TAX_ON_FAILURE`, `TAX_DEFAULT_CODE`, `TAX_MAX_ATTEMPTS`.

    `none` charges no tax (an order's total is its items less the coupon); `stripe` calculates
    it with Stripe Tax (the sandbox in development) before the payment is authorized, records
    it after the capture and reverses it on refunds.
    """

    provider: Literal["none", "stripe"] = "none"
    """`none`: no tax lines; `stripe`: Stripe Tax (the sandbox in development)."""
    on_failure: Literal["fail", "open"] = "fail"
    """When the tax service cannot answer after `max_attempts`: `fail` ends the checkout
    `tax_unavailable` before anything is held; `open` goes on with zero tax, logged
    (`tax.unavailable_opened`) and counted (`tax_fail_open_total`)."""
    default_code: str = Field(default="txcd_99999999", pattern=r"^txcd_\d{8}$")
    """The product tax code of every line (Stripe's "General - Tangible Goods")."""
    max_attempts: int = Field(default=3, ge=1, le=20)
    """Attempts of a tax calculation before the service counts as down (retries are Temporal's)."""


class EasyPostSettings(Group):
    """The carrier, EasyPost, through its `easypost` package: `EASYPOST_API_BASE`,
    `EASYPOST_API_KEY`, `EASYPOST_WEBHOOK_SECRET[_PREVIOUS]`, `EASYPOST_TIMEOUT_S`.

    Going live changes the first three and nothing else (README, "Going live with EasyPost").
    """

    api_base: str = ""
    """Empty: the sandbox at PSP_URL/v2, or EasyPost itself when ENV=production (see Settings)."""
    api_key: SecretStr = SecretStr(DEV_EASYPOST_API_KEY)
    """EasyPost's API key. The default is the sandbox's public one, refused when ENV=production."""
    webhook_secret: SecretStr = SecretStr(DEV_EASYPOST_WEBHOOK_SECRET)
    """Tracker webhooks carry `X-Hmac-Signature`, an HMAC-SHA256 of the body under this secret."""
    webhook_secret_previous: SecretStr | None = None
    """During a rotation: the previous secret, still accepted until EasyPost stops using it."""
    timeout_s: int = Field(default=10, ge=1)
    """The package takes whole seconds; a slower call is treated as lost and retried."""


class ShippingSettings(Group):
    """Shipping quotes and where parcels leave from: `SHIPPING_QUOTE_TTL_S`,
    `SHIPPING_FROM_ADDRESS` (a JSON object in EasyPost's address fields)."""

    quote_ttl_s: int = Field(default=900, ge=30, le=86_400)
    """How long a rate quoted at checkout may be chosen (EasyPost's own rates last longer)."""
    from_address: dict[str, str] = Field(
        default_factory=lambda: {
            "company": "Checkout Platform Warehouse",
            "street1": "1 Dock Road",
            "city": "Springfield",
            "state": "CA",
            "zip": "94107",
            "country": "US",
        }
    )
    """The warehouse every parcel leaves from (and every return comes back to)."""


class WorkerSettings(Group):
    """Domain worker processes: `WORKER_*`."""

    replicas: int = Field(default=1, ge=1, le=16)
    """Processes per domain task queue that `just up` runs."""

    max_concurrent_activities: int = Field(default=200, ge=1)
    """Activities one worker process runs at once."""
    max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    """Workflow tasks one worker process runs at once."""
    max_concurrent_local_activities: int = Field(default=200, ge=1)
    """Local activities (the checkout's own step records) one worker process runs at once."""
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """How long SIGTERM waits for in-flight activities before cancelling them."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Prometheus: when set, a worker process serves Temporal's runtime metrics (and the
    platform's own, recorded through the same meter) on this port. The API serves /metrics."""
    metrics_host: str = Field(default="127.0.0.1", min_length=1)
    """The address the metrics port listens on: loopback on a laptop; `0.0.0.0` in a cluster,
    where Prometheus scrapes the pod's IP (deploy/kubernetes/base/configmap.yaml)."""
    metrics_base_port: int | None = Field(default=9101, ge=1, le=65000)
    """`just up` gives each worker process its own metrics port, counting up from this one."""
    prune_interval_s: float = Field(default=3600.0, gt=0)
    """How often a worker process prunes the inboxes of its domains: one indexed DELETE per inbox
    and interval when there is nothing to prune."""
    versioning: bool = False
    """Worker Versioning (docs/deployment.md, "Worker versioning"): a process running workflows
    polls as version `<WORKER_DEPLOYMENT_NAME>-<queue>` / `WORKER_BUILD_ID` of a Temporal Worker
    Deployment and makes a version never active before the current one once it polls. Off:
    unversioned workers (`just up`, tests); the production ConfigMap turns it on."""
    deployment_name: str = Field(default="checkout-platform", pattern=r"^[A-Za-z0-9_-]{1,200}$")
    """The Worker Deployment's name prefix; each workflow queue's deployment is
    `<WORKER_DEPLOYMENT_NAME>-<queue>`."""
    build_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$")
    """The release's build id: the image tag in production, where a versioned worker refuses to
    start without it. Unset elsewhere: the package version (`dev` without one)."""


class InventorySettings(Group):
    """`INVENTORY_SWEEP_INTERVAL_S`: how often the sweeper releases expired reservations whose
    checkout has ended."""

    sweep_interval_s: float = Field(default=60.0, gt=0)
    """How often the sweeper releases expired reservations whose checkout has ended."""


class RelaySettings(Group):
    """Outbox relays, inside each domain's worker process (and `python -m workers relay <d>`)."""

    enabled: bool = True
    """Whether worker processes run their domains' outbox relays."""
    partitions: int = Field(default=32, ge=1, le=4096)
    """Partitions the aggregates are hashed into; each is held by one relay at a time, so relays
    share a domain's outbox and keep every aggregate's order."""
    poll_interval_s: float = Field(default=1.0, gt=0)
    """Used only while the relay cannot hear NOTIFY (`relay.deaf`: a dropped listening connection,
    PgBouncer in transaction mode), and as its reconnect delay; otherwise it waits for NOTIFY."""
    retention: timedelta = timedelta(hours=24)
    """How long published outbox rows are kept before they are deleted."""


class ConsumerSettings(Group):
    """Event consumers: `CONSUMER_MAX_DELIVER`, `CONSUMER_INBOX_RETENTION`."""

    max_deliver: int = Field(default=10, ge=1)
    """Deliveries of an event whose reaction keeps failing before it is dead-lettered."""
    inbox_retention: timedelta = timedelta(days=7)
    """How long `consumer_inbox` remembers an applied event (to drop its redeliveries)."""


class OpsSettings(Group):
    """When /v1/ops/checkouts/stuck lists a checkout: `OPS_*`."""

    step_deadlines_s: dict[str, float] = Field(
        default_factory=lambda: {"authorize_payment": 120.0, "capture_payment": 120.0}
    )
    """Seconds a checkout may sit in one step, by step name (a JSON object). Waiting for the buyer
    is bounded by CHECKOUT_PAYMENT_TIMEOUT instead."""
    default_step_deadline_s: float = Field(default=60.0, gt=0)
    """Seconds a checkout may sit in a step that `OPS_STEP_DEADLINES_S` does not name."""
    stuck_attempt: int = Field(default=4, ge=2)
    """An activity on this attempt or a later one counts as stuck."""


class TracingSettings(Group):
    """OpenTelemetry, off by default; on, the API and workers export spans over OTLP/HTTP."""

    enabled: bool = False
    """Whether the API and the workers export OpenTelemetry spans."""
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """The OTLP/HTTP endpoint spans are sent to."""


class LogSettings(Group):
    """`LOG_FORMAT`, `LOG_LEVEL`."""

    format: Literal["console", "json"] = "console"
    """`console` for people, `json` for one JSON object per line."""
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe level logged."""


class CheckoutSettings(Group):
    """The checkout's own limits: `CHECKOUT_PAYMENT_TIMEOUT`, `CHECKOUT_PAYMENT_RECHECK_S`,
    `CHECKOUT_RATE_PER_MINUTE`."""

    payment_timeout: timedelta = timedelta(minutes=15)
    """How long a checkout waits for a payment action before it expires."""
    payment_recheck_s: int = Field(default=30, gt=0, le=3600)
    """While it waits, how often the workflow re-reads the intent without an event (a lost
    webhook never decides a checkout)."""
    rate_per_minute: int = Field(default=30, gt=0)
    """Checkout starts per user and minute (a token bucket per API process; burst = the rate)."""


class ReturnSettings(Group):
    """Returns of delivered orders: `RETURN_WINDOW_DAYS`, `RETURN_AUTO_APPROVE`,
    `RETURN_SHIP_BACK_DAYS`."""

    window_days: int = Field(default=30, ge=0, le=3650)
    """How many days after its delivery an order's units may be returned."""
    auto_approve: bool = False
    """Approve every return as it is asked for (a policy), instead of waiting for an operator."""
    ship_back_days: int = Field(default=30, ge=1, le=3650)
    """How many days after its approval a return's parcel may take to come back before the
    return waits at `needs_attention` for an operator (receive it, reject it, or wait again)."""


# Variables whose first word is not their group's name, and the field each fills (rule 2).
ELSEWHERE: dict[str, tuple[str, ...]] = {
    "DB_POOL_SIZE": ("database", "pool_size"),
    "DB_MAX_OVERFLOW": ("database", "max_overflow"),
    "DB_PGBOUNCER": ("database", "pgbouncer"),
    "DB_BUDGET_CHECK": ("database", "budget_check"),
    "DB_FLEET_CONNECTIONS": ("database", "fleet_connections"),
    # `return` is a Python keyword: the group is `returns`, its variables say RETURN_.
    "RETURN_WINDOW_DAYS": ("returns", "window_days"),
    "RETURN_AUTO_APPROVE": ("returns", "auto_approve"),
    "RETURN_SHIP_BACK_DAYS": ("returns", "ship_back_days"),
    **{f"{d.upper()}_DATABASE_URL": ("database", "domain_urls", d) for d in DOMAINS},
}


class _Environment(EnvSettingsSource):
    """The environment as the module docstring reads it: rule 1, then rule 2 on top."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value, key, is_complex = super().get_field_value(field, field_name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, Group):
            value = None  # never the group as one JSON variable: only its fields' variables
        return value, key, is_complex

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for name, (*groups, field) in ELSEWHERE.items():
            value = self.env_vars.get(name.lower())  # the settings are not case-sensitive
            if value is not None:
                target = data
                for group in groups:
                    target = target.setdefault(group, {})
                target[field] = value
        return data


class Settings(BaseSettings):
    """Platform configuration, one group per concern; see the module docstring for the names."""

    model_config = SettingsConfigDict(
        env_file=None,
        extra="ignore",
        frozen=True,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        use_attribute_docstrings=True,
    )

    env: Literal["dev", "test", "production"] = "dev"
    """`production` refuses the public development secrets and talks to Stripe itself."""
    data_dir: Path = Path(".data")
    """Local state of `just up`, the sandbox and the development mail outbox (git-ignored)."""
    embedded_services: Annotated[frozenset[EmbeddedService] | None, NoDecode] = None
    """`just up` starts the local PostgreSQL, Temporal, NATS and payment sandbox whose URL the
    environment leaves unset; this comma-separated list names the ones to start regardless, at
    the URL given (tests use it to run a whole stack on free ports)."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    shopctl: ShopctlSettings = Field(default_factory=ShopctlSettings)
    psp: PspSettings = Field(default_factory=PspSettings)
    stripe: StripeSettings = Field(default_factory=StripeSettings)
    easypost: EasyPostSettings = Field(default_factory=EasyPostSettings)
    shipping: ShippingSettings = Field(default_factory=ShippingSettings)
    tax: TaxSettings = Field(default_factory=TaxSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    checkout: CheckoutSettings = Field(default_factory=CheckoutSettings)
    returns: ReturnSettings = Field(default_factory=ReturnSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, the environment read by `_Environment`."""
        environment = _Environment(settings_cls)
        return init_settings, environment, dotenv_settings, file_secret_settings

    @field_validator("embedded_services", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="before")
    @classmethod
    def _easypost_where_the_environment_says(cls, data: Any) -> Any:
        """EASYPOST_API_BASE unset: EasyPost itself in production, the sandbox (PSP_URL/v2)
        elsewhere."""
        if not isinstance(data, dict):
            return data
        easypost = _given(data.get("easypost"))
        if not easypost.get("api_base"):
            if data.get("env") == "production":
                easypost["api_base"] = EASYPOST_LIVE_API_BASE
            else:
                psp = _given(data.get("psp")).get("url") or DEFAULT_PSP_URL
                easypost["api_base"] = str(psp).rstrip("/") + EASYPOST_SANDBOX_PATH
            data = {**data, "easypost": easypost}
        return data

    @model_validator(mode="before")
    @classmethod
    def _stripe_where_the_environment_says(cls, data: Any) -> Any:
        """STRIPE_API_BASE unset: Stripe itself in production, the sandbox (PSP_URL) elsewhere."""
        if not isinstance(data, dict):
            return data
        stripe = _given(data.get("stripe"))
        if not stripe.get("api_base"):
            if data.get("env") == "production":
                stripe["api_base"] = STRIPE_LIVE_API_BASE
            else:
                stripe["api_base"] = _given(data.get("psp")).get("url") or DEFAULT_PSP_URL
            data = {**data, "stripe": stripe}
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_payload_key_by_default_in_production(cls, data: Any) -> Any:
        """TEMPORAL_PAYLOAD_KEYS unset: the development key, except in production (none)."""
        if not isinstance(data, dict) or data.get("env") != "production":
            return data
        temporal = _given(data.get("temporal"))
        if "payload_keys" not in temporal:
            data = {**data, "temporal": {**temporal, "payload_keys": None}}
        return data

    @model_validator(mode="after")
    def _refuse_what_no_process_may_run_with(self) -> Settings:
        """Values wrong in any process; what each process needs is `validate_for`'s."""
        if self.env == "production":
            # Keys fetched in the clear could be swapped by anyone on the path.
            for name, url in (
                ("AUTH_ISSUER", self.auth.issuer),
                ("AUTH_JWKS_URL", self.auth.jwks_url),
            ):
                if url and not url.startswith("https://"):
                    raise ConfigurationError(f"{name} must be an https:// URL when ENV=production")
        elif self.stripe.api_key.get_secret_value().startswith(STRIPE_KEY_MODES["live"]):
            # A live key anywhere but production would take real money from tests.
            raise ConfigurationError(
                f"STRIPE_API_KEY is a live key: refused unless ENV=production (ENV={self.env})"
            )
        return self

    def validate_for(self, role: ProcessRole) -> Settings:
        """These settings, checked for a process of `role`; every entry point calls it first.

        With ENV=production each secret the process needs must be set and must not be a public
        development default; secrets it never reads are not looked at (it is not given them).
        Returns the settings; ConfigurationError names every variable that is wrong.
        """
        if self.env != "production":
            return self
        if role.kind == "sandbox":
            raise ConfigurationError(
                "the sandbox stands in for Stripe and EasyPost in development and tests: "
                "refused when ENV=production"
            )
        refusals = [
            refusal
            for variable in sorted(role.secrets() & PRODUCTION_CHECKS.keys())
            if (refusal := PRODUCTION_CHECKS[variable](self)) is not None
        ]
        if refusals:
            raise ConfigurationError(f"{role} process: " + "; ".join(refusals))
        return self

    def domain_database_url(self, domain: str) -> str:
        """libpq URL of a domain's database: `<DOMAIN>_DATABASE_URL` or `DATABASE_URL/<domain>`."""
        if domain not in DOMAINS:
            raise ConfigurationError(f"unknown domain {domain!r}")
        override = self.database.domain_urls.get(domain)
        return override or database_url_for(self.database.url, domain)

    def is_explicit(self, field: str) -> bool:
        """Whether `field` ("database.url", "env") came from the environment, not its default."""
        group, _, name = field.partition(".")
        if group not in self.model_fields_set:
            return False
        if not name:
            return True
        value = getattr(self, group)
        return isinstance(value, BaseModel) and name in value.model_fields_set

    def starts_embedded(self, service: EmbeddedService) -> bool:
        """Whether `just up` runs this service itself (see `embedded_services`)."""
        if self.embedded_services is not None:
            return service in self.embedded_services
        url_field = {
            "postgres": "database.url",
            "temporal": "temporal.address",
            "nats": "nats.url",
            "sandbox": "psp.url",
        }
        return not self.is_explicit(url_field[service])

    def updated(self, **changes: Any) -> Settings:
        """A copy with some values replaced; a group's as a mapping of the fields that change.

        `settings.updated(api={"port": 8001}, data_dir=path)`. Like `model_copy`, it does not
        validate; unlike it, an unknown name is an error rather than a silent extra.
        """
        update: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in type(self).model_fields:
                raise AttributeError(f"Settings has no {name!r}")
            current = getattr(self, name)
            if isinstance(current, Group) and isinstance(value, Mapping):
                unknown = set(value) - set(type(current).model_fields)
                if unknown:
                    raise AttributeError(f"settings.{name} has no {sorted(unknown)}")
                value = current.model_copy(update=dict(value))
            update[name] = value
        return self.model_copy(update=update)


# Each secret a process may need, and why ENV=production refuses it as given (None: accepted).
# A process is checked for the secrets of its role only (`ProcessRole.secrets`).


def _jwt_secret_refusal(settings: Settings) -> str | None:
    # With an issuer the secret verifies nothing (HS256 tokens are refused).
    if settings.auth.issuer or settings.auth.jwt_secret.get_secret_value() != DEV_JWT_SECRET:
        return None
    return "AUTH_ISSUER or AUTH_JWT_SECRET must be set when ENV=production"


def _stripe_key_refusal(settings: Settings) -> str | None:
    """Only live keys in production (a test key would take no real money), and a live key needs
    STRIPE_RETURN_URL, where live cards authenticate (3-D Secure)."""
    key = settings.stripe.api_key.get_secret_value()
    if key == DEV_STRIPE_API_KEY:
        return "STRIPE_API_KEY must be set when ENV=production"
    if not key.startswith(STRIPE_KEY_MODES["live"]):
        return "STRIPE_API_KEY must be a live key (sk_live_... or rk_live_...) when ENV=production"
    if not (settings.stripe.return_url or "").startswith("https://"):
        return "STRIPE_RETURN_URL must be an https:// URL when ENV=production"
    return None


def _stripe_webhook_secret_refusal(settings: Settings) -> str | None:
    if settings.stripe.webhook_secret.get_secret_value() != DEV_STRIPE_WEBHOOK_SECRET:
        return None
    return "STRIPE_WEBHOOK_SECRET must be set when ENV=production"


def _easypost_key_refusal(settings: Settings) -> str | None:
    if settings.easypost.api_key.get_secret_value() != DEV_EASYPOST_API_KEY:
        return None
    return "EASYPOST_API_KEY must be set when ENV=production"


def _easypost_webhook_secret_refusal(settings: Settings) -> str | None:
    if settings.easypost.webhook_secret.get_secret_value() != DEV_EASYPOST_WEBHOOK_SECRET:
        return None
    return "EASYPOST_WEBHOOK_SECRET must be set when ENV=production"


def _payload_keys_refusal(settings: Settings) -> str | None:
    if settings.temporal.payload_keys is None:
        return "TEMPORAL_PAYLOAD_KEYS must be set when ENV=production"
    if settings.temporal.uses_dev_payload_key():
        return "TEMPORAL_PAYLOAD_KEYS must not hold the development key when ENV=production"
    return None


PRODUCTION_CHECKS: dict[str, Callable[[Settings], str | None]] = {
    "AUTH_JWT_SECRET": _jwt_secret_refusal,
    "STRIPE_API_KEY": _stripe_key_refusal,
    "STRIPE_WEBHOOK_SECRET": _stripe_webhook_secret_refusal,
    "EASYPOST_API_KEY": _easypost_key_refusal,
    "EASYPOST_WEBHOOK_SECRET": _easypost_webhook_secret_refusal,
    "TEMPORAL_PAYLOAD_KEYS": _payload_keys_refusal,
}


def _given(group: object) -> dict[str, Any]:
    """The values given for a group, whether as a mapping (the environment) or a model (code)."""
    if isinstance(group, BaseModel):
        return group.model_dump(exclude_unset=True)
    return dict(group) if isinstance(group, Mapping) else {}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
