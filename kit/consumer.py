"""Exactly-once application of domain events: durable JetStream pull consumers whose state change
and inbox row commit in one transaction, acknowledged only after the commit.

A crash after the commit and before the ack redelivers the event; the inbox makes that redelivery
a no-op. Events of one stream are handled one at a time in stream order, which keeps every
aggregate's events in order for a consumer process.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import DomainDatabase
from kit.inbox import first_delivery
from kit.logging import get_logger

log = get_logger(__name__)


class NotYet(Exception):
    """The event depends on another one not applied yet (another stream): redeliver later."""


@dataclass(frozen=True)
class Envelope:
    """A domain event as the relay published it."""

    id: uuid.UUID
    domain: str
    aggregate_type: str
    aggregate_id: uuid.UUID
    event_type: str
    seq: int
    occurred_at: datetime
    payload: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> Envelope:
        """From the relay's JSON."""
        raw = json.loads(data)
        return cls(
            id=uuid.UUID(raw["id"]),
            domain=raw["domain"],
            aggregate_type=raw["aggregate_type"],
            aggregate_id=uuid.UUID(raw["aggregate_id"]),
            event_type=raw["event_type"],
            seq=int(raw["seq"]),
            occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            payload=dict(raw["payload"]),
        )


Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """Which events of which stream a consumer takes."""

    stream: str
    subjects: Sequence[str]


class EventConsumer:
    """One named consumer: its durable JetStream consumers, its database, its handler."""

    def __init__(
        self,
        name: str,
        db: DomainDatabase,
        js: JetStreamContext,
        subscriptions: Sequence[Subscription],
        handler: Handler,
        *,
        batch: int = 50,
        retry_delay_s: float = 1.0,
    ) -> None:
        self.name, self.db, self.js = name, db, js
        self.subscriptions, self.handler = subscriptions, handler
        self.batch, self.retry_delay_s = batch, retry_delay_s

    async def apply(self, envelope: Envelope) -> bool:
        """Apply one event exactly once; False if it had been applied before."""
        async with self.db.begin() as session:
            if not await first_delivery(session, self.name, envelope.id):
                return False
            await self.handler(session, envelope)
            return True

    async def _consume(self, subscription: Subscription, stop: asyncio.Event) -> None:
        durable = f"{self.name}-{subscription.stream}".replace(".", "_")
        # Created on first use (idempotent): a restarted process resumes where the durable was.
        sub = await self.js.pull_subscribe(
            subject="",
            durable=durable,
            stream=subscription.stream,
            config=ConsumerConfig(
                durable_name=durable,
                filter_subjects=list(subscription.subjects),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_deliver=-1,
            ),
        )
        while not stop.is_set():
            try:
                messages = await sub.fetch(self.batch, timeout=1)
            except (NatsTimeout, TimeoutError):
                continue  # nothing new within a second (nats-py raises either kind)
            for message in messages:
                try:
                    await self.apply(Envelope.parse(message.data))
                except NotYet:
                    await message.nak(delay=self.retry_delay_s)
                    continue
                except Exception:
                    log.exception("consumer.failed", consumer=self.name, subject=message.subject)
                    await message.nak(delay=self.retry_delay_s * 5)
                    continue
                await message.ack()

    async def _supervised(self, subscription: Subscription, stop: asyncio.Event) -> None:
        # A broken subscription (NATS restarting, a stream not there yet) is retried, not lost.
        while not stop.is_set():
            try:
                await self._consume(subscription, stop)
            except Exception:
                log.exception(
                    "consumer.subscription_failed", consumer=self.name, stream=subscription.stream
                )
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_delay_s)
                except TimeoutError:
                    pass

    async def run(self, stop: asyncio.Event) -> None:
        """Consume every subscription until `stop`."""
        log.info("consumer.started", consumer=self.name)
        await asyncio.gather(*(self._supervised(s, stop) for s in self.subscriptions))
        log.info("consumer.stopped", consumer=self.name)
