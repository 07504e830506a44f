"""The outbox relay: committed outbox rows to NATS JetStream, in order per aggregate.

Aggregates are spread over `partitions` by a hash of their id. A relay drains a partition only
while holding that partition's transaction-scoped advisory lock, so any number of relays can run
side by side and each aggregate's events still leave in `seq` order: whoever holds the lock
publishes the oldest unprocessed rows of the partition, marks them, and commits before anyone
else may take the partition. Rows are claimed with `FOR UPDATE SKIP LOCKED`.

Publishing is at least once: a crash between the publish and the mark publishes the rows again.
`Nats-Msg-Id` (the event id) lets JetStream drop the repeat within its duplicate window, and
consumers deduplicate on the same id in their inbox for anything older.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from sqlalchemy import text
from temporalio.common import MetricMeter

from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.outbox import NOTIFY_CHANNEL
from kit.retention import BATCH, delete_in_batches
from kit.subjects import stream_name, stream_subjects, subject

log = get_logger(__name__)

# Advisory-lock key space of the relay (the first key of the two-int form).
LOCK_CLASS = 0x6F75  # "ou"
DUPLICATE_WINDOW = timedelta(minutes=10)
# How often the backlog gauges are refreshed.
GAUGE_INTERVAL_S = 10.0

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


async def ensure_stream(js: JetStreamContext, domain: str) -> None:
    """Declare the domain's stream (idempotent: created, or updated to this configuration)."""
    config = StreamConfig(
        name=stream_name(domain),
        subjects=stream_subjects(domain),
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
    )
    try:
        await js.stream_info(config.name or "")
        await js.update_stream(config)
    except NotFoundError:
        await js.add_stream(config)


@dataclass(frozen=True)
class Backlog:
    """Unprocessed events of one domain."""

    count: int
    oldest_age_s: float


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
        retention: timedelta = timedelta(hours=24),
        cleanup_interval_s: float = 60.0,
        before_mark: Callable[[Sequence[Any]], None] | None = None,
        meter: MetricMeter | None = None,
    ) -> None:
        self.domain, self.db, self.js = domain, db, js
        self.listen_dsn = listen_dsn
        self.partitions, self.batch = partitions, batch
        self.poll_interval_s = poll_interval_s
        self.retention, self.cleanup_interval_s = retention, cleanup_interval_s
        # Fault injection for tests: runs after publishing, before marking.
        self.before_mark = before_mark
        self._wake = asyncio.Event()
        self.listening = False
        attributes = {"domain": domain}
        self._published = (
            meter.create_counter("outbox_published", "events published").with_additional_attributes(
                attributes
            )
            if meter
            else None
        )
        self._backlog_gauge = (
            meter.create_gauge("outbox_backlog", "unprocessed events").with_additional_attributes(
                attributes
            )
            if meter
            else None
        )
        self._age_gauge = (
            meter.create_gauge_float(
                "outbox_oldest_age", "age of the oldest unprocessed event", "s"
            ).with_additional_attributes(attributes)
            if meter
            else None
        )

    async def drain_partition(self, partition: int) -> int:
        """Publish and mark the oldest unprocessed rows of a partition (0: another relay has it)."""
        async with self.db.begin() as session:
            mine = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:cls, :partition)"),
                {"cls": LOCK_CLASS, "partition": partition},
            )
            if not mine:
                return 0
            rows = (
                await session.execute(
                    _CLAIM,
                    {"partitions": self.partitions, "partition": partition, "batch": self.batch},
                )
            ).all()
            if not rows:
                return 0
            acks = [await self.js.publish_async(**self._message(row)) for row in rows]
            await asyncio.gather(*acks)
            if self.before_mark is not None:
                self.before_mark(rows)
            await session.execute(_MARK, {"ids": [row.id for row in rows]})
        if self._published is not None:
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
        """Visit every partition once (starting anywhere, so relays spread out)."""
        start = random.randrange(self.partitions)
        published = 0
        for offset in range(self.partitions):
            while True:
                count = await self.drain_partition((start + offset) % self.partitions)
                published += count
                if count < self.batch:
                    break
        return published

    async def cleanup(self, batch: int = BATCH) -> int:
        """Delete processed rows older than the retention window, in batches; never unprocessed."""
        retention_s = self.retention.total_seconds()
        return await delete_in_batches(self.db, _CLEANUP, {"retention_s": retention_s}, batch)

    async def backlog(self) -> Backlog:
        """How many events wait and how old the oldest is (the relay's health)."""
        async with self.db.begin() as session:
            count, age = (await session.execute(_BACKLOG)).one()
        backlog = Backlog(int(count), float(age or 0.0))
        if self._backlog_gauge is not None and self._age_gauge is not None:
            self._backlog_gauge.set(backlog.count)
            self._age_gauge.set(backlog.oldest_age_s)
        return backlog

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake the relay on NOTIFY; reconnect when the connection drops (polling covers gaps)."""
        while not stop.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self.listen_dsn)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_args: self._wake.set())
                self.listening = True
                self._wake.set()  # catch up on whatever committed while we were away
                stopping = asyncio.create_task(stop.wait())
                dropped = asyncio.create_task(lost.wait())
                await asyncio.wait([stopping, dropped], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                dropped.cancel()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("relay.listen_lost", domain=self.domain, error=type(exc).__name__)
            finally:
                self.listening = False
                if connection is not None and not connection.is_closed():
                    await connection.close()
            if not stop.is_set():
                await asyncio.sleep(self.poll_interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop`: on every NOTIFY, and at least every poll interval."""
        await ensure_stream(self.js, self.domain)
        listener = asyncio.create_task(self._listen(stop))
        loop = asyncio.get_running_loop()
        next_cleanup = loop.time() + self.cleanup_interval_s
        next_gauge = loop.time()
        log.info("relay.started", domain=self.domain, partitions=self.partitions)
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    published = await self.pass_once()
                except Exception:
                    log.exception("relay.pass_failed", domain=self.domain)
                    published = 0
                if loop.time() >= next_cleanup:
                    next_cleanup = loop.time() + self.cleanup_interval_s
                    try:
                        deleted = await self.cleanup()
                        backlog = await self.backlog()
                        # The relay's health in the logs until metrics are scraped (issue 6).
                        log.info(
                            "relay.backlog",
                            domain=self.domain,
                            unprocessed=backlog.count,
                            oldest_age_s=round(backlog.oldest_age_s, 1),
                            cleaned=deleted,
                        )
                    except Exception:
                        log.exception("relay.cleanup_failed", domain=self.domain)
                if loop.time() >= next_gauge:
                    next_gauge = loop.time() + GAUGE_INTERVAL_S
                    try:
                        await self.backlog()  # refreshes the backlog gauges
                    except Exception:
                        log.exception("relay.backlog_failed", domain=self.domain)
                if published:
                    continue
                waits = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
                await asyncio.wait(
                    waits, timeout=self.poll_interval_s, return_when=asyncio.FIRST_COMPLETED
                )
                for task in waits:
                    task.cancel()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            log.info("relay.stopped", domain=self.domain)
