"""Event consumers against real NATS JetStream and PostgreSQL: typed reactions, applied once,
events that cannot be read terminated and counted instead of redelivered forever."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats as nats_client
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.consumer import (
    Envelope,
    EventConsumer,
    InvalidEvent,
    NotYet,
    Reactions,
    Subscription,
    _drift,
)
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


@pytest.fixture
async def name(js: JetStreamContext) -> AsyncIterator[EventName]:
    """An event on a stream of its own: nothing else publishes or consumes there."""
    domain = f"t{uuid.uuid4().hex[:10]}"
    event = EventName(domain, "tick", "tick.happened")
    await ensure_stream(js, domain)
    yield event
    await js.delete_stream(event.stream)


async def _consume(
    consumer: EventConsumer,
    js: JetStreamContext,
    name: EventName,
    messages: Sequence[bytes],
    done: Callable[[], bool],
) -> None:
    """Publish `messages`, run the consumer until `done` and a while longer, then check that it
    left nothing pending or unacknowledged."""
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        for data in messages:
            await js.publish(name.subject, data)
        await _until(done)
        # A nak would bring an event back within a second; terminated, it stays away.
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await running
    info = await js.consumer_info(name.stream, f"{consumer.name}-{name.stream}")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def _dead_letters(consumer: EventConsumer) -> list[Row[Any]]:
    async with consumer.db.begin() as session:
        result = await session.execute(
            text(
                "SELECT event_id, subject, reason, deliveries, error, data "
                "FROM consumer_dead_letters WHERE consumer = :c ORDER BY stream_seq"
            ),
            {"c": consumer.name},
        )
        return list(result.all())


async def test_a_consumer_applies_typed_events_once_and_terminates_unreadable_ones(
    js: JetStreamContext, name: EventName, databases: dict[str, DomainDatabase]
) -> None:
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
        f"test-{name.domain}", databases["notifications"], js, reactions, retry_delay_s=0.1
    )
    duplicate = uuid.uuid4()
    messages = [
        _envelope(name, {"n": 1}, duplicate),
        _envelope(name, {"m": 1}),  # the field this consumer reads is missing
        b"not json",
        _envelope(name, {"n": 2}),
        _envelope(name, {"n": 1}, duplicate),  # republished after JetStream's window
    ]
    await _consume(
        consumer, js, name, messages, lambda: sorted(seen) == [1, 2] and consumer.rejected == 2
    )

    assert sorted(seen) == [1, 2]
    assert attempts.count(2) == 2
    assert consumer.rejected == 2
    # Both kept for an operator, the one without a readable envelope without an event id.
    letters = await _dead_letters(consumer)
    assert [(r.reason, r.deliveries, r.event_id is None) for r in letters] == [
        ("invalid", 1, False),
        ("invalid", 1, True),
    ]
    assert letters[1].data == "not json"


async def test_an_event_whose_reaction_keeps_failing_is_dead_lettered_and_blocks_nothing(
    js: JetStreamContext, name: EventName, databases: dict[str, DomainDatabase]
) -> None:
    failures: list[int] = []
    # How often the poison had failed when the event after it was applied.
    failures_when_applied: list[int] = []
    reactions = Reactions()

    @reactions.on(name, Tick)
    async def record(session: AsyncSession, event: Tick) -> None:
        if event.n == 13:
            failures.append(event.n)
            raise RuntimeError("a bug in the reaction: no redelivery will ever apply it")
        failures_when_applied.append(len(failures))

    db = databases["notifications"]
    consumer = EventConsumer(
        f"test-{name.domain}", db, js, reactions, retry_delay_s=0.02, max_deliver=3
    )
    poison = uuid.uuid4()
    messages = [_envelope(name, {"n": 13}, poison), _envelope(name, {"n": 1})]
    await _consume(consumer, js, name, messages, lambda: consumer.rejected == 1)

    assert len(failures) == 3
    assert len(failures_when_applied) == 1
    assert failures_when_applied[0] < 3  # applied while the poison was still being retried
    letters = await _dead_letters(consumer)
    assert [(r.event_id, r.subject, r.reason, r.deliveries) for r in letters] == [
        (poison, name.subject, "failed", 3)
    ]
    assert "RuntimeError" in letters[0].error
    assert json.loads(letters[0].data)["id"] == str(poison)  # enough to replay it by hand


async def test_waiting_for_another_event_is_not_a_failure(
    js: JetStreamContext, name: EventName, databases: dict[str, DomainDatabase]
) -> None:
    """An event that came too early four times (NotYet), then met one failing transaction, is
    applied at the next delivery: only failures count toward max_deliver, not the waits."""
    attempts: list[str] = []
    reactions = Reactions()

    @reactions.on(name, Tick)
    async def record(session: AsyncSession, event: Tick) -> None:
        if len(attempts) < 4:
            attempts.append("not yet")
            raise NotYet("its order has not arrived")
        if len(attempts) == 4:
            attempts.append("failed")
            raise RuntimeError("the database went away mid-transaction")
        attempts.append("applied")

    consumer = EventConsumer(
        f"test-{name.domain}",
        databases["notifications"],
        js,
        reactions,
        retry_delay_s=0.01,
        max_deliver=3,
    )
    await _consume(consumer, js, name, [_envelope(name, {"n": 1})], lambda: "applied" in attempts)

    assert attempts == ["not yet"] * 4 + ["failed", "applied"]
    assert consumer.rejected == 0
    assert await _dead_letters(consumer) == []
    assert not consumer._retrying  # forgotten once acked


async def test_a_durable_left_by_an_earlier_release_is_updated_in_place_to_read_new_events(
    js: JetStreamContext, name: EventName, databases: dict[str, DomainDatabase]
) -> None:
    """A release that reacts to one more event finds its durable filtering on the old subjects
    only: the durable is updated where it stands, so the new event arrives, once, and the events
    it had acknowledged are not delivered again."""
    added = EventName(name.domain, name.aggregate_type, "tick.skipped")
    consumer_name = f"test-{name.domain}"
    durable = f"{consumer_name}-{name.stream}"
    # What the earlier release deployed: the durable on the first subject, its event read.
    await js.add_consumer(
        name.stream,
        ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subjects=[name.subject],
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            max_deliver=-1,
        ),
    )
    await js.publish(name.subject, _envelope(name, {"n": 1}))
    earlier = await js.pull_subscribe_bind(durable=durable, stream=name.stream)
    (read,) = await earlier.fetch(1, timeout=5)
    await read.ack_sync()
    await earlier.unsubscribe()

    seen: list[tuple[str, int]] = []
    reactions = Reactions()
    for event in (name, added):

        @reactions.on(event, Tick)
        async def record(session: AsyncSession, tick: Tick, event: EventName = event) -> None:
            seen.append((event.event_type, tick.n))

    consumer = EventConsumer(consumer_name, databases["notifications"], js, reactions)
    filtered: list[str] = []

    async def watch() -> None:
        while len(filtered) < 2:
            info = await js.consumer_info(name.stream, durable)
            filtered[:] = info.config.filter_subjects or []
            await asyncio.sleep(0.05)

    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.wait_for(watch(), timeout=20)
        await js.publish(added.subject, _envelope(added, {"n": 2}))
        await _until(lambda: bool(seen))
        await asyncio.sleep(1.5)  # a second delivery would come within this
    finally:
        stop.set()
        await running

    assert seen == [("tick.skipped", 2)]
    info = await js.consumer_info(name.stream, durable)
    assert sorted(info.config.filter_subjects or []) == sorted([name.subject, added.subject])
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    # As the server now reports it, the durable is what the consumer wants: the next start
    # leaves it alone instead of updating it again.
    wanted = ConsumerConfig(
        filter_subjects=[added.subject, name.subject],
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        max_deliver=-1,
    )
    assert _drift(info.config, wanted) == {}
    assert _drift(info.config, ConsumerConfig(filter_subjects=[name.subject])) != {}
