"""The one place the environment is read (house rule 8)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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

# Documented development defaults (README, "Configuration"). They are public on purpose and
# refused when ENV=production, so a forgotten variable can never ship a known secret.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
DEV_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"
DEV_CARRIER_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktY2Fycmllci1zZWNyZXQtY2hhbmdlLW1l"

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:54329"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


EmbeddedService = Literal["postgres", "temporal", "nats", "sandbox"]


class ConfigurationError(RuntimeError):
    """The environment describes a configuration the platform refuses to run with."""


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


class Settings(BaseSettings):
    """Platform configuration; every field maps to the upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    env: Literal["dev", "test", "production"] = "dev"

    database_url: str = DEFAULT_DATABASE_URL
    products_database_url: str | None = None
    cart_database_url: str | None = None
    orders_database_url: str | None = None
    payments_database_url: str | None = None
    inventory_database_url: str | None = None
    checkout_database_url: str | None = None
    shipping_database_url: str | None = None
    coupons_database_url: str | None = None
    accounts_database_url: str | None = None
    notifications_database_url: str | None = None
    db_pool_size: int = Field(default=5, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)

    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"

    nats_url: str = DEFAULT_NATS_URL

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    psp_url: str = "http://127.0.0.1:8100"
    # Client side of the payment provider: a call slower than this is treated as lost and retried
    # under the same idempotency key.
    psp_timeout_s: float = Field(default=10.0, gt=0)

    # The carrier's booking API; the sandbox serves it beside the payment provider, so it
    # defaults to PSP_URL.
    carrier_url: str = ""

    # The payment-provider sandbox (sandbox/): it listens on PSP_URL's port.
    sandbox_webhook_url: str = "http://127.0.0.1:8000/v1/webhooks/payments/sandbox"
    sandbox_db_path: Path | None = None  # default: DATA_DIR/sandbox/psp.sqlite
    sandbox_async_delay_s: float = Field(default=1.0, ge=0)  # tok_async: processing -> capturable
    sandbox_flaky_hang_s: float = Field(default=15.0, ge=0)  # tok_flaky: how long a "hang" lasts
    sandbox_webhook_max_attempts: int = Field(default=12, ge=1)
    # The sandbox carrier's tracking webhooks and how fast a parcel moves (seconds per status:
    # in_transit, out_for_delivery, delivered).
    sandbox_carrier_webhook_url: str = "http://127.0.0.1:8000/v1/webhooks/carriers/sandbox"
    sandbox_carrier_step_s: float = Field(default=5.0, gt=0)

    data_dir: Path = Path(".data")
    # `just up` starts the local PostgreSQL, Temporal, NATS and payment sandbox whose URL the
    # environment leaves unset. EMBEDDED_SERVICES names the ones to start regardless, at the URL
    # given (tests use this to run a whole stack on free ports).
    embedded_services: Annotated[frozenset[EmbeddedService] | None, NoDecode] = None

    auth_jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    auth_token_ttl_s: int = Field(default=3600, gt=0)
    payment_webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    # During a rotation: the previous secret, still accepted until the provider stops using it.
    payment_webhook_secret_previous: SecretStr | None = None
    # Carrier tracking webhooks are signed the same way, with their own secret.
    carrier_webhook_secret: SecretStr = SecretStr(DEV_CARRIER_WEBHOOK_SECRET)

    # HTTP API limits.
    api_max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Checkout starts per user and minute (a token bucket per API process; burst = the rate).
    checkout_rate_per_minute: int = Field(default=30, gt=0)

    # Workers: how much each domain worker process takes on at once, and how long SIGTERM waits
    # for in-flight activities before cancelling them.
    worker_max_concurrent_activities: int = Field(default=200, ge=1)
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    worker_max_concurrent_local_activities: int = Field(default=200, ge=1)
    worker_shutdown_grace_s: float = Field(default=30.0, ge=0)
    # Operators: how long a checkout may sit in one step before /v1/ops/checkouts/stuck lists it
    # (seconds; steps not named use the default). Waiting for the buyer is bounded by
    # CHECKOUT_PAYMENT_TIMEOUT instead.
    ops_step_deadlines_s: dict[str, float] = Field(
        default_factory=lambda: {"authorize_payment": 120.0, "capture_payment": 120.0}
    )
    ops_default_step_deadline_s: float = Field(default=60.0, gt=0)
    # An activity on its Nth attempt or later counts as stuck.
    ops_stuck_attempt: int = Field(default=4, ge=2)

    # Prometheus: a worker process serves Temporal's runtime metrics (and the platform's own,
    # recorded through the same meter) on this port when it is set; `just up` gives each worker
    # process its own, counting up from WORKER_METRICS_BASE_PORT (9101). The API serves /metrics.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_base_port: int | None = Field(default=9101, ge=1, le=65000)

    # Tracing (OpenTelemetry): off by default; on, the API and workers export spans over OTLP/HTTP,
    # Temporal's interceptor carrying the trace from the HTTP request into workflows and activities.
    tracing_enabled: bool = False
    tracing_otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"

    # Outbox relays run inside each domain's worker process (and `python -m workers relay <d>`).
    relay_enabled: bool = True
    relay_partitions: int = Field(default=32, ge=1, le=4096)
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    relay_retention: timedelta = timedelta(hours=24)
    # The inventory sweeper releases reservations past their expiry whose checkout has ended.
    inventory_sweep_interval_s: float = Field(default=60.0, gt=0)

    log_format: Literal["console", "json"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    checkout_payment_timeout: timedelta = timedelta(minutes=15)

    @field_validator("embedded_services", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="before")
    @classmethod
    def _carrier_beside_provider(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("carrier_url"):
            data = {**data, "carrier_url": data.get("psp_url") or "http://127.0.0.1:8100"}
        return data

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env == "production":
            if self.auth_jwt_secret.get_secret_value() == DEV_JWT_SECRET:
                raise ConfigurationError("AUTH_JWT_SECRET must be set when ENV=production")
            if self.payment_webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
                raise ConfigurationError("PAYMENT_WEBHOOK_SECRET must be set when ENV=production")
            if self.carrier_webhook_secret.get_secret_value() == DEV_CARRIER_WEBHOOK_SECRET:
                raise ConfigurationError("CARRIER_WEBHOOK_SECRET must be set when ENV=production")
        return self

    def domain_database_url(self, domain: str) -> str:
        """libpq URL of a domain's database: `<DOMAIN>_DATABASE_URL` or `DATABASE_URL/<domain>`."""
        if domain not in DOMAINS:
            raise ConfigurationError(f"unknown domain {domain!r}")
        override: str | None = getattr(self, f"{domain}_database_url")
        return override or database_url_for(self.database_url, domain)

    def is_explicit(self, field: str) -> bool:
        """Whether `field` came from the environment rather than its default."""
        return field in self.model_fields_set

    def starts_embedded(self, service: EmbeddedService) -> bool:
        """Whether `just up` runs this service itself (see `embedded_services`)."""
        if self.embedded_services is not None:
            return service in self.embedded_services
        url_field = {
            "postgres": "database_url",
            "temporal": "temporal_address",
            "nats": "nats_url",
            "sandbox": "psp_url",
        }
        return not self.is_explicit(url_field[service])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
