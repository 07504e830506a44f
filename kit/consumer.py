"""Exactly-once application of domain events: durable JetStream pull consumers whose state change
and inbox row commit in one transaction, acknowledged only after the commit.

A consumer's `Reactions` name the events it takes, the pydantic model each payload is read into
(the consumer's own view of the producer's event: it cannot import another domain) and the
function that applies it; the streams and subjects it subscribes to follow from them.

A crash after the commit and before the ack redelivers the event; the inbox makes that redelivery
a no-op. Events of one stream are handled one at a time in stream order, which keeps every
aggregate's events in order for a consumer process. An event whose payload its model refuses can
never apply (events are immutable), and an event whose reaction keeps raising (anything but
`NotYet`) is retried with a growing delay only until it has failed `max_deliver` times: either is
dead-lettered (kept in `consumer_dead_letters` with the message, logged, counted in
`consumer_rejected{reason}`) and terminated, never redelivered forever. A redelivery waits behind
nothing: the events after it go on being applied meanwhile.

`NotYet` is not a failure: the event waits for another stream's event, redelivered after a delay
that doubles up to `MAX_NOT_YET_DELAY_S`, and never counts toward `max_deliver` (an event that
waited ten times for its order and then met one failing transaction is not poison). Failures are
counted by the process that saw them, so a restart gives an event another `max_deliver` tries,
never fewer; JetStream's delivery count, which includes the waits, is what the dead letter keeps.

At rest a consumer costs nothing: each pull request waits on the server up to `fetch_wait_s`
(30 s) and returns as soon as a message arrives; the database is touched only to apply one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import MetricMeter

from kit.db import DomainDatabase
from kit.inbox import first_delivery, record_dead_letter
from kit.logging import get_logger
from kit.subjects import EventName, stream_name

log = get_logger(__name__)

# The longest a failed event waits before its next delivery.
MAX_RETRY_DELAY_S = 300.0
# How long one pull request waits on the server for messages (it returns at the first one).
FETCH_WAIT_S = 30.0
# The longest an event waits between two deliveries while it is `NotYet`.
MAX_NOT_YET_DELAY_S = 30.0
# How long a delivered message may go unacknowledged before JetStream delivers it again.
_ACK_WAIT_S = 30.0
# Messages being retried whose waits and failures a consumer remembers (the oldest forgotten).
_RETRYING_MAX = 10_000


class NotYet(Exception):
    """The event depends on another one not applied yet (another stream): redeliver later."""


class InvalidEvent(Exception):
    """An event this consumer cannot read: redelivering it would never help."""


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

    @property
    def name(self) -> EventName:
        """Which kind of event this is (its stream and subject)."""
        return EventName(self.domain, self.aggregate_type, self.event_type)

    @classmethod
    def parse(cls, data: bytes) -> Envelope:
        """From the relay's JSON; `InvalidEvent` if it is not an envelope."""
        try:
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
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidEvent(f"not an event envelope: {type(exc).__name__}: {exc}") from exc


EventT = TypeVar("EventT", bound=BaseModel)
# A domain's reaction to one kind of event: applied in the caller's transaction, never commits.
Reaction = Callable[[AsyncSession, EventT], Awaitable[None]]
# A reaction with its event read, waiting for the transaction.
Bound = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class _Registered(Generic[EventT]):
    model: type[EventT]
    react: Reaction[EventT]

    def bind(self, envelope: Envelope) -> Bound:
        try:
            event = self.model.model_validate(envelope.payload)
        except ValidationError as exc:
            raise InvalidEvent(
                f"{envelope.name} {envelope.id} does not fit {self.model.__name__}: {exc}"
            ) from exc
        return lambda session: self.react(session, event)


@dataclass(frozen=True)
class Subscription:
    """Which events of one producing domain's stream a consumer takes."""

    domain: str
    subjects: tuple[str, ...]

    @property
    def stream(self) -> str:
        """The stream the subjects are in."""
        return stream_name(self.domain)


class Reactions:
    """What a consumer does with which events: per event, the model it is read into and the
    reaction that applies it."""

    def __init__(self) -> None:
        self._registered: dict[EventName, _Registered[Any]] = {}

    def on(
        self, event: EventName, model: type[EventT]
    ) -> Callable[[Reaction[EventT]], Reaction[EventT]]:
        """Decorator: the function reacts to `event`, its payload read into `model`."""

        def register(react: Reaction[EventT]) -> Reaction[EventT]:
            if event in self._registered:
                raise ValueError(f"a second reaction to {event}")
            self._registered[event] = _Registered(model, react)
            return react

        return register

    @property
    def events(self) -> list[EventName]:
        """The events reacted to, in the order they were registered."""
        return list(self._registered)

    def subscriptions(self) -> list[Subscription]:
        """One subscription per producing domain, subjects in the order they were registered."""
        subjects: dict[str, list[str]] = {}
        for event in self._registered:
            subjects.setdefault(event.domain, []).append(event.subject)
        return [Subscription(domain, tuple(names)) for domain, names in subjects.items()]

    def bind(self, envelope: Envelope) -> Bound | None:
        """The reaction to `envelope` with its payload read (None: nothing here reacts to it).

        Raises `InvalidEvent` when the payload does not fit the event's model.
        """
        registered = self._registered.get(envelope.name)
        return None if registered is None else registered.bind(envelope)


@dataclass
class _Retries:
    """What this process saw of one message that did not apply at once."""

    not_yet: int = 0
    failures: int = 0


def _event_id(data: bytes) -> uuid.UUID | None:
    """The event id of a message body, if it has a readable one."""
    try:
        return uuid.UUID(json.loads(data)["id"])
    except (ValueError, KeyError, TypeError):
        return None


def _subjects(config: ConsumerConfig) -> list[str]:
    """The subjects a consumer's configuration filters on, in a comparable order."""
    if config.filter_subjects:
        return sorted(config.filter_subjects)
    return [config.filter_subject] if config.filter_subject else []


def _drift(current: ConsumerConfig, wanted: ConsumerConfig) -> dict[str, list[Any]]:
    """The settings this module owns on which a deployed durable differs: {name: [was, wanted]}.

    The deliver policy is not among them: JetStream keeps a durable's from its creation.
    """
    pairs: dict[str, tuple[Any, Any]] = {
        "filter_subjects": (_subjects(current), _subjects(wanted)),
        "ack_policy": (current.ack_policy, wanted.ack_policy),
        "ack_wait": (current.ack_wait, wanted.ack_wait),
        "max_deliver": (current.max_deliver, wanted.max_deliver),
    }
    return {name: [was, now] for name, (was, now) in pairs.items() if was != now}


class EventConsumer:
    """One named consumer: its durable JetStream consumers, its database, its reactions."""

    def __init__(
        self,
        name: str,
        db: DomainDatabase,
        js: JetStreamContext,
        reactions: Reactions,
        *,
        batch: int = 50,
        retry_delay_s: float = 1.0,
        max_deliver: int = 10,
        fetch_wait_s: float = FETCH_WAIT_S,
        on_applied: Callable[[], None] | None = None,
        meter: MetricMeter | None = None,
    ) -> None:
        self.name, self.db, self.js = name, db, js
        self.reactions, self.subscriptions = reactions, reactions.subscriptions()
        self.batch, self.retry_delay_s, self.max_deliver = batch, retry_delay_s, max_deliver
        self.fetch_wait_s = fetch_wait_s
        # Called after an event's transaction committed (wakes whoever acts on what it wrote).
        self.on_applied = on_applied
        # Events dead-lettered: a producer and its reader drifted, or a reaction keeps failing.
        self.rejected = 0
        # Per (stream, stream sequence), until the message is acked or terminated.
        self._retrying: OrderedDict[tuple[str, int], _Retries] = OrderedDict()
        self._rejected = (
            (meter or MetricMeter.noop)
            .create_counter("consumer_rejected", "events a consumer gave up on (dead-lettered)")
            .with_additional_attributes({"consumer": name})
        )

    async def apply(self, envelope: Envelope) -> bool:
        """Apply one event exactly once; False if applied before or nothing here reacts to it.

        The payload is read before the transaction: `InvalidEvent` leaves the database untouched.
        """
        react = self.reactions.bind(envelope)
        if react is None:
            return False
        async with self.db.begin() as session:
            if not await first_delivery(session, self.name, envelope.id):
                return False
            await react(session)
            return True

    async def handle(self, message: Msg) -> None:
        """Apply one JetStream message, then ack, nak for later, or dead-letter it."""
        try:
            applied = await self.apply(Envelope.parse(message.data))
        except InvalidEvent as exc:
            await self._dead_letter(message, "invalid", exc)
            return
        except NotYet:
            retries = self._retries(message)
            retries.not_yet += 1
            delay = self.retry_delay_s * 2.0 ** min(retries.not_yet - 1, 16)
            await message.nak(delay=min(delay, MAX_NOT_YET_DELAY_S))
            return
        except Exception as exc:
            retries = self._retries(message)
            retries.failures += 1
            if retries.failures >= self.max_deliver:
                await self._dead_letter(message, "failed", exc)
                return
            log.exception(
                "consumer.failed",
                consumer=self.name,
                subject=message.subject,
                failures=retries.failures,
                deliveries=message.metadata.num_delivered,
            )
            await message.nak(delay=self._backoff(retries.failures))
            return
        self._done(message)
        if applied and self.on_applied is not None:
            self.on_applied()
        await message.ack()

    def _retries(self, message: Msg) -> _Retries:
        """This process's count of the message's waits and failures."""
        key = (message.metadata.stream, message.metadata.sequence.stream)
        retries = self._retrying.get(key)
        if retries is None:
            retries = self._retrying[key] = _Retries()
            if len(self._retrying) > _RETRYING_MAX:
                self._retrying.popitem(last=False)
        return retries

    def _done(self, message: Msg) -> None:
        """The message will not come back: forget its retries."""
        if self._retrying:
            metadata = message.metadata
            self._retrying.pop((metadata.stream, metadata.sequence.stream), None)

    def _backoff(self, failures: int) -> float:
        """Five retry delays after the first failure, doubling with each failure, capped."""
        return min(self.retry_delay_s * 5 * 2.0 ** max(failures - 1, 0), MAX_RETRY_DELAY_S)

    async def _dead_letter(self, message: Msg, reason: str, error: Exception) -> None:
        """Keep the message in `consumer_dead_letters`, count and log it, then terminate it.

        Terminated only once recorded: if the record cannot be written (the database is down),
        the message comes back later instead of vanishing.
        """
        metadata = message.metadata
        try:
            async with self.db.begin() as session:
                await record_dead_letter(
                    session,
                    consumer=self.name,
                    stream=metadata.stream,
                    stream_seq=metadata.sequence.stream,
                    subject=message.subject,
                    event_id=_event_id(message.data),
                    reason=reason,
                    deliveries=metadata.num_delivered,
                    error=f"{type(error).__name__}: {error}"[:4000],
                    data=message.data,
                )
        except Exception:
            log.exception("consumer.dead_letter_failed", consumer=self.name, reason=reason)
            await message.nak(delay=self._backoff(metadata.num_delivered))
            return
        self._done(message)
        self.rejected += 1
        self._rejected.add(1, {"reason": reason})
        log.error(
            "consumer.rejected",
            consumer=self.name,
            subject=message.subject,
            reason=reason,
            deliveries=metadata.num_delivered,
            error=str(error),
        )
        await message.term()

    async def _consume(self, subscription: Subscription, stop: asyncio.Event) -> None:
        durable = await self._durable(subscription)
        sub = await self.js.pull_subscribe_bind(durable=durable, stream=subscription.stream)
        try:
            while not stop.is_set():
                for message in await self._fetch(sub, stop):
                    await self.handle(message)
        finally:
            # A pull request left waiting on the server must not deliver into a dead inbox.
            with suppress(Exception):
                await sub.unsubscribe()

    async def _durable(self, subscription: Subscription) -> str:
        """The subscription's durable JetStream consumer, created on first use and brought up to
        date in place when an earlier release left it with other subjects or settings.

        A restarted process resumes where the durable was, and so does an updated durable: it
        keeps its delivered and acknowledged positions, so nothing read before is read again,
        and an added subject's events are delivered from there on. Its events published before
        the update lie behind that position and are not delivered: a reaction that must also
        read the stream's past needs a consumer of its own (another name, hence new durables
        that start at the stream's beginning).
        """
        durable = f"{self.name}-{subscription.stream}".replace(".", "_")
        wanted = ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subjects=list(subscription.subjects),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=_ACK_WAIT_S,
            max_deliver=-1,
        )
        try:
            info = await self.js.consumer_info(subscription.stream, durable)
        except NotFoundError:
            await self.js.add_consumer(subscription.stream, wanted)
            return durable
        drift = _drift(info.config, wanted)
        if drift:
            # Without an action the server creates or updates: here, an update of the durable.
            await self.js.add_consumer(subscription.stream, wanted)
            log.info(
                "consumer.durable_updated",
                consumer=self.name,
                stream=subscription.stream,
                durable=durable,
                changed=drift,
            )
        return durable

    async def _fetch(
        self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event
    ) -> list[Msg]:
        """The next messages: one pull request, waiting up to `fetch_wait_s` (or until `stop`)."""
        fetching = asyncio.create_task(sub.fetch(self.batch, timeout=self.fetch_wait_s))
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([fetching, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if fetching not in done:
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            return []
        try:
            return fetching.result()
        except (NatsTimeout, TimeoutError):
            return []  # nothing new within the wait (nats-py raises either kind)

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
