"""Settings follow CONTRACT.md section 2."""

from __future__ import annotations

import pytest

from kit.settings import (
    DEV_JWT_SECRET,
    DOMAINS,
    ConfigurationError,
    Settings,
    async_driver_url,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session fixtures point the environment at the test services; these tests read defaults.
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert (
        settings.domain_database_url("payments") == "postgresql://postgres@127.0.0.1:54329/payments"
    )
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.temporal_namespace == "default"
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.api_port == 8000
    assert settings.psp_url == "http://127.0.0.1:8100"
    assert settings.payment_webhook_secret.get_secret_value().startswith("whsec_")
    assert settings.checkout_payment_timeout.total_seconds() == 15 * 60


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


def test_production_refuses_the_development_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "production")
    with pytest.raises(ConfigurationError, match="AUTH_JWT_SECRET"):
        Settings()
    monkeypatch.setenv("AUTH_JWT_SECRET", "a-real-secret-from-the-vault-0123456789")
    with pytest.raises(ConfigurationError, match="PAYMENT_WEBHOOK_SECRET"):
        Settings()
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", "whsec_cmVhbC1zZWNyZXQ=")
    with pytest.raises(ConfigurationError, match="CARRIER_WEBHOOK_SECRET"):
        Settings()
    monkeypatch.setenv("CARRIER_WEBHOOK_SECRET", "whsec_Y2Fycmllci1zZWNyZXQ=")
    assert Settings().auth_jwt_secret.get_secret_value() != DEV_JWT_SECRET


def test_secrets_do_not_leak_into_reprs() -> None:
    assert DEV_JWT_SECRET not in repr(Settings())


def test_async_driver_url() -> None:
    assert async_driver_url("postgresql://u@h:1/d") == "postgresql+asyncpg://u@h:1/d"
    assert async_driver_url("postgres+psycopg://u@h/d") == "postgresql+asyncpg://u@h/d"
    with pytest.raises(ConfigurationError):
        async_driver_url("mysql://u@h/d")


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
