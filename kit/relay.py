"""The outbox relay: committed outbox rows to NATS JetStream, in order per aggregate; idle at rest.

Aggregates are spread over `partitions` by a hash of their id. Each partition is published by one
relay at a time, the owner of its row in `outbox_relay_leases`: a relay claims free or expired
partitions, and those whose owner has no LISTEN connection any more (a killed relay), up to its
fair share (the partitions over the relays of the domain, counted by their
LISTEN connections), renews what it holds every `lease_ttl / 3`, hands over what exceeds its
share, and everything it holds when it stops. It publishes a partition only in a transaction that
first updates the partition's lease row where it is the owner (renewing it), so a takeover (an
UPDATE of that row) waits for the publication in flight to commit, and a relay that lost a
partition publishes no more of it: two relays never publish one partition at once, and each
aggregate's events leave in `seq` order.

Nothing is polled while nothing happens. `append_event` NOTIFYs `domain_outbox_events` in the
writing transaction (delivered at commit); the relay LISTENs and, woken, reads which partitions
have unprocessed rows (one query) and drains those it holds. A tick every
`min(safety_poll_s, lease_ttl / 3)` renews the leases and reads the backlog in one transaction:
the safety net for a lost notification, and the backlog gauges. Each tick also NOTIFYs a probe
to the relay itself: a LISTEN connection that stops hearing (a pooler in transaction mode, say)
is noticed at the next tick. While the relay cannot hear (LISTEN connection down, or deaf), it
reads the backlog every `poll_interval_s` instead. Relays announce joining and handing over on
`outbox_relay_leases`, so the others rebalance at once.

Publishing is at least once: a crash between the publish and the mark publishes the rows again
(by whoever holds the partition next). `Nats-Msg-Id` (the event id) lets JetStream drop the repeat
within its duplicate window, and consumers deduplicate on the same id in their inbox. So is an
acknowledgement that never comes (NATS restarted between a publish and its ack: the ack is lost
with the connection): after `ack_timeout_s` the pass fails, its transaction rolls back, and the
next pass publishes the rows again instead of waiting on them forever with their rows locked.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import MetricMeter

from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.outbox import LEASE_CHANNEL, NOTIFY_CHANNEL
from kit.retention import BATCH, delete_in_batches
from kit.subjects import stream_name, stream_subjects, subject

log = get_logger(__name__)

DUPLICATE_WINDOW = timedelta(minutes=10)
# How long a claimed partition stays its relay's without renewal (renewed every third of it).
LEASE_TTL = timedelta(seconds=90)
# How often the relay reads the backlog without being woken (notifications lost, gauges).
SAFETY_POLL_S = 30.0
# How often processed rows past the retention are deleted.
CLEANUP_INTERVAL_S = 600.0
# How long a pass waits for JetStream to acknowledge its batch (normally milliseconds; twice
# nats-py's own 5 s for one publish, since a batch of up to `batch` rows is acked together).
PUBLISH_ACK_TIMEOUT_S = 10.0
# The relays' LISTEN connections are named `outbox-relay:<domain>:<owner>`: `pg_stat_activity`
# counts the relays of a domain, and tells a live owner of a lease from a dead one.
APPLICATION_NAME = "outbox-relay"
# PostgreSQL keeps this much of an application_name (NAMEDATALEN - 1).
_APPLICATION_NAME_MAX = 63
# A tick's probe (a NOTIFY to itself) unheard this long after its commit: the relay is deaf.
PROBE_GRACE_S = 1.0
_PROBE = "probe:"

_CLAIM = text(
    """
    SELECT id, seq, aggregate_type, aggregate_id, event_type, payload, headers, created_at
    FROM domain_outbox_events
    WHERE NOT processed AND (hashtext(aggregate_id::text) & 2147483647) % :partitions = :partition
    ORDER BY seq
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
    """
)
_MARK = text(
    "UPDATE domain_outbox_events SET processed = true, processed_at = now() WHERE id = ANY(:ids)"
)
_CLEANUP = text(
    """
    DELETE FROM domain_outbox_events WHERE id IN (
        SELECT id FROM domain_outbox_events
        WHERE processed AND processed_at < now() - make_interval(secs => :retention_s)
        LIMIT :batch
    )
    """
)
_BACKLOG = text(
    "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at)) "
    "FROM domain_outbox_events WHERE NOT processed"
)
# Unprocessed rows per partition: which partitions have work, and the backlog.
_SCAN = text(
    """
    SELECT (hashtext(aggregate_id::text) & 2147483647) % :partitions AS partition,
           count(*) AS waiting, EXTRACT(EPOCH FROM now() - min(created_at)) AS age_s
    FROM domain_outbox_events WHERE NOT processed
    GROUP BY 1
    """
)
# Only the missing rows: an insert conflicting with a row a publication holds would wait for it.
_LEASE_ROWS = text(
    """
    INSERT INTO outbox_relay_leases (partition)
    SELECT g FROM generate_series(0, :partitions - 1) AS g
    WHERE NOT EXISTS (SELECT FROM outbox_relay_leases WHERE partition = g)
    ON CONFLICT DO NOTHING
    """
)
_RENEW = text(
    "UPDATE outbox_relay_leases SET expires_at = now() + make_interval(secs => :ttl_s) "
    "WHERE owner = :owner AND partition < :partitions RETURNING partition"
)
_TAKE = text(
    """
    UPDATE outbox_relay_leases
    SET owner = :owner, expires_at = now() + make_interval(secs => :ttl_s)
    WHERE partition IN (
        SELECT partition FROM outbox_relay_leases
        WHERE partition < :partitions AND owner IS DISTINCT FROM :owner AND (
            owner IS NULL OR expires_at < now()
            -- An owner without a LISTEN connection is gone (a killed process's connection ends
            -- with it); a live relay that lost its connection only stops publishing (_HOLD).
            OR NOT EXISTS (
                SELECT FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = :prefix || owner
            )
        )
        ORDER BY partition LIMIT :wanted
        FOR UPDATE SKIP LOCKED
    )
    RETURNING partition
    """
)
_HAND_OVER = text(
    "UPDATE outbox_relay_leases SET owner = NULL, expires_at = now() "
    "WHERE owner = :owner AND partition = ANY(:partitions)"
)
_HAND_OVER_ALL = text(
    "UPDATE outbox_relay_leases SET owner = NULL, expires_at = now() WHERE owner = :owner"
)
_ANNOUNCE = text("SELECT pg_notify(:channel, :owner)")
# The draining transaction renews the partition's lease and holds its row locked until it
# commits: a takeover of the partition (an UPDATE of the row) waits for it.
_HOLD = text(
    "UPDATE outbox_relay_leases SET expires_at = now() + make_interval(secs => :ttl_s) "
    "WHERE partition = :partition AND owner = :owner RETURNING partition"
)
_RELAYS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND starts_with(application_name, :prefix)"
)


@dataclass(frozen=True)
class StreamLimits:
    """How a stream is created when it is missing (docs/deployment.md, "NATS").

    An existing stream is never reconfigured: replicas and limits set on the server
    (`nats stream edit`) stay. `max_age` must not exceed CONSUMER_INBOX_RETENTION: an event still
    in the stream must still be known to the inbox of a consumer that replays it.
    """

    replicas: int = 1
    max_age: timedelta = timedelta(days=7)
    max_bytes: int = -1
    max_msg_size: int = -1
    discard: DiscardPolicy = DiscardPolicy.OLD
    duplicate_window: timedelta = DUPLICATE_WINDOW

    def config(self, domain: str) -> StreamConfig:
        """The configuration of a new stream of `domain`."""
        return StreamConfig(
            name=stream_name(domain),
            subjects=stream_subjects(domain),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            max_age=self.max_age.total_seconds(),
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            discard=self.discard,
            duplicate_window=self.duplicate_window.total_seconds(),
        )


async def ensure_stream(
    js: JetStreamContext, domain: str, limits: StreamLimits | None = None
) -> None:
    """Create the domain's stream if it is missing; of an existing one, only add its subjects if
    they are missing (everything else is the operator's)."""
    name = stream_name(domain)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        try:
            await js.add_stream((limits or StreamLimits()).config(domain))
            log.info("relay.stream_created", stream=name)
            return
        except BadRequestError:
            info = await js.stream_info(name)  # another process created it meanwhile
    missing = [s for s in stream_subjects(domain) if s not in (info.config.subjects or [])]
    if missing:
        config = info.config
        config.subjects = [*(config.subjects or []), *missing]
        await js.update_stream(config)
        log.warning("relay.stream_subjects_added", stream=name, subjects=missing)


@dataclass(frozen=True)
class Backlog:
    """Unprocessed events of one domain."""

    count: int
    oldest_age_s: float


@dataclass
class _Scan:
    """Unprocessed events per partition: count and age of the oldest."""

    waiting: dict[int, tuple[int, float]] = field(default_factory=dict)

    def backlog(self, excluding: Iterable[int] = ()) -> Backlog:
        skipped = set(excluding)
        left = [v for p, v in self.waiting.items() if p not in skipped]
        return Backlog(sum(c for c, _ in left), max((a for _, a in left), default=0.0))


# Fault injection for tests: runs after publishing, before marking (may be a coroutine).
BeforeMark = Callable[[Sequence[Any]], Awaitable[None] | None]


class OutboxRelay:
    """Publishes one domain's outbox; run several per domain for throughput and availability."""

    def __init__(
        self,
        domain: str,
        db: DomainDatabase,
        js: JetStreamContext,
        *,
        listen_dsn: str,
        partitions: int = 32,
        batch: int = 200,
        poll_interval_s: float = 1.0,
        safety_poll_s: float = SAFETY_POLL_S,
        lease_ttl: timedelta = LEASE_TTL,
        owner: str | None = None,
        retention: timedelta = timedelta(hours=24),
        cleanup_interval_s: float = CLEANUP_INTERVAL_S,
        stream: StreamLimits | None = None,
        before_mark: BeforeMark | None = None,
        meter: MetricMeter | None = None,
        ack_timeout_s: float = PUBLISH_ACK_TIMEOUT_S,
    ) -> None:
        self.domain, self.db, self.js = domain, db, js
        self.ack_timeout_s = ack_timeout_s
        self.listen_dsn = listen_dsn
        self.partitions, self.batch = partitions, batch
        # Without notifications (LISTEN connection down) the backlog is read this often.
        self.poll_interval_s, self.safety_poll_s = poll_interval_s, safety_poll_s
        self.lease_ttl = lease_ttl
        self.owner = owner or f"{domain}-{uuid.uuid4().hex[:12]}"
        self.retention, self.cleanup_interval_s = retention, cleanup_interval_s
        self.stream = stream
        self.before_mark = before_mark
        self.relay_prefix = f"{APPLICATION_NAME}:{domain}:"
        self.application_name = self.relay_prefix + self.owner
        if len(self.application_name) > _APPLICATION_NAME_MAX:
            raise ValueError(f"relay owner {self.owner!r} is too long for an application_name")
        self.held: set[int] = set()
        # LISTENing, and whether the last probe went unheard (then the relay polls).
        self.listening = self.deaf = False
        self._probe_sent_at: float | None = None
        self._probe_heard = False
        self._scan = _Scan()
        self._lease_rows = False
        # Set by notifications; `_signal` wakes the loop, the flags say what for.
        self._signal = asyncio.Event()
        self._work = self._rebalance = False
        self._meter(meter)

    def _meter(self, meter: MetricMeter | None) -> None:
        meter = meter or MetricMeter.noop
        attributes = {"domain": self.domain}
        self._published = meter.create_counter(
            "outbox_published", "events published"
        ).with_additional_attributes(attributes)
        self._backlog_gauge = meter.create_gauge(
            "outbox_backlog", "unprocessed events"
        ).with_additional_attributes(attributes)
        self._age_gauge = meter.create_gauge_float(
            "outbox_oldest_age", "age of the oldest unprocessed event", "s"
        ).with_additional_attributes(attributes)
        self._hearing_gauge = meter.create_gauge(
            "outbox_relay_listening", "1 while the relay hears NOTIFY on its LISTEN connection"
        ).with_additional_attributes(attributes)
        self._hearing_gauge.set(0)

    # Leases -------------------------------------------------------------------------------

    @property
    def _ttl_s(self) -> float:
        return self.lease_ttl.total_seconds()

    async def _relays(self, session: AsyncSession) -> int:
        """Relays of this domain: those listening, and this one."""
        listening = int(await session.scalar(_RELAYS, {"prefix": self.relay_prefix}) or 0)
        return max(listening + (0 if self.listening else 1), 1)

    async def _lease(self, session: AsyncSession) -> set[int]:
        """Renew what this relay holds, then take its fair share or hand the excess over."""
        params = {"owner": self.owner, "partitions": self.partitions, "ttl_s": self._ttl_s}
        if not self._lease_rows:
            await session.execute(_LEASE_ROWS, params)
        held = set(await session.scalars(_RENEW, params))
        share = math.ceil(self.partitions / await self._relays(session))
        if len(held) > share:
            excess = sorted(held)[share:]
            await session.execute(_HAND_OVER, {**params, "partitions": excess})
            await session.execute(_ANNOUNCE, {"channel": LEASE_CHANNEL, "owner": self.owner})
            held -= set(excess)
            log.info("relay.handed_over", domain=self.domain, partitions=len(excess))
        elif len(held) < share:
            wanted = {"wanted": share - len(held), "prefix": self.relay_prefix}
            taken = set(await session.scalars(_TAKE, {**params, **wanted}))
            if taken:
                log.info("relay.took_over", domain=self.domain, partitions=len(taken))
            held |= taken
        return held

    async def release(self) -> None:
        """Hand every partition over now (a stopping relay), and tell the other relays."""
        async with self.db.begin() as session:
            await session.execute(_HAND_OVER_ALL, {"owner": self.owner})
            await session.execute(_ANNOUNCE, {"channel": LEASE_CHANNEL, "owner": self.owner})
        self.held = set()

    # Publishing ---------------------------------------------------------------------------

    async def tick(self) -> set[int]:
        """Renew, take or hand over leases and read the backlog, in one transaction (with the
        probe, when listening); the held partitions with unprocessed rows."""
        probe = self._probe_due()
        async with self.db.begin() as session:
            held = await self._lease(session)
            rows = (await session.execute(_SCAN, {"partitions": self.partitions})).all()
            if probe:
                self._probe_heard = False
                await session.execute(_ANNOUNCE, {"channel": LEASE_CHANNEL, "owner": probe})
        # Held once committed: until then another relay (or a reader) still sees the old owners.
        self.held = held
        self._lease_rows = True
        if probe:
            self._probe_sent_at = asyncio.get_running_loop().time()
        return self._observe(rows)

    @property
    def hearing(self) -> bool:
        """Whether notifications arrive: listening, and the last probe was heard."""
        return self.listening and not self.deaf

    def _probe_due(self) -> str | None:
        """Judge the last probe (once it had time to arrive); the payload of the next, if any."""
        if not self.listening:
            return None
        sent_at = self._probe_sent_at
        if sent_at is not None:
            if asyncio.get_running_loop().time() - sent_at < PROBE_GRACE_S:
                return None  # too early to tell: no new probe either
            if self.deaf == self._probe_heard:
                self.deaf = not self._probe_heard
                if self.deaf:
                    log.warning("relay.deaf", domain=self.domain, poll_s=self.poll_interval_s)
                else:
                    log.info("relay.hearing", domain=self.domain)
                self._hearing_gauge.set(int(self.hearing))
        return _PROBE + self.owner

    async def scan(self) -> set[int]:
        """Read the backlog; the held partitions with unprocessed rows."""
        async with self.db.begin() as session:
            rows = (await session.execute(_SCAN, {"partitions": self.partitions})).all()
        return self._observe(rows)

    def _observe(self, rows: Sequence[Any]) -> set[int]:
        self._scan = _Scan({int(r.partition): (int(r.waiting), float(r.age_s)) for r in rows})
        self._gauge(self._scan.backlog())
        return set(self._scan.waiting) & self.held

    def _gauge(self, backlog: Backlog) -> None:
        self._backlog_gauge.set(backlog.count)
        self._age_gauge.set(backlog.oldest_age_s)

    async def drain(self, partitions: Iterable[int]) -> int:
        """Publish everything unprocessed of `partitions` (those this relay holds)."""
        published = 0
        drained = sorted(partitions)
        for partition in drained:
            while True:
                count = await self.drain_partition(partition)
                published += count
                if count < self.batch:
                    break
        if drained:
            self._gauge(self._scan.backlog(excluding=drained))
        return published

    async def drain_partition(self, partition: int) -> int:
        """Publish and mark the oldest unprocessed rows of a partition (0: not this relay's)."""
        async with self.db.begin() as session:
            hold = {"partition": partition, "owner": self.owner, "ttl_s": self._ttl_s}
            mine = await session.scalar(_HOLD, hold)
            if mine is None:
                self.held.discard(partition)
                return 0
            params = {"partitions": self.partitions, "partition": partition, "batch": self.batch}
            rows = (await session.execute(_CLAIM, params)).all()
            if not rows:
                return 0
            acks = [await self.js.publish_async(**self._message(row)) for row in rows]
            try:
                # Cancelled on timeout, the acks' futures give back their publishing slots.
                await asyncio.wait_for(asyncio.gather(*acks), self.ack_timeout_s)
            except TimeoutError as exc:
                raise TimeoutError(
                    f"{len(rows)} events of partition {partition} not acknowledged within "
                    f"{self.ack_timeout_s} s; published again next pass"
                ) from exc
            if self.before_mark is not None:
                injected = self.before_mark(rows)
                if inspect.isawaitable(injected):
                    await injected
            await session.execute(_MARK, {"ids": [row.id for row in rows]})
        self._published.add(len(rows))
        return len(rows)

    def _message(self, row: Any) -> dict[str, Any]:
        envelope = {
            "id": str(row.id),
            "domain": self.domain,
            "aggregate_type": row.aggregate_type,
            "aggregate_id": str(row.aggregate_id),
            "event_type": row.event_type,
            "seq": row.seq,
            "occurred_at": row.created_at.isoformat(),
            "headers": row.headers,
            "payload": row.payload,
        }
        return {
            "subject": subject(self.domain, row.aggregate_type, row.event_type),
            "payload": json.dumps(envelope, separators=(",", ":")).encode(),
            "headers": {"Nats-Msg-Id": str(row.id), "Aggregate-Id": str(row.aggregate_id)},
        }

    async def pass_once(self) -> int:
        """One tick, then drain every held partition with unprocessed rows."""
        return await self.drain(await self.tick())

    async def cleanup(self, batch: int = BATCH) -> int:
        """Delete processed rows older than the retention window, in batches; never unprocessed."""
        retention_s = self.retention.total_seconds()
        return await delete_in_batches(self.db, _CLEANUP, {"retention_s": retention_s}, batch)

    async def backlog(self) -> Backlog:
        """How many events wait and how old the oldest is (the relay's health)."""
        async with self.db.begin() as session:
            count, age = (await session.execute(_BACKLOG)).one()
        backlog = Backlog(int(count), float(age or 0.0))
        self._gauge(backlog)
        return backlog

    # Running ------------------------------------------------------------------------------

    def _notified(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        if channel == NOTIFY_CHANNEL:
            self._work = True
        elif payload == _PROBE + self.owner:
            self._probe_heard = True
            return
        elif payload == self.owner or payload.startswith(_PROBE):
            return  # its own announcement, another relay's probe
        else:
            self._rebalance = True
        self._signal.set()

    async def _listen_once(self, stop: asyncio.Event) -> None:
        """One LISTEN connection, until it drops or `stop`."""
        connection = await asyncpg.connect(
            self.listen_dsn, server_settings={"application_name": self.application_name}
        )
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _conn: lost.set())
            for channel in (NOTIFY_CHANNEL, LEASE_CHANNEL):
                await connection.add_listener(channel, self._notified)
            # Counted from here on: the others make room for this relay, and tell it.
            await connection.execute("SELECT pg_notify($1, $2)", LEASE_CHANNEL, self.owner)
            self.listening, self.deaf, self._probe_sent_at = True, False, None
            self._hearing_gauge.set(1)
            # A tick: take what was handed over, publish what committed while nobody listened.
            self._rebalance = True
            self._signal.set()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        finally:
            self.listening = False
            self._hearing_gauge.set(0)
            if not connection.is_closed():
                await connection.close()

    async def _listen(self, stop: asyncio.Event) -> None:
        """Keep a LISTEN connection; while there is none, the relay polls."""
        while not stop.is_set():
            try:
                await self._listen_once(stop)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("relay.listen_lost", domain=self.domain, error=type(exc).__name__)
            if not stop.is_set():
                self._signal.set()  # poll while reconnecting
                await _wait(stop, self.poll_interval_s)

    def _tick_interval_s(self) -> float:
        return min(self.safety_poll_s, self._ttl_s / 3)

    async def _step(self, tick: bool) -> None:
        """A tick or, when notified (or not hearing), a scan; then drain what was found."""
        work, self._work = self._work or not self.hearing, False
        try:
            if tick:
                partitions = await self.tick()
            elif work:
                partitions = await self.scan()
            else:
                return
            await self.drain(partitions)
        except Exception:
            log.exception("relay.pass_failed", domain=self.domain)

    async def _cleanup(self) -> None:
        try:
            deleted = await self.cleanup()
        except Exception:
            log.exception("relay.cleanup_failed", domain=self.domain)
            return
        backlog = self._scan.backlog()
        log.info(
            "relay.backlog",
            domain=self.domain,
            unprocessed=backlog.count,
            oldest_age_s=round(backlog.oldest_age_s, 1),
            cleaned=deleted,
            partitions_held=len(self.held),
        )

    async def _serve(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        next_cleanup = loop.time() + self.cleanup_interval_s
        while not stop.is_set():
            self._signal.clear()
            tick = self._rebalance or loop.time() >= next_tick
            if tick:
                self._rebalance = False
                next_tick = loop.time() + self._tick_interval_s()
            await self._step(tick)
            if loop.time() >= next_cleanup:
                next_cleanup = loop.time() + self.cleanup_interval_s
                await self._cleanup()
            timeout = min(next_tick, next_cleanup) - loop.time()
            if not self.hearing:
                timeout = min(timeout, self.poll_interval_s)
            await _wait(stop, max(timeout, 0.0), self._signal)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop`: woken by NOTIFY, ticking every min(safety_poll_s, lease_ttl / 3)."""
        await ensure_stream(self.js, self.domain, self.stream)
        listener = asyncio.create_task(self._listen(stop))
        log.info("relay.started", domain=self.domain, partitions=self.partitions, owner=self.owner)
        try:
            await self._serve(stop)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            try:
                await self.release()
            except Exception:
                log.exception("relay.release_failed", domain=self.domain)
            log.info("relay.stopped", domain=self.domain)


async def _wait(stop: asyncio.Event, timeout_s: float, *events: asyncio.Event) -> None:
    """Until `stop` or one of `events` is set, or `timeout_s` has passed."""
    waits = [asyncio.create_task(event.wait()) for event in (stop, *events)]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
