"""Event consumers against real NATS JetStream and PostgreSQL: typed reactions, applied once,
events that cannot be read terminated and counted instead of redelivered forever."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import nats as nats_client
import pytest
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from kit.consumer import Envelope, EventConsumer, InvalidEvent, NotYet, Reactions, Subscription
from kit.db import DomainDatabase
from kit.relay import ensure_stream
from kit.subjects import EventName
from tests.conftest import Service

pytestmark = pytest.mark.timeout(60)


class Tick(BaseModel):
    model_config = ConfigDict(extra="ignore")

    n: int


def _envelope(name: EventName, payload: object, event_id: uuid.UUID | None = None) -> bytes:
    """What the relay publishes."""
    return json.dumps(
        {
            "id": str(event_id or uuid.uuid4()),
            "domain": name.domain,
            "aggregate_type": name.aggregate_type,
            "aggregate_id": str(uuid.uuid4()),
            "event_type": name.event_type,
            "seq": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "headers": {},
            "payload": payload,
        }
    ).encode()


def test_subscriptions_follow_from_the_reactions_one_per_producing_domain() -> None:
    reactions = Reactions()
    names = [
        EventName("orders", "order", "order.created"),
        EventName("payments", "payment", "payment.captured"),
        EventName("orders", "order", "order.paid"),
    ]
    for name in names:
        reactions.on(name, Tick)(_noop)

    assert reactions.subscriptions() == [
        Subscription("orders", ("orders.order.order.created", "orders.order.order.paid")),
        Subscription("payments", ("payments.payment.payment.captured",)),
    ]
    assert [s.stream for s in reactions.subscriptions()] == ["DOMAIN_ORDERS", "DOMAIN_PAYMENTS"]
    with pytest.raises(ValueError, match="second reaction"):
        reactions.on(names[0], Tick)(_noop)


def test_a_payload_that_does_not_fit_its_model_is_an_invalid_event() -> None:
    name = EventName("orders", "order", "order.created")
    reactions = Reactions()
    reactions.on(name, Tick)(_noop)

    assert reactions.bind(Envelope.parse(_envelope(name, {"n": 1, "extra": "ignored"})))
    with pytest.raises(InvalidEvent, match="Tick"):
        reactions.bind(Envelope.parse(_envelope(name, {"m": 1})))
    with pytest.raises(InvalidEvent, match="envelope"):
        Envelope.parse(b'{"id": "not a uuid"}')


async def _noop(session: AsyncSession, event: Tick) -> None:
    pass


@pytest.fixture
async def js(nats: Service) -> AsyncIterator[JetStreamContext]:
    connection = await nats_client.connect(nats.url)
    yield connection.jetstream()
    await connection.close()


async def _until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_consumer_applies_typed_events_once_and_terminates_unreadable_ones(
    js: JetStreamContext, databases: dict[str, DomainDatabase]
) -> None:
    # A stream of its own: nothing else publishes or consumes here.
    domain = f"t{uuid.uuid4().hex[:10]}"
    name = EventName(domain, "tick", "tick.happened")
    await ensure_stream(js, domain)
    seen: list[int] = []
    attempts: list[int] = []
    reactions = Reactions()

    @reactions.on(name, Tick)
    async def record(session: AsyncSession, event: Tick) -> None:
        attempts.append(event.n)
        if event.n == 2 and attempts.count(2) == 1:
            raise NotYet("the first delivery of 2 comes too early")
        seen.append(event.n)

    consumer = EventConsumer(
        f"test-{domain}", databases["notifications"], js, reactions, retry_delay_s=0.1
    )
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        duplicate = uuid.uuid4()
        for data in (
            _envelope(name, {"n": 1}, duplicate),
            _envelope(name, {"m": 1}),  # the field this consumer reads is missing
            b"not json",
            _envelope(name, {"n": 2}),
            _envelope(name, {"n": 1}, duplicate),  # republished after JetStream's window
        ):
            await js.publish(name.subject, data)
        await _until(lambda: sorted(seen) == [1, 2] and consumer.rejected == 2)
        # A nak would bring the unreadable events back within 0.5 s; terminated, they stay away.
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await running

    assert sorted(seen) == [1, 2]
    assert attempts.count(2) == 2
    assert consumer.rejected == 2
    durable = f"{consumer.name}-{name.stream}"
    info = await js.consumer_info(name.stream, durable)
    assert info.num_pending == 0
    assert info.num_ack_pending == 0
    await js.delete_stream(name.stream)
