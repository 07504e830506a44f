"""Settings are grouped by concern, every variable under its documented name."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel, SecretStr

from api.app import create_app
from kit.settings import (
    DEFAULT_DATABASE_URL,
    DEV_EASYPOST_API_KEY,
    DEV_EASYPOST_WEBHOOK_SECRET,
    DEV_JWT_SECRET,
    DEV_STRIPE_API_KEY,
    DEV_STRIPE_WEBHOOK_SECRET,
    DEV_TEMPORAL_PAYLOAD_KEYS,
    DOMAINS,
    PRODUCTION_CHECKS,
    SECRETS_BY_KIND,
    SECRETS_BY_WORKER_DOMAIN,
    ConfigurationError,
    Group,
    ProcessKind,
    ProcessRole,
    Settings,
    async_driver_url,
    get_settings,
)
from sandbox.settings import SandboxSettings
from workers.__main__ import main as workers_main

README = Path(__file__).resolve().parents[2] / "README.md"

# Every variable the platform reads: its value in the test, the field it fills (a path through
# groups, and into `database.domain_urls`), and the value the field must then hold.
VARIABLES: list[tuple[str, str, tuple[str, ...], Any]] = [
    ("ENV", "test", ("env",), "test"),
    ("DATA_DIR", "/srv/checkout", ("data_dir",), Path("/srv/checkout")),
    ("EMBEDDED_SERVICES", "postgres, nats", ("embedded_services",), {"postgres", "nats"}),
    ("DATABASE_URL", "postgresql://app@db:5432", ("database", "url"), "postgresql://app@db:5432"),
    *(
        (
            f"{d.upper()}_DATABASE_URL",
            f"postgresql://{d}@h/{d}",
            ("database", "domain_urls", d),
            f"postgresql://{d}@h/{d}",
        )
        for d in DOMAINS
    ),
    ("DB_POOL_SIZE", "17", ("database", "pool_size"), 17),
    ("DB_MAX_OVERFLOW", "3", ("database", "max_overflow"), 3),
    ("DB_PGBOUNCER", "true", ("database", "pgbouncer"), True),
    ("TEMPORAL_ADDRESS", "temporal:7233", ("temporal", "address"), "temporal:7233"),
    ("TEMPORAL_NAMESPACE", "shop", ("temporal", "namespace"), "shop"),
    ("TEMPORAL_UI_URL", "http://ui:8233", ("temporal", "ui_url"), "http://ui:8233"),
    ("NATS_URL", "nats://broker:4222", ("nats", "url"), "nats://broker:4222"),
    ("API_HOST", "0.0.0.0", ("api", "host"), "0.0.0.0"),
    ("API_PORT", "8080", ("api", "port"), 8080),
    ("API_MAX_BODY_BYTES", "1024", ("api", "max_body_bytes"), 1024),
    ("AUTH_JWT_SECRET", "jwt-from-the-vault", ("auth", "jwt_secret"), "jwt-from-the-vault"),
    ("AUTH_TOKEN_TTL_S", "60", ("auth", "token_ttl_s"), 60),
    ("AUTH_ISSUER", "https://id.example/", ("auth", "issuer"), "https://id.example/"),
    ("AUTH_AUDIENCE", "shop-api", ("auth", "audience"), "shop-api"),
    ("AUTH_JWKS_URL", "https://id.example/keys", ("auth", "jwks_url"), "https://id.example/keys"),
    ("AUTH_JWKS_MIN_REFRESH_S", "5", ("auth", "jwks_min_refresh_s"), 5.0),
    ("AUTH_JWKS_MAX_AGE_S", "600", ("auth", "jwks_max_age_s"), 600.0),
    ("AUTH_JWKS_TIMEOUT_S", "2", ("auth", "jwks_timeout_s"), 2.0),
    ("AUTH_LEEWAY_S", "10", ("auth", "leeway_s"), 10),
    ("AUTH_SCOPE_CLAIM", "roles", ("auth", "scope_claim"), "roles"),
    ("AUTH_OPERATOR_SCOPE", "shop:operate", ("auth", "operator_scope"), "shop:operate"),
    ("AUTH_CUSTOMER_SCOPE", "shop:buy", ("auth", "customer_scope"), "shop:buy"),
    ("AUTH_USER_ID_CLAIM", "oid", ("auth", "user_id_claim"), "oid"),
    ("SHOPCTL_API_URL", "https://api.shop", ("shopctl", "api_url"), "https://api.shop"),
    ("SHOPCTL_TOKEN", "eyJ.token", ("shopctl", "token"), "eyJ.token"),
    ("SHOPCTL_TOKEN_FILE", "/run/token", ("shopctl", "token_file"), Path("/run/token")),
    ("SHOPCTL_CLIENT_ID", "ops-cli", ("shopctl", "client_id"), "ops-cli"),
    ("SHOPCTL_CLIENT_SECRET", "cli-secret", ("shopctl", "client_secret"), "cli-secret"),
    ("SHOPCTL_TOKEN_URL", "https://id/token", ("shopctl", "token_url"), "https://id/token"),
    ("SHOPCTL_SCOPE", "api://x/.default", ("shopctl", "scope"), "api://x/.default"),
    ("PSP_URL", "http://psp:9000", ("psp", "url"), "http://psp:9000"),
    ("PSP_TIMEOUT_S", "2.5", ("psp", "timeout_s"), 2.5),
    ("STRIPE_API_BASE", "https://api.stripe.com", ("stripe", "api_base"), "https://api.stripe.com"),
    ("STRIPE_API_KEY", "sk_test_abc", ("stripe", "api_key"), "sk_test_abc"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_new", ("stripe", "webhook_secret"), "whsec_new"),
    (
        "STRIPE_WEBHOOK_SECRET_PREVIOUS",
        "whsec_old",
        ("stripe", "webhook_secret_previous"),
        "whsec_old",
    ),
    ("STRIPE_TIMEOUT_S", "4", ("stripe", "timeout_s"), 4.0),
    ("STRIPE_RETURN_URL", "https://shop/back", ("stripe", "return_url"), "https://shop/back"),
    ("TAX_PROVIDER", "stripe", ("tax", "provider"), "stripe"),
    ("TAX_ON_FAILURE", "open", ("tax", "on_failure"), "open"),
    ("TAX_DEFAULT_CODE", "txcd_30011000", ("tax", "default_code"), "txcd_30011000"),
    ("TAX_MAX_ATTEMPTS", "5", ("tax", "max_attempts"), 5),
    ("WORKER_REPLICAS", "3", ("worker", "replicas"), 3),
    ("TEMPORAL_API_KEY", "tmprl-key", ("temporal", "api_key"), "tmprl-key"),
    (
        "TEMPORAL_PAYLOAD_KEYS",
        "k1:a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
        ("temporal", "payload_keys"),
        "k1:a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
    ),
    ("EASYPOST_API_BASE", "http://ep:9100/v2", ("easypost", "api_base"), "http://ep:9100/v2"),
    ("EASYPOST_WEBHOOK_SECRET", "ep-secret", ("easypost", "webhook_secret"), "ep-secret"),
    ("EASYPOST_TIMEOUT_S", "4", ("easypost", "timeout_s"), 4),
    ("EASYPOST_API_KEY", "EZAKlive", ("easypost", "api_key"), "EZAKlive"),
    (
        "EASYPOST_WEBHOOK_SECRET_PREVIOUS",
        "ep-old",
        ("easypost", "webhook_secret_previous"),
        "ep-old",
    ),
    ("SHIPPING_FROM_ADDRESS", '{"zip": "10001"}', ("shipping", "from_address"), {"zip": "10001"}),
    ("SHIPPING_QUOTE_TTL_S", "60", ("shipping", "quote_ttl_s"), 60),
    ("WORKER_MAX_CONCURRENT_ACTIVITIES", "7", ("worker", "max_concurrent_activities"), 7),
    ("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "8", ("worker", "max_concurrent_workflow_tasks"), 8),
    (
        "WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES",
        "9",
        ("worker", "max_concurrent_local_activities"),
        9,
    ),
    ("WORKER_SHUTDOWN_GRACE_S", "4.5", ("worker", "shutdown_grace_s"), 4.5),
    ("WORKER_METRICS_PORT", "9300", ("worker", "metrics_port"), 9300),
    ("WORKER_METRICS_BASE_PORT", "9400", ("worker", "metrics_base_port"), 9400),
    ("WORKER_METRICS_HOST", "0.0.0.0", ("worker", "metrics_host"), "0.0.0.0"),
    ("INVENTORY_SWEEP_INTERVAL_S", "12", ("inventory", "sweep_interval_s"), 12.0),
    ("RELAY_ENABLED", "false", ("relay", "enabled"), False),
    ("RELAY_PARTITIONS", "64", ("relay", "partitions"), 64),
    ("RELAY_POLL_INTERVAL_S", "0.25", ("relay", "poll_interval_s"), 0.25),
    ("RELAY_RETENTION", "PT2H", ("relay", "retention"), timedelta(hours=2)),
    ("CONSUMER_MAX_DELIVER", "4", ("consumer", "max_deliver"), 4),
    ("CONSUMER_INBOX_RETENTION", "P2D", ("consumer", "inbox_retention"), timedelta(days=2)),
    ("STRIPE_WEBHOOK_RETENTION", "P14D", ("stripe", "webhook_retention"), timedelta(days=14)),
    ("TEMPORAL_TLS_CERT", "/tls/client.pem", ("temporal", "tls_cert"), Path("/tls/client.pem")),
    ("TEMPORAL_TLS_KEY", "/tls/client.key", ("temporal", "tls_key"), Path("/tls/client.key")),
    ("TEMPORAL_TLS_CA", "/tls/ca.pem", ("temporal", "tls_ca"), Path("/tls/ca.pem")),
    ("WORKER_PRUNE_INTERVAL_S", "600", ("worker", "prune_interval_s"), 600.0),
    ("WORKER_VERSIONING", "true", ("worker", "versioning"), True),
    ("WORKER_DEPLOYMENT_NAME", "shop", ("worker", "deployment_name"), "shop"),
    ("WORKER_BUILD_ID", "2026.2.0", ("worker", "build_id"), "2026.2.0"),
    ("DB_BUDGET_CHECK", "warn", ("database", "budget_check"), "warn"),
    ("DB_FLEET_CONNECTIONS", "825", ("database", "fleet_connections"), 825),
    (
        "OPS_STEP_DEADLINES_S",
        '{"reserve_inventory": 30}',
        ("ops", "step_deadlines_s"),
        {"reserve_inventory": 30.0},
    ),
    ("OPS_DEFAULT_STEP_DEADLINE_S", "90", ("ops", "default_step_deadline_s"), 90.0),
    ("OPS_STUCK_ATTEMPT", "6", ("ops", "stuck_attempt"), 6),
    ("TRACING_ENABLED", "true", ("tracing", "enabled"), True),
    (
        "TRACING_OTLP_ENDPOINT",
        "http://otel:4318/v1/traces",
        ("tracing", "otlp_endpoint"),
        "http://otel:4318/v1/traces",
    ),
    ("LOG_FORMAT", "json", ("log", "format"), "json"),
    ("LOG_LEVEL", "DEBUG", ("log", "level"), "DEBUG"),
    ("CHECKOUT_PAYMENT_TIMEOUT", "PT5M", ("checkout", "payment_timeout"), timedelta(minutes=5)),
    ("CHECKOUT_PAYMENT_RECHECK_S", "7", ("checkout", "payment_recheck_s"), 7),
    ("CHECKOUT_RATE_PER_MINUTE", "3", ("checkout", "rate_per_minute"), 3),
    ("RETURN_WINDOW_DAYS", "14", ("returns", "window_days"), 14),
    ("RETURN_AUTO_APPROVE", "true", ("returns", "auto_approve"), True),
    ("RETURN_SHIP_BACK_DAYS", "10", ("returns", "ship_back_days"), 10),
]
NAMES = [name for name, *_ in VARIABLES]


def _at(settings: Settings, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for key in path:
        value = value.get(key) if isinstance(value, dict) else getattr(value, key)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _fields() -> set[tuple[str, ...]]:
    """Every path to a single setting, `database.domain_urls` counting once per domain."""
    paths: set[tuple[str, ...]] = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if not (isinstance(group, type) and issubclass(group, BaseModel)):
            paths.add((name,))
            continue
        for sub in group.model_fields:
            if (name, sub) == ("database", "domain_urls"):
                paths.update(("database", "domain_urls", d) for d in DOMAINS)
            else:
                paths.add((name, sub))
    return paths


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session fixtures point the environment at the test services; these tests read defaults.
    for name in [*NAMES, "LOG", "DATABASE"]:
        monkeypatch.delenv(name, raising=False)


def test_every_setting_has_a_variable_and_is_checked_here() -> None:
    assert {path for _, _, path, _ in VARIABLES} == _fields()
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize(("name", "raw", "path", "expected"), VARIABLES, ids=NAMES)
def test_each_variable_fills_its_field(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, path: tuple[str, ...], expected: Any
) -> None:
    before = _at(Settings(), path)
    monkeypatch.setenv(name, raw)
    assert before != expected, "the test value must differ from the default"
    assert _at(Settings(), path) == expected


def test_all_variables_at_once_each_reach_their_own_field(monkeypatch: pytest.MonkeyPatch) -> None:
    # Variables of different groups share first words (CHECKOUT_DATABASE_URL, CHECKOUT_*).
    for name, raw, _, _ in VARIABLES:
        monkeypatch.setenv(name, raw)
    settings = Settings()
    assert {name: _at(settings, path) for name, _, path, _ in VARIABLES} == {
        name: expected for name, _, _, expected in VARIABLES
    }


def test_the_readme_documents_only_variables_that_are_read() -> None:
    text = README.read_text(encoding="utf-8").split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented: set[str] = set()
    for row in re.findall(r"^\| (.+?) \|", text, flags=re.MULTILINE):
        documented.update(re.findall(r"`([A-Z<>_]+)`", row))
    assert "<DOMAIN>_DATABASE_URL" in documented
    documented.discard("<DOMAIN>_DATABASE_URL")
    assert documented
    assert documented <= set(NAMES)


def test_a_second_spelling_does_not_override_the_documented_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the documented names of the odd variables are read: DB_URL is not DATABASE_URL, and
    # DATABASE_POOL_SIZE (which the nested reading would also accept) loses to DB_POOL_SIZE.
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432")
    monkeypatch.setenv("DB_URL", "postgresql://other-tool@elsewhere:5432")
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "9")
    settings = Settings()
    assert settings.database.url == "postgresql://app@db:5432"
    assert settings.database.pool_size == 7


def test_a_variable_named_like_a_group_is_not_read_as_the_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set for some other tool: neither breaks the settings nor replaces the group wholesale.
    monkeypatch.setenv("LOG", "/var/log/other-tool")
    monkeypatch.setenv("DATABASE", '{"url": "postgresql://json@elsewhere"}')
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert settings.log.level == "DEBUG"
    assert settings.database.url == DEFAULT_DATABASE_URL


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert (
        settings.domain_database_url("payments") == "postgresql://postgres@127.0.0.1:54329/payments"
    )
    assert settings.temporal.address == "127.0.0.1:7233"
    assert settings.temporal.namespace == "default"
    assert settings.nats.url == "nats://127.0.0.1:4222"
    assert settings.api.port == 8000
    assert settings.psp.url == "http://127.0.0.1:8100"
    assert settings.data_dir == Path(".data")
    assert settings.stripe.webhook_secret.get_secret_value() == DEV_STRIPE_WEBHOOK_SECRET
    assert settings.stripe.api_key.get_secret_value().startswith("sk_test_")
    assert settings.stripe.api_base == settings.psp.url
    assert settings.checkout.payment_timeout.total_seconds() == 15 * 60


def test_easypost_is_the_sandbox_in_dev_and_easypost_itself_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSP_URL", "http://psp:9000/")
    assert Settings().easypost.api_base == "http://psp:9000/v2"
    assert Settings(psp={"url": "http://other:1"}).easypost.api_base == "http://other:1/v2"
    monkeypatch.setenv("EASYPOST_API_BASE", "http://ep:9100/v2")
    assert Settings().easypost.api_base == "http://ep:9100/v2"
    monkeypatch.delenv("EASYPOST_API_BASE")
    monkeypatch.setenv("ENV", "production")
    assert Settings().easypost.api_base == "https://api.easypost.com/v2"


def test_stripe_is_the_sandbox_in_dev_and_stripe_itself_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSP_URL", "http://psp:9000")
    assert Settings().stripe.api_base == "http://psp:9000"
    monkeypatch.setenv("ENV", "production")
    assert Settings().stripe.api_base == "https://api.stripe.com"
    monkeypatch.setenv("STRIPE_API_BASE", "https://stripe-proxy.internal")
    assert Settings().stripe.api_base == "https://stripe-proxy.internal"


def test_each_domain_gets_its_own_database_on_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://app:s3cret@db.internal:5432/ignored?sslmode=require"
    )
    settings = Settings()
    urls = {d: settings.domain_database_url(d) for d in DOMAINS}
    assert urls["orders"] == "postgresql://app:s3cret@db.internal:5432/orders?sslmode=require"
    assert len(set(urls.values())) == len(DOMAINS)


def test_a_domain_url_overrides_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_DATABASE_URL", "postgresql://pay@vault-db:6432/pay_ledger")
    settings = Settings()
    assert settings.domain_database_url("payments") == "postgresql://pay@vault-db:6432/pay_ledger"
    assert settings.domain_database_url("orders").endswith("127.0.0.1:54329/orders")


def test_unknown_domain_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Settings().domain_database_url("billing")
    with pytest.raises(ConfigurationError):
        Settings(database={"domain_urls": {"billing": "postgresql://h/billing"}})


# --- each process needs only its own secrets ------------------------------------------------

REAL_PAYLOAD_KEYS = "2026-06:cmVhbC1wYXlsb2FkLWtleS1mcm9tLXRoZS12YXVsdCE="
# A real value of each secret a process may need in production.
REAL_SECRETS = {
    "AUTH_JWT_SECRET": "a-real-secret-from-the-vault-0123456789",
    "STRIPE_API_KEY": "rk_live_from_the_vault",
    "STRIPE_WEBHOOK_SECRET": "whsec_from_the_vault",
    "EASYPOST_API_KEY": "EZAKfromthevault",
    "EASYPOST_WEBHOOK_SECRET": "easypost-secret-from-the-vault",
    "TEMPORAL_PAYLOAD_KEYS": REAL_PAYLOAD_KEYS,
}
# The documented development value of each: public, refused in production where it is needed.
DEV_SECRETS = {
    "AUTH_JWT_SECRET": DEV_JWT_SECRET,
    "STRIPE_API_KEY": DEV_STRIPE_API_KEY,
    "STRIPE_WEBHOOK_SECRET": DEV_STRIPE_WEBHOOK_SECRET,
    "EASYPOST_API_KEY": DEV_EASYPOST_API_KEY,
    "EASYPOST_WEBHOOK_SECRET": DEV_EASYPOST_WEBHOOK_SECRET,
    "TEMPORAL_PAYLOAD_KEYS": DEV_TEMPORAL_PAYLOAD_KEYS,
}
# Each kind of process and the secrets it needs in production, written out by hand: the tables
# in kit/settings.py must say the same.
ROLES: dict[str, tuple[ProcessRole, set[str]]] = {
    "api": (
        ProcessRole("api"),
        {
            "AUTH_JWT_SECRET",
            "STRIPE_WEBHOOK_SECRET",
            "EASYPOST_API_KEY",
            "EASYPOST_WEBHOOK_SECRET",
            "TEMPORAL_PAYLOAD_KEYS",
        },
    ),
    "worker:payments": (
        ProcessRole("worker", ("payments",)),
        {"STRIPE_API_KEY", "TEMPORAL_PAYLOAD_KEYS"},
    ),
    "worker:shipping": (
        ProcessRole("worker", ("shipping",)),
        {"EASYPOST_API_KEY", "TEMPORAL_PAYLOAD_KEYS"},
    ),
    "worker:cart": (ProcessRole("worker", ("cart",)), {"TEMPORAL_PAYLOAD_KEYS"}),
    "worker:checkout,orders": (
        ProcessRole("worker", ("checkout", "orders")),
        {"TEMPORAL_PAYLOAD_KEYS"},
    ),
    "relay:payments": (ProcessRole("relay", ("payments",)), set()),
    "migrate": (ProcessRole("migrate"), set()),
    "shopctl": (ProcessRole("shopctl"), set()),
}
OWN_SECRETS = [
    pytest.param(role, variable, id=f"{name}-{variable}")
    for name, (role, needed) in ROLES.items()
    for variable in sorted(needed)
]


def _production(monkeypatch: pytest.MonkeyPatch, secrets: Iterable[str]) -> None:
    """ENV=production with a real value of `secrets` and no other secret set (their development
    defaults apply), as the manifests give a process only what it uses."""
    for name in secret_settings():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("STRIPE_RETURN_URL", "https://shop.example/checkout/return")  # the ConfigMap
    for name in secrets:
        monkeypatch.setenv(name, REAL_SECRETS[name])


def secret_settings() -> set[str]:
    """The variables of every SecretStr setting."""
    names = set()
    for group, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, Group):
            for name, sub in field.annotation.model_fields.items():
                if SecretStr in (sub.annotation, *get_args(sub.annotation)):
                    names.add(f"{group}_{name}".upper())
    return names


def test_the_tables_name_secret_settings_and_each_role_needs_what_it_should() -> None:
    secrets = secret_settings()
    assert set(PRODUCTION_CHECKS) <= secrets
    for used in (*SECRETS_BY_KIND.values(), *SECRETS_BY_WORKER_DOMAIN.values()):
        assert used <= secrets
    for name, (role, needed) in ROLES.items():
        assert role.secrets() & set(PRODUCTION_CHECKS) == needed, name
        assert str(role) == name
    # Every secret the platform checks is needed by some process.
    assert set(PRODUCTION_CHECKS) == set().union(*(needed for _, needed in ROLES.values()))


@pytest.mark.parametrize("name", ROLES)
def test_each_role_starts_in_production_with_exactly_its_own_secrets(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    role, needed = ROLES[name]
    _production(monkeypatch, needed)
    assert Settings().validate_for(role).env == "production"
    # The secrets it never reads may even be set to the public development values.
    for variable in set(DEV_SECRETS) - needed:
        monkeypatch.setenv(variable, DEV_SECRETS[variable])
    assert Settings().validate_for(role).env == "production"


@pytest.mark.parametrize(("role", "variable"), OWN_SECRETS)
def test_a_role_refuses_each_of_its_own_secrets_missing_or_a_development_default(
    monkeypatch: pytest.MonkeyPatch, role: ProcessRole, variable: str
) -> None:
    needed = ROLES[str(role)][1]
    _production(monkeypatch, needed - {variable})  # unset: the development default, refused
    with pytest.raises(ConfigurationError, match=f"{role} process: .*{variable}"):
        Settings().validate_for(role)
    monkeypatch.setenv(variable, DEV_SECRETS[variable])  # the documented dev value: refused too
    with pytest.raises(ConfigurationError, match=variable):
        Settings().validate_for(role)
    monkeypatch.setenv(variable, REAL_SECRETS[variable])
    assert Settings().validate_for(role).env == "production"


def test_a_refusal_names_every_secret_that_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch, [])
    with pytest.raises(ConfigurationError) as refused:
        Settings().validate_for(ProcessRole("api"))
    for variable in ROLES["api"][1]:
        assert variable in str(refused.value)
    assert "STRIPE_API_KEY" not in str(refused.value)


def test_development_checks_no_secret() -> None:
    for role in (*(role for role, _ in ROLES.values()), ProcessRole("sandbox")):
        assert Settings(env="dev").validate_for(role).env == "dev"
        assert Settings(env="test").validate_for(role).env == "test"


def test_the_sandbox_never_runs_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch, REAL_SECRETS)
    with pytest.raises(ConfigurationError, match=r"sandbox .*refused when ENV=production"):
        Settings().validate_for(ProcessRole("sandbox"))


def test_production_payload_keys_must_not_hold_the_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = ProcessRole("worker", ("cart",))
    _production(monkeypatch, ["TEMPORAL_PAYLOAD_KEYS"])
    # Kept for decryption only, the public key is refused as well.
    monkeypatch.setenv("TEMPORAL_PAYLOAD_KEYS", f"{REAL_PAYLOAD_KEYS},{DEV_TEMPORAL_PAYLOAD_KEYS}")
    with pytest.raises(ConfigurationError, match="development key"):
        Settings().validate_for(worker)


@pytest.mark.parametrize(
    ("kind", "domains", "complaint"),
    [
        ("worker", (), "at least one domain"),
        ("worker", ("billing",), "unknown domains"),
        ("relay", ("cart", "billing"), "unknown domains"),
        ("migrate", ("cart",), "serves no domain"),
        ("api", ("cart",), "serves no domain"),
    ],
)
def test_a_role_names_real_domains_where_it_has_any(
    kind: ProcessKind, domains: tuple[str, ...], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        ProcessRole(kind, domains)


def test_only_a_worker_serving_payments_reads_the_stripe_key() -> None:
    assert "STRIPE_API_KEY" in ProcessRole("worker", ("cart", "payments")).secrets()
    assert "STRIPE_API_KEY" not in ProcessRole("worker", ("cart",)).secrets()
    assert "STRIPE_API_KEY" not in ProcessRole("relay", ("payments",)).secrets()
    assert ProcessRole("migrate").secrets() == frozenset()


PAYMENTS_WORKER = ProcessRole("worker", ("payments",))


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ("sk_live_from_the_vault", True),
        ("rk_live_from_the_vault", True),
        ("sk_test_from_the_vault", False),
        ("rk_test_from_the_vault", False),
        ("pk_live_publishable", False),
        ("from_the_vault", False),
    ],
)
def test_production_takes_only_live_stripe_keys(
    monkeypatch: pytest.MonkeyPatch, key: str, accepted: bool
) -> None:
    _production(monkeypatch, ROLES["worker:payments"][1])
    monkeypatch.setenv("STRIPE_API_KEY", key)
    if accepted:
        settings = Settings().validate_for(PAYMENTS_WORKER)
        assert settings.stripe.api_key.get_secret_value() == key
    else:
        with pytest.raises(ConfigurationError, match="STRIPE_API_KEY must be a live key"):
            Settings().validate_for(PAYMENTS_WORKER)


@pytest.mark.parametrize("env", ["dev", "test"])
@pytest.mark.parametrize("key", ["sk_live_real_money", "rk_live_real_money"])
def test_a_live_stripe_key_is_refused_outside_production(
    monkeypatch: pytest.MonkeyPatch, env: str, key: str
) -> None:
    monkeypatch.setenv("ENV", env)
    monkeypatch.setenv("STRIPE_API_KEY", key)
    with pytest.raises(ConfigurationError, match=f"live key: refused unless ENV=production.*{env}"):
        Settings()  # in every process, whether it calls Stripe or not
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_restricted")
    assert Settings().env == env


@pytest.mark.parametrize("url", [None, "", "http://shop.example/back", "shop.example/back"])
def test_production_needs_an_https_return_url_where_stripe_is_called(
    monkeypatch: pytest.MonkeyPatch, url: str | None
) -> None:
    _production(monkeypatch, ROLES["worker:payments"][1])
    if url is None:
        monkeypatch.delenv("STRIPE_RETURN_URL")
    else:
        monkeypatch.setenv("STRIPE_RETURN_URL", url)
    with pytest.raises(ConfigurationError, match="STRIPE_RETURN_URL must be an https"):
        Settings().validate_for(PAYMENTS_WORKER)
    # A process that never calls Stripe needs no return URL.
    assert Settings().validate_for(ProcessRole("worker", ("cart",))).env == "production"


def test_production_refuses_dev_secrets_given_in_code() -> None:
    with pytest.raises(ConfigurationError, match="AUTH_JWT_SECRET"):
        Settings(env="production").validate_for(ProcessRole("api"))


def test_issuer_urls_are_https_in_every_production_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _production(monkeypatch, [])
    monkeypatch.setenv("AUTH_ISSUER", "http://id.example.test")
    with pytest.raises(ConfigurationError, match="AUTH_ISSUER must be an https"):
        Settings()


# --- entry points check their own role ----------------------------------------------------------


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """`get_settings()` read anew from the environment a test sets, and forgotten after it."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
def test_a_worker_refuses_to_start_without_its_own_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _production(monkeypatch, ["TEMPORAL_PAYLOAD_KEYS"])  # no Stripe key
    with pytest.raises(ConfigurationError, match="worker:payments process: STRIPE_API_KEY"):
        workers_main(["payments"])
    get_settings.cache_clear()
    monkeypatch.delenv("TEMPORAL_PAYLOAD_KEYS")
    with pytest.raises(ConfigurationError, match="worker:cart process: TEMPORAL_PAYLOAD_KEYS"):
        workers_main(["cart"])


@pytest.mark.usefixtures("fresh_settings")
def test_the_api_refuses_to_start_without_its_own_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _production(monkeypatch, ROLES["api"][1] - {"STRIPE_WEBHOOK_SECRET"})
    with pytest.raises(ConfigurationError, match="api process: STRIPE_WEBHOOK_SECRET"):
        create_app()
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", REAL_SECRETS["STRIPE_WEBHOOK_SECRET"])
    get_settings.cache_clear()
    assert create_app().title


def test_secrets_do_not_leak_into_reprs() -> None:
    text = repr(Settings())
    for secret in (
        DEV_JWT_SECRET,
        DEV_STRIPE_API_KEY,
        DEV_STRIPE_WEBHOOK_SECRET,
        DEV_EASYPOST_API_KEY,
        DEV_EASYPOST_WEBHOOK_SECRET,
    ):
        assert secret not in text


def test_async_driver_url() -> None:
    assert async_driver_url("postgresql://u@h:1/d") == "postgresql+asyncpg://u@h:1/d"
    assert async_driver_url("postgres+psycopg://u@h/d") == "postgresql+asyncpg://u@h/d"
    with pytest.raises(ConfigurationError):
        async_driver_url("mysql://u@h/d")


def test_explicit_means_given_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432")
    monkeypatch.setenv("DB_POOL_SIZE", "9")
    settings = Settings()
    assert settings.is_explicit("database.url")
    assert settings.is_explicit("database.pool_size")
    assert not settings.is_explicit("database.max_overflow")
    assert not settings.is_explicit("temporal.address")
    assert not settings.is_explicit("env")


def test_embedded_services_are_started_unless_their_url_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://broker:4222")
    settings = Settings()
    assert settings.starts_embedded("postgres")
    assert not settings.starts_embedded("nats")
    monkeypatch.setenv("EMBEDDED_SERVICES", "nats")
    forced = Settings()
    assert forced.starts_embedded("nats")
    assert not forced.starts_embedded("postgres")


def test_updated_replaces_only_the_named_fields() -> None:
    settings = Settings()
    copy = settings.updated(api={"port": 8001}, data_dir=Path("/tmp/x"))
    assert (copy.api.port, copy.api.host, copy.data_dir) == (
        8001,
        settings.api.host,
        Path("/tmp/x"),
    )
    assert settings.api.port == 8000  # the original is untouched
    with pytest.raises(AttributeError):
        settings.updated(api_port=8001)
    with pytest.raises(AttributeError):
        settings.updated(api={"prot": 8001})


def test_groups_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.api.port = 1  # type: ignore[misc]
    assert all(
        issubclass(field.annotation, Group)
        for field in Settings.model_fields.values()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    )


def test_the_sandbox_settings_are_not_the_platforms(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not [name for name in Settings.model_fields if name.startswith("sandbox")]
    monkeypatch.setenv("SANDBOX_WEBHOOK_URL", "http://api:8000/hook")
    monkeypatch.setenv("SANDBOX_CARRIER_STEP_S", "0.5")
    assert "http://api:8000/hook" not in str(Settings().model_dump())
    sandbox = SandboxSettings()
    assert (sandbox.webhook_url, sandbox.carrier_step_s) == ("http://api:8000/hook", 0.5)
    assert sandbox.is_explicit("webhook_url")
    assert not sandbox.is_explicit("db_path")


def test_the_sandbox_takes_test_mode_restricted_keys_with_known_permission_shapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANDBOX_RESTRICTED_KEYS", '{"rk_test_a": ["payment_intent_write"]}')
    assert SandboxSettings().restricted_keys == {"rk_test_a": ["payment_intent_write"]}
    for wrong in ('{"rk_live_a": []}', '{"sk_test_a": []}', '{"rk_test_a": ["refunds"]}'):
        monkeypatch.setenv("SANDBOX_RESTRICTED_KEYS", wrong)
        with pytest.raises(ValueError, match=r"rk_test_ keys only|_read or"):
            SandboxSettings()
    monkeypatch.setenv("SANDBOX_IDEMPOTENCY_TTL_S", "0")
    monkeypatch.delenv("SANDBOX_RESTRICTED_KEYS")
    with pytest.raises(ValueError, match="idempotency_ttl_s"):
        SandboxSettings()
