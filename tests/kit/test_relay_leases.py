"""Relays at rest and in company, against real PostgreSQL and NATS: woken by NOTIFY, silent while
nothing happens, one publisher per partition, partitions taken over only after their lease."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import nats as nats_client
import pytest
from nats.js import JetStreamContext
from sqlalchemy import event, text

from kit.db import DomainDatabase
from kit.outbox import append_event
from kit.relay import OutboxRelay, ensure_stream
from kit.settings import Settings
from tests.conftest import Service
from tests.kit.test_relay import DOMAIN, Tick, expire_leases, received

pytestmark = pytest.mark.timeout(120)

PARTITIONS = 32


class Counting(OutboxRelay):
    """A relay that counts its ticks (leases and backlog) and scans (backlog, when notified)."""

    ticks = 0
    scans = 0
    # Ticks once the LISTEN connection was up: the relay has settled.
    settled = 0

    async def tick(self) -> set[int]:
        self.ticks += 1
        listening = self.listening
        held = await super().tick()
        self.settled += listening
        return held

    async def scan(self) -> set[int]:
        self.scans += 1
        return await super().scan()


def counting(
    db: DomainDatabase, settings: Settings, js: JetStreamContext, **kwargs: Any
) -> Counting:
    return Counting(DOMAIN, db, js, listen_dsn=settings.domain_database_url(DOMAIN), **kwargs)


@pytest.fixture(autouse=True)
async def free_partitions(databases: dict[str, DomainDatabase]) -> None:
    await expire_leases(databases[DOMAIN])


@pytest.fixture
async def js(nats: Service) -> AsyncIterator[JetStreamContext]:
    connection = await nats_client.connect(nats.url)
    context = connection.jetstream()
    await ensure_stream(context, DOMAIN)
    yield context
    await connection.close()


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def partition_of(db: DomainDatabase, aggregate_id: uuid.UUID) -> int:
    async with db.begin() as session:
        partition = await session.scalar(
            text("SELECT (hashtext(CAST(:a AS text)) & 2147483647) % :n"),
            {"a": str(aggregate_id), "n": PARTITIONS},
        )
    return int(partition)


async def owners(db: DomainDatabase) -> dict[str, int]:
    async with db.begin() as session:
        rows = await session.execute(
            text(
                "SELECT owner, count(*) FROM outbox_relay_leases "
                "WHERE owner IS NOT NULL AND partition < :n GROUP BY owner"
            ),
            {"n": PARTITIONS},
        )
        return {owner: int(count) for owner, count in rows}


@asynccontextmanager
async def present(*relays: OutboxRelay) -> AsyncIterator[None]:
    """Connections named as the relays' LISTEN connections: to the others, the relays are alive
    (for relays a test drives by hand, without `run`)."""
    connections = [
        await asyncpg.connect(
            relay.listen_dsn, server_settings={"application_name": relay.application_name}
        )
        for relay in relays
    ]
    for relay in relays:
        relay.listening = True
    try:
        yield
    finally:
        for relay in relays:
            relay.listening = False
        for connection in connections:
            await connection.close()


async def test_a_committed_event_wakes_the_relay_without_any_poll(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"nt{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    # No tick, no poll for an hour: only the NOTIFY of the commit can set it going.
    worker = counting(
        db,
        migrated,
        js,
        safety_poll_s=3600.0,
        poll_interval_s=3600.0,
        lease_ttl=timedelta(hours=3),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: worker.settled >= 1)
        assert worker.held == set(range(PARTITIONS))  # alone: every partition
        ticks, scans = worker.ticks, worker.scans

        async with db.begin() as session:
            await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=1))

        assert [m["event_type"] for m in await received(js, kind, 1)] == ["tick"]
        assert worker.ticks == ticks  # not a tick's doing
        assert worker.scans > scans  # the notification's
    finally:
        stop.set()
        await running
    assert await owners(db) == {}  # a stopping relay hands its partitions over


async def test_an_idle_relay_queries_nothing_between_ticks(
    migrated: Settings, js: JetStreamContext
) -> None:
    db = DomainDatabase.from_settings(DOMAIN, migrated)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    # Were it polling, a 10 ms interval would make hundreds of queries a second.
    worker = counting(db, migrated, js, poll_interval_s=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: worker.settled >= 1)
        before = len(statements)
        await asyncio.sleep(2.0)  # an idle window
        idle = statements[before:]
    finally:
        stop.set()
        await running
        await db.dispose()
    assert len(idle) <= 2, idle  # a stray rebalance at most; the next tick is 30 s away


async def test_one_publisher_per_partition_and_a_takeover_waits_for_the_publication_in_flight(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"ls{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    aggregate = uuid.uuid4()
    partition = await partition_of(db, aggregate)
    paused, resume = asyncio.Event(), asyncio.Event()

    async def hold(_rows: object) -> None:
        paused.set()
        await resume.wait()

    # The first relay's leases expire at once, and it has no LISTEN connection: only its
    # publication in flight protects the partition it publishes.
    first = counting(db, migrated, js, owner="relay-a", lease_ttl=timedelta(0), before_mark=hold)
    second = counting(db, migrated, js, owner="relay-b")
    await first.tick()
    assert first.held == set(range(PARTITIONS))
    async with db.begin() as session:
        await append_event(session, kind, aggregate, "first", Tick(n=1))

    draining = asyncio.create_task(first.drain([partition]))
    await paused.wait()  # published, not marked: the lease row is locked
    async with present(second):
        await second.tick()
        assert second.held == set(range(PARTITIONS)) - {partition}  # all it may: not that one
        resume.set()
        assert await draining == 1

        await second.tick()  # expired and free now: taken over
        assert second.held == set(range(PARTITIONS))
        async with db.begin() as session:
            await append_event(session, kind, aggregate, "second", Tick(n=2))
        assert await first.drain([partition]) == 0  # no longer its partition
        assert await first.pass_once() == 0  # nothing to take from a live relay
        assert first.held == set()
        assert await second.pass_once() == 1

        messages = await received(js, kind, 2)
        assert [m["event_type"] for m in messages] == ["first", "second"]
        assert await owners(db) == {"relay-b": PARTITIONS}


async def test_running_relays_share_the_partitions_and_take_over_from_one_that_stops(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"sh{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    a, b = counting(db, migrated, js), counting(db, migrated, js)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    running_a = asyncio.create_task(a.run(stop_a))
    try:
        await until(lambda: a.listening and len(a.held) == PARTITIONS)
        running_b = asyncio.create_task(b.run(stop_b))
        try:
            # B announces itself; A hands half over and B takes it, at once (no renewal due).
            await until(lambda: len(a.held) == len(b.held) == PARTITIONS // 2)
            assert not a.held & b.held
            assert await owners(db) == {a.owner: PARTITIONS // 2, b.owner: PARTITIONS // 2}
            async with db.begin() as session:
                for n in range(40):
                    await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=n))
            messages = await received(js, kind, 40)
            assert sorted(int(m["payload"]["n"]) for m in messages) == list(range(40))  # type: ignore[index]
        finally:
            stop_b.set()
            await running_b
        # B handed everything over when it stopped; A takes it without waiting for expiry.
        await until(lambda: len(a.held) == PARTITIONS)
    finally:
        stop_a.set()
        await running_a


class Deaf(Counting):
    """A LISTEN connection that hears nothing, as through a pooler in transaction mode."""

    def _notified(self, *_args: object) -> None:
        pass


async def test_a_relay_that_stops_hearing_notices_it_and_polls(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    kind = f"df{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    deaf = Deaf(
        DOMAIN,
        db,
        js,
        listen_dsn=migrated.domain_database_url(DOMAIN),
        safety_poll_s=0.2,
        poll_interval_s=0.05,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(deaf.run(stop))
    try:
        await until(lambda: deaf.deaf)  # its own probe went unheard
        assert deaf.listening
        deaf.safety_poll_s = 3600.0
        ticks = deaf.ticks
        await until(lambda: deaf.ticks > ticks)  # the last tick: the next one is an hour away
        ticks, scans = deaf.ticks, deaf.scans
        async with db.begin() as session:
            await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=1))
        assert [m["event_type"] for m in await received(js, kind, 1)] == ["tick"]
        assert deaf.ticks == ticks
        assert deaf.scans > scans  # polled, as it must without notifications
    finally:
        stop.set()
        await running


async def test_a_relay_that_hears_its_probes_stays_notified(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    worker = counting(databases[DOMAIN], migrated, js, safety_poll_s=0.2, poll_interval_s=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: worker.settled >= 12)  # probes sent, and judged, several times
        assert worker.hearing
    finally:
        stop.set()
        await running


async def test_a_killed_relays_partitions_are_taken_at_once_and_a_live_ones_are_not(
    databases: dict[str, DomainDatabase], js: JetStreamContext, migrated: Settings
) -> None:
    """A relay killed with SIGKILL never releases, and its leases have most of their 90 s left;
    its LISTEN connection ends with it, and that is what the others go by. A live owner (its
    LISTEN connection up) keeps its partitions until they expire."""
    kind = f"gh{uuid.uuid4().hex[:8]}"
    db = databases[DOMAIN]
    ghost = counting(db, migrated, js, owner="relay-ghost")
    survivor = counting(db, migrated, js, owner="relay-survivor")
    async with present(ghost):
        await ghost.tick()
        assert ghost.held == set(range(PARTITIONS))
        await survivor.tick()
        assert survivor.held == set()  # the ghost's leases are live, and so is its connection
    # The process dies: its connection goes with it.
    async with db.begin() as session:
        await append_event(session, kind, uuid.uuid4(), "tick", Tick(n=1))
    published = 0
    for _ in range(50):  # the backend leaves pg_stat_activity a moment after the connection
        published += await survivor.pass_once()
        if survivor.held:
            break
        await asyncio.sleep(0.1)
    assert survivor.held == set(range(PARTITIONS))  # taken 90 s before the leases expire
    assert published == 1
    assert await owners(db) == {"relay-survivor": PARTITIONS}
    assert [m["event_type"] for m in await received(js, kind, 1)] == ["tick"]
