"""The session's Temporal and NATS are the real thing, configured as the platform expects."""

from __future__ import annotations

import nats as nats_client
from temporalio.client import Client

from tests.conftest import Service

CONTRACT_SEARCH_ATTRIBUTES = {"CheckoutStatus", "CheckoutStep", "OrderNumber", "CustomerId"}


async def test_temporal_knows_the_search_attributes(temporal: Service) -> None:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    client = await Client.connect(temporal.url, namespace="default")
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(response.custom_attributes) >= CONTRACT_SEARCH_ATTRIBUTES
    assert all(
        response.custom_attributes[name] == 2 for name in CONTRACT_SEARCH_ATTRIBUTES
    )  # KEYWORD


async def test_nats_has_jetstream(nats: Service) -> None:
    connection = await nats_client.connect(nats.url)
    try:
        info = await connection.jetstream().account_info()
        assert info.limits is not None
    finally:
        await connection.close()
