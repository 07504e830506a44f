"""Streams as the relays declare them: created with limits when missing, and an existing stream's
configuration (replicas, limits: the operator's) never reset, only its missing subjects added."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import nats as nats_client
import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from kit.relay import StreamLimits, ensure_stream
from kit.subjects import stream_name
from tests.conftest import Service

pytestmark = pytest.mark.timeout(60)

GIB = 1 << 30


@pytest.fixture
async def js(nats: Service) -> AsyncIterator[JetStreamContext]:
    connection = await nats_client.connect(nats.url)
    yield connection.jetstream()
    await connection.close()


@pytest.fixture
async def domain(js: JetStreamContext) -> AsyncIterator[str]:
    """A domain of its own: nothing else declares its stream."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    await js.delete_stream(stream_name(name))


async def test_a_missing_stream_is_created_with_the_limits(
    js: JetStreamContext, domain: str
) -> None:
    limits = StreamLimits(max_age=timedelta(days=3), max_bytes=GIB, discard=DiscardPolicy.NEW)

    await ensure_stream(js, domain, limits)

    config = (await js.stream_info(stream_name(domain))).config
    assert config.subjects == [f"{domain}.>"]
    assert (config.retention, config.storage) == (RetentionPolicy.LIMITS, StorageType.FILE)
    assert config.num_replicas == 1
    assert config.max_age == timedelta(days=3).total_seconds()
    assert (config.max_bytes, config.discard) == (GIB, DiscardPolicy.NEW)
    assert config.duplicate_window == timedelta(minutes=10).total_seconds()


async def test_an_existing_stream_keeps_what_the_operator_set(
    js: JetStreamContext, domain: str
) -> None:
    await ensure_stream(js, domain)
    edited = (await js.stream_info(stream_name(domain))).config
    edited.max_age = timedelta(days=7).total_seconds()
    edited.max_bytes = GIB
    edited.max_msgs = 1000
    edited.duplicate_window = timedelta(minutes=30).total_seconds()
    await js.update_stream(edited)  # `nats stream edit`

    await ensure_stream(js, domain)  # a relay (re)starting, with other limits
    await ensure_stream(js, domain, StreamLimits(max_age=timedelta(days=1)))

    config = (await js.stream_info(stream_name(domain))).config
    assert config.max_age == timedelta(days=7).total_seconds()
    assert (config.max_bytes, config.max_msgs) == (GIB, 1000)
    assert config.duplicate_window == timedelta(minutes=30).total_seconds()


async def test_an_existing_stream_without_the_domains_subjects_gets_them_and_nothing_else(
    js: JetStreamContext, domain: str
) -> None:
    legacy = f"legacy{domain}.>"
    await js.add_stream(
        StreamConfig(name=stream_name(domain), subjects=[legacy], max_bytes=GIB, max_msgs=500)
    )

    await ensure_stream(js, domain)

    config = (await js.stream_info(stream_name(domain))).config
    assert config.subjects == [legacy, f"{domain}.>"]
    assert (config.max_bytes, config.max_msgs) == (GIB, 500)
