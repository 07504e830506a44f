"""A consumer at rest: one pull request waits on the server, returns at the first event, and the
event is applied exactly once; nothing is asked of NATS or the database in between."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats as nats_client
import pytest
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession

from kit.consumer import EventConsumer, Reactions
from kit.db import DomainDatabase
from kit.relay import ensure_stream
from kit.subjects import EventName
from tests.conftest import Service
from tests.kit.test_consumer import Tick, _envelope

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def js(nats: Service) -> AsyncIterator[JetStreamContext]:
    connection = await nats_client.connect(nats.url)
    yield connection.jetstream()
    await connection.close()


@pytest.fixture
async def name(js: JetStreamContext) -> AsyncIterator[EventName]:
    """An event on a stream of its own: nothing else publishes or consumes there."""
    domain = f"t{uuid.uuid4().hex[:10]}"
    event = EventName(domain, "tick", "tick.happened")
    await ensure_stream(js, domain)
    yield event
    await js.delete_stream(event.stream)


async def _until(condition: Callable[[], Any], timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_waiting_consumer_takes_an_event_at_once_and_applies_it_once(
    js: JetStreamContext,
    name: EventName,
    databases: dict[str, DomainDatabase],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetches: list[float] = []
    fetch = JetStreamContext.PullSubscription.fetch

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        fetches.append(kwargs["timeout"])
        return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", counted)
    seen: list[int] = []
    woken: list[int] = []
    reactions = Reactions()

    @reactions.on(name, Tick)
    async def record(session: AsyncSession, event: Tick) -> None:
        seen.append(event.n)

    # A pull request that waits an hour: the event can only arrive through the waiting one.
    consumer = EventConsumer(
        f"test-{name.domain}",
        databases["notifications"],
        js,
        reactions,
        fetch_wait_s=3600.0,
        on_applied=lambda: woken.append(1),
    )
    durable = f"{consumer.name}-{name.stream}"
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:

        async def waiting() -> bool:
            try:
                return (await js.consumer_info(name.stream, durable)).num_waiting >= 1
            except nats_client.js.errors.NotFoundError:
                return False

        await _until(waiting)
        assert len(fetches) == 1
        event_id = uuid.uuid4()
        # The relay published it twice (a crash before the mark, after the broker's window).
        for _ in range(2):
            await js.publish(name.subject, _envelope(name, {"n": 1}, event_id))

        async def settled() -> bool:
            info = await js.consumer_info(name.stream, durable)
            return bool(seen) and (info.num_pending, info.num_ack_pending) == (0, 0)

        await _until(settled)
    finally:
        stop.set()
        await running  # returns at once: the waiting pull request is abandoned

    assert seen == [1]
    assert woken == [1]  # told once: the redelivery changed nothing
    assert len(fetches) <= 3  # the waiting request, and the one or two after the events
    assert all(timeout == 3600.0 for timeout in fetches)
