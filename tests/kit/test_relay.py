"""The outbox relay against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import nats as nats_client
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext
from pydantic import BaseModel
from sqlalchemy import text

from kit.db import DomainDatabase
from kit.outbox import append_event
from kit.relay import OutboxRelay, ensure_stream
from kit.settings import Settings
from tests.conftest import Service

# A domain without a worker: no relay of the test platform competes with the ones under test.
DOMAIN = "accounts"
pytestmark = pytest.mark.timeout(180)


class Tick(BaseModel):
    n: int


class Crash(Exception):
    pass


@pytest.fixture(autouse=True)
async def free_partitions(databases: dict[str, DomainDatabase]) -> None:
    """Every test starts with no relay holding a partition (earlier tests' relays never ran
    `release`)."""
    await expire_leases(databases[DOMAIN])


async def expire_leases(db: DomainDatabase, owner: str | None = None) -> None:
    """What the passing of the lease time does: the leases (of `owner`) may be taken over."""
    async with db.begin() as session:
        await session.execute(
            text(
                "UPDATE outbox_relay_leases SET expires_at = now() - interval '1 second' "
                "WHERE CAST(:owner AS text) IS NULL OR owner = :owner"
            ),
            {"owner": owner},
        )


@pytest.fixture
async def js(nats: Service) -> AsyncIterator[JetStreamContext]:
    connection = await nats_client.connect(nats.url)
    context = connection.jetstream()
    await ensure_stream(context, DOMAIN)
    yield context
    await connection.close()


def relay(
    db: DomainDatabase, js: JetStreamContext, settings: Settings, **kwargs: object
) -> OutboxRelay:
    return OutboxRelay(
        DOMAIN,
        db,
        js,
        listen_dsn=settings.domain_database_url(DOMAIN),
        **kwargs,  # type: ignore[arg-type]
    )


async def received(
    js: JetStreamContext, aggregate_type: str, expected: int
) -> list[dict[str, object]]:
    """Every message of `aggregate_type` in the stream, in stream order."""
    sub = await js.subscribe(
        f"{DOMAIN}.{aggregate_type}.>", ordered_consumer=True, deliver_policy="all"
    )
    messages: list[dict[str, object]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0 if len(messages) >= expected else 10.0)
            except nats_client.errors.TimeoutError:
                return messages
            messages.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()


async def processed(db: DomainDatabase, event_id: uuid.UUID) -> bool:
    """Whether the outbox row is marked published."""
    async with db.begin() as session:
        return bool(
            await session.scalar(
                text("SELECT processed FROM domain_outbox_events WHERE id = :id"), {"id": event_id}
            )
        )


async def test_a_rolled_back_transaction_publishes_nothing(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"rb{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]

    async def write_then_fail() -> None:
        async with db.begin() as session:
            await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=1))
            raise Crash

    with pytest.raises(Crash):
        await write_then_fail()
    async with db.begin() as session:
        await append_event(session, kind, uuid.uuid4(), "tock", Tick(n=2))

    while await relay(db, js, migrated).pass_once():
        pass

    assert [m["event_type"] for m in await received(js, kind, 1)] == ["tock"]


async def test_a_crash_between_publish_and_mark_publishes_again_and_the_broker_drops_it(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"cr{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    async with db.begin() as session:
        event_id = await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=1))

    def crash(_rows: object) -> None:
        raise Crash

    crashed = relay(db, js, migrated, before_mark=crash)
    with pytest.raises(Crash):
        await crashed.pass_once()
    assert await processed(db, event_id) is False  # published, the mark rolled back

    # The crashed relay's leases have 90 s left, but it has no LISTEN connection (it never ran
    # one here; a killed process's ends with it): its partitions are taken over at once, and the
    # event is published again.
    successor = relay(db, js, migrated)
    assert await successor.pass_once() >= 1
    messages = await received(js, kind, 1)
    assert [m["id"] for m in messages] == [str(event_id)]  # Nats-Msg-Id: stored once


class _AcksLost:
    """JetStream as a relay sees it when NATS restarts between a publish and its ack: the
    message goes out, the acknowledgement never comes back."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def publish_async(self, **message: Any) -> asyncio.Future[object]:
        await self.js.publish(**message)
        return asyncio.get_running_loop().create_future()


async def test_a_lost_ack_fails_the_pass_and_the_next_one_publishes_again(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    # A chaos run killed NATS while the orders relay awaited its acks: it waited forever in its
    # transaction, rows locked, and the orders outbox never drained again.
    kind = f"ack{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    async with db.begin() as session:
        event_id = await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=1))

    stuck = relay(db, _AcksLost(js), migrated, ack_timeout_s=0.5)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError, match="not acknowledged"):
        # Without a bound on the acks the pass never ends; 10 s makes that a failure here.
        await asyncio.wait_for(stuck.pass_once(), 10)
    assert await processed(db, event_id) is False  # rolled back: not marked nor locked

    # The same relay's next pass (acks coming back again) publishes it; the broker keeps one.
    stuck.js = js
    assert await asyncio.wait_for(stuck.pass_once(), 10) >= 1
    messages = await received(js, kind, 1)
    assert [m["id"] for m in messages] == [str(event_id)]


async def test_four_relays_keep_each_aggregates_order(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"ord{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    aggregates = [uuid.uuid4() for _ in range(100)]
    async with db.begin() as session:
        # 10,000 events, interleaved across aggregates as real traffic would be.
        await session.execute(
            text(
                """
                INSERT INTO domain_outbox_events
                    (id, aggregate_type, aggregate_id, event_type, payload)
                SELECT gen_random_uuid(), :kind, (CAST(:ids AS uuid[]))[1 + (g % 100)], 'tick',
                       jsonb_build_object('n', g / 100)
                FROM generate_series(0, 9999) AS g ORDER BY g
                """
            ),
            {"kind": kind, "ids": aggregates},
        )
    relays = [relay(db, js, migrated, batch=100) for _ in range(4)]

    async def drain(r: OutboxRelay) -> None:
        while await r.pass_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    messages = await received(js, kind, 10_000)

    assert len(messages) == 10_000
    by_aggregate: dict[str, list[int]] = {}
    for message in messages:
        payload = message["payload"]
        assert isinstance(payload, dict)
        by_aggregate.setdefault(str(message["aggregate_id"]), []).append(int(payload["n"]))
    assert len(by_aggregate) == 100
    assert all(ns == list(range(100)) for ns in by_aggregate.values())


async def test_events_flow_even_when_the_listen_connection_drops(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"ls{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    worker = relay(db, js, migrated, poll_interval_s=0.5)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(100):
            if worker.listening:
                break
            await asyncio.sleep(0.05)
        assert worker.listening
        async with db.begin() as session:
            killed = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'outbox-relay%' AND datname = :db"
                ),
                {"db": DOMAIN},
            )
        assert killed >= 1
        async with db.begin() as session:
            await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=1))
        messages = await received(js, kind, 1)
        assert [m["event_type"] for m in messages] == ["tick"]
    finally:
        stop.set()
        await running


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(st.booleans(), st.integers(min_value=0, max_value=48 * 3600)),
        min_size=1,
        max_size=40,
    )
)
async def test_cleanup_never_deletes_an_unprocessed_row(
    rows: list[tuple[bool, int]], databases: dict[str, DomainDatabase], migrated: Settings
) -> None:
    kind = f"cl{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    ids = [uuid.uuid4() for _ in rows]
    async with db.begin() as session:
        for event_id, (processed, age_s) in zip(ids, rows, strict=True):
            await session.execute(
                text(
                    "INSERT INTO domain_outbox_events (id, aggregate_type, aggregate_id, "
                    "event_type, payload, processed, processed_at, created_at) "
                    "VALUES (:id, :kind, :agg, 'x', '{}', :processed, "
                    "CASE WHEN :processed THEN now() - make_interval(secs => :age) END, "
                    "now() - make_interval(secs => :age))"
                ),
                {
                    "id": event_id,
                    "kind": kind,
                    "agg": uuid.uuid4(),
                    "processed": processed,
                    "age": age_s,
                },
            )
    cleaner = OutboxRelay(DOMAIN, db, None, listen_dsn="", retention=timedelta(hours=24))  # type: ignore[arg-type]

    await cleaner.cleanup(batch=7)

    async with db.begin() as session:
        left = set(
            await session.scalars(
                text("SELECT id FROM domain_outbox_events WHERE aggregate_type = :kind"),
                {"kind": kind},
            )
        )
    for event_id, (processed, age_s) in zip(ids, rows, strict=True):
        if not processed:
            assert event_id in left  # the invariant: unprocessed rows are never deleted
        elif age_s > 24 * 3600 + 60:
            assert event_id not in left
        elif age_s < 24 * 3600 - 60:
            assert event_id in left


async def test_backlog_reports_count_and_age(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    db = databases[DOMAIN]
    worker = relay(db, js, migrated)
    while await worker.pass_once():
        pass
    assert (await worker.backlog()).count == 0
    async with db.begin() as session:
        await session.execute(
            text(
                "INSERT INTO domain_outbox_events (id, aggregate_type, aggregate_id, event_type, "
                "payload, created_at) VALUES (:id, 'bk', :agg, 'x', '{}', now() - interval '90 s')"
            ),
            {"id": uuid.uuid4(), "agg": uuid.uuid4()},
        )
    backlog = await worker.backlog()
    assert backlog.count == 1
    assert 89 <= backlog.oldest_age_s < 120
    while await worker.pass_once():
        pass
    assert (await worker.backlog()).count == 0
