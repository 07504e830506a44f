"""The session's Temporal and NATS are the real thing, configured as the platform expects."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import nats as nats_client
from temporalio.client import Client

from devstack.services.temporal import DevServerConfig
from tests.conftest import Service

OPERATOR_SEARCH_ATTRIBUTES = {
    "CheckoutStatus",
    "CheckoutStep",
    "OrderNumber",
    "CustomerId",
    "ReturnStatus",
}


async def test_temporal_knows_the_search_attributes(temporal: Service) -> None:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    client = await Client.connect(temporal.url, namespace="default")
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(response.custom_attributes) >= OPERATOR_SEARCH_ATTRIBUTES
    assert all(
        response.custom_attributes[name] == 2 for name in OPERATOR_SEARCH_ATTRIBUTES
    )  # KEYWORD


async def test_nats_has_jetstream(nats: Service) -> None:
    connection = await nats_client.connect(nats.url)
    try:
        info = await connection.jetstream().account_info()
        assert info.limits is not None
    finally:
        await connection.close()


def test_the_dev_server_runs_with_its_memory_limit(temporal: Service) -> None:
    """temporal/dev-server.yml's memory_limit reaches the server as GOMEMLIMIT: without it the
    server's RSS keeps climbing for thousands of workflows (tools/devserver_memory.py)."""
    pid = temporal.process.pid
    assert pid is not None
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"GOMEMLIMIT={DevServerConfig.load().memory_limit}".encode() in environment
    unlimited = replace(DevServerConfig.load(), memory_limit=None).environment()
    assert unlimited.get("GOMEMLIMIT") == os.environ.get("GOMEMLIMIT")  # the Go default
