"""How the platform reaches Temporal in production: mTLS, or an API key over TLS (Cloud)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from kit.settings import ConfigurationError, TemporalSettings
from kit.temporal import tls_config


def test_the_local_dev_server_takes_plain_connections() -> None:
    assert tls_config(TemporalSettings()) is False


def test_an_api_key_brings_tls_with_the_system_roots() -> None:
    assert tls_config(TemporalSettings(api_key="tmprl-key")) is True


def test_mtls_reads_the_pem_files(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("client.pem", "client.key", "ca.pem"))
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    ca.write_bytes(b"CA")
    config = tls_config(TemporalSettings(tls_cert=cert, tls_key=key, tls_ca=ca))
    assert isinstance(config, TLSConfig)
    assert (config.client_cert, config.client_private_key) == (b"CERT", b"KEY")
    assert config.server_root_ca_cert == b"CA"
    without_ca = tls_config(TemporalSettings(tls_cert=cert, tls_key=key))
    assert isinstance(without_ca, TLSConfig)
    assert without_ca.server_root_ca_cert is None


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_bytes(b"CERT")
    with pytest.raises(ConfigurationError, match="go together"):
        tls_config(TemporalSettings(tls_cert=cert))
    with pytest.raises(ConfigurationError, match="go together"):
        tls_config(TemporalSettings(tls_key=cert))
