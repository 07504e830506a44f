"""The one place where worker processes are wired: clients, databases, activities, workflows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import nats
from sqlalchemy import Table, func, select
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.cart.activities import CartActivities
from activities.checkout.activities import CheckoutActivities
from activities.coupons.activities import CouponsActivities
from activities.errors import PermanentFailures
from activities.inventory.activities import InventoryActivities
from activities.orders.activities import OrdersActivities
from activities.payments.activities import PaymentsActivities
from activities.payments.aftersale import AfterSaleActivities
from activities.payments.metered import MeteredProvider
from activities.payments.refunds import RefundActivities
from activities.payments.tax import TaxActivities, tax_provider
from activities.products.activities import ProductsActivities
from activities.shipping.activities import ShippingActivities
from domains.notifications.models import Notification
from domains.notifications.sender import DevSender, send_due
from domains.notifications.statuses import NotificationStatus
from domains.payments.models import PaymentWebhookEvent
from domains.payments.stripe_provider import StripeProvider
from domains.shipping.carrier import EasyPostCarrier
from domains.shipping.models import ShippingQuote
from kit import inbox, temporal
from kit.budget import check_connection_budget, process_connections
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.relay import OutboxRelay, StreamLimits
from kit.retention import BATCH, prune_older_than
from kit.settings import Settings
from kit.tracing import tracer_provider
from workers.consumers import CONSUMERS, consumers_for
from workers.context import LogContextInterceptor
from workers.gauges import INTERVAL_S as GAUGES_INTERVAL_S
from workers.gauges import CheckoutGauges
from workers.periodic import run_every, run_when_woken
from workers.sweeper import sweep_expired_reservations
from workers.versioning import deployment_config, serve_version
from workflows.aftersale import PaymentAfterSaleWorkflow, RefundRetryWorkflow
from workflows.checkout.contract import TaskQueue
from workflows.checkout.workflow import CheckoutWorkflow
from workflows.order_cancel.workflow import OrderCancelWorkflow
from workflows.order_refund.workflow import OrderRefundWorkflow
from workflows.reconcile import ReconcilePaymentWorkflow
from workflows.returns.workflow import ReturnWorkflow

log = get_logger(__name__)

# The sender runs when the notifications consumer applied an event and when a retry falls due;
# without either, it still looks this often (a wake lost to a crash, rows written elsewhere).
SENDER_IDLE_S = 60.0
# A notification due but not sent (another sender holds it) is looked at again this soon.
SENDER_MIN_WAIT_S = 1.0

# `checkout_step_duration`'s buckets (ms): a step takes milliseconds to seconds, the buyer's
# `awaiting_payment` up to the payment window (15 min); Temporal's default buckets end at 10 s.
STEP_DURATION_BUCKETS_MS = (
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
    30_000.0, 60_000.0, 180_000.0, 300_000.0, 600_000.0, 900_000.0, 1_800_000.0,
)  # fmt: skip

# Domains with a task queue in the checkout saga (accounts and notifications have none yet).
WORKER_DOMAINS: tuple[str, ...] = tuple(queue.value for queue in TaskQueue)


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting Prometheus metrics on WORKER_METRICS_HOST:WORKER_METRICS_PORT,
    if a port is set."""
    if settings.worker.metrics_port is None:
        return None
    metrics = PrometheusConfig(
        bind_address=metrics_address(settings),
        histogram_bucket_overrides={"checkout_step_duration": STEP_DURATION_BUCKETS_MS},
    )
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))


def metrics_address(settings: Settings) -> str:
    """Where a worker process serves its metrics (`host:port`; `[v6]:port` for an IPv6 host)."""
    host = settings.worker.metrics_host
    return (
        f"[{host}]:{settings.worker.metrics_port}"
        if ":" in host
        else f"{host}:{settings.worker.metrics_port}"
    )


def meter_of(client: Client) -> MetricMeter:
    """The meter of the runtime a client was connected with (its Prometheus endpoint)."""
    return (client.service_client.config.runtime or Runtime.default()).metric_meter


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A Temporal client speaking pydantic payloads (and tracing, when TRACING_ENABLED)."""
    provider = tracer_provider(settings, "workers")
    return await temporal.connect(
        settings.temporal,
        runtime=runtime,
        # A client interceptor that is also a worker interceptor: workers built on this client
        # continue the trace through workflows and activities.
        interceptors=[TracingInterceptor(provider.get_tracer("temporal"))] if provider else [],
    )


def _activities(
    domain: str, db: DomainDatabase, settings: Settings, stack: AsyncExitStack, meter: MetricMeter
) -> list[Callable[..., Any]]:
    """The activity callables of one domain, built around its database and clients."""
    if domain == "cart":
        cart = CartActivities(db)
        return [cart.lock_cart, cart.unlock_cart, cart.mark_converted]
    if domain == "products":
        return [ProductsActivities(db).price_cart]
    if domain == "coupons":
        coupons = CouponsActivities(db)
        return [coupons.reserve_coupon, coupons.release_coupon, coupons.confirm_coupon]
    if domain == "inventory":
        inventory = InventoryActivities(db)
        return [
            inventory.reserve_inventory,
            inventory.release_inventory,
            inventory.commit_inventory,
            inventory.restock,
        ]
    if domain == "orders":
        orders = OrdersActivities(db)
        return [
            orders.create_order,
            orders.cancel_order,
            orders.mark_paid,
            orders.mark_fulfilling,
            orders.move_return,
            orders.receive_return,
        ]
    if domain == "payments":
        provider = StripeProvider(
            api_key=settings.stripe.api_key.get_secret_value(),
            api_base=settings.stripe.api_base,
            timeout_s=settings.stripe.timeout_s,
            return_url=settings.stripe.return_url,
        )
        stack.push_async_callback(provider.aclose)
        metered = MeteredProvider(provider, meter)
        payments = PaymentsActivities(db, metered)
        after_sale = AfterSaleActivities(db, metered)
        refunds = RefundActivities(db, metered)
        taxes = tax_provider(settings)
        if taxes is not None:
            stack.push_async_callback(taxes.aclose)
        tax = TaxActivities(db, taxes, settings.tax)
        return [
            payments.authorize_payment,
            payments.confirm_payment,
            payments.refresh_payment,
            payments.capture_payment,
            payments.void_payment,
            payments.settle_ended,
            after_sale.after_sale,
            after_sale.retry_refund,
            refunds.request_refund,
            refunds.send_refund,
            tax.calculate_tax,
            tax.commit_tax,
            tax.reverse_tax,
        ]
    if domain == "shipping":
        carrier = EasyPostCarrier(
            settings.easypost.api_key.get_secret_value(),
            api_base=settings.easypost.api_base,
            timeout_s=settings.easypost.timeout_s,
        )
        shipping = ShippingActivities(db, carrier, warehouse=settings.shipping.from_address)
        return [
            shipping.create_shipment,
            shipping.cancel_shipment,
            shipping.create_return_label,
            shipping.withdraw_shipment,
        ]
    if domain == "checkout":
        checkout = CheckoutActivities(db)
        return [checkout.open_session, checkout.record_progress]
    raise ValueError(f"no worker for domain {domain!r}")


@dataclass(frozen=True)
class Extras:
    """Additional workflows and activities per queue (the benchmark's no-op baseline)."""

    workflows: Sequence[type] = ()
    activities: Callable[[str], list[Callable[..., Any]]] = lambda _queue: []


async def build_worker(
    domain: str,
    client: Client,
    settings: Settings,
    db: DomainDatabase,
    stack: AsyncExitStack,
    extras: Extras | None = None,
) -> Worker:
    """The worker of one domain's task queue, holding only that domain's database."""
    extras = extras or Extras()
    workflows: list[type] = (
        [
            CheckoutWorkflow,
            ReconcilePaymentWorkflow,
            OrderCancelWorkflow,
            ReturnWorkflow,
            PaymentAfterSaleWorkflow,
            RefundRetryWorkflow,
            OrderRefundWorkflow,
            *extras.workflows,
        ]
        if domain == TaskQueue.CHECKOUT
        else []
    )
    return Worker(
        client,
        task_queue=domain,
        workflows=workflows,
        # Workflow workers only: activity workers never replay, and their payloads stay
        # compatible across releases (docs/deployment.md, "Worker versioning").
        deployment_config=deployment_config(settings, domain) if workflows else None,
        activities=[
            *_activities(domain, db, settings, stack, meter_of(client)),
            *extras.activities(domain),
        ],
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker.max_concurrent_workflow_tasks,
        max_concurrent_local_activities=settings.worker.max_concurrent_local_activities,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker.shutdown_grace_s),
        interceptors=[LogContextInterceptor(), PermanentFailures()],
    )


# How long an expired shipping quote is kept (for questions about a checkout that just used it).
EXPIRED_QUOTE_RETENTION = timedelta(days=1)


def inboxes(domain: str, settings: Settings) -> list[tuple[Table, str, timedelta]]:
    """The tables of a domain's database whose rows only matter for a while, each with the column
    their age is read from and how long a row must stay: a consuming domain's consumer inbox, the
    payments' webhook inbox (kept longer than the provider redelivers), the shipping quotes (a
    day past their expiry)."""
    tables = []
    if domain in CONSUMERS:
        tables.append((inbox.INBOX, "received_at", settings.consumer.inbox_retention))
    if domain == "payments":
        webhooks = PaymentWebhookEvent.metadata.tables[PaymentWebhookEvent.__tablename__]
        tables.append((webhooks, "received_at", settings.stripe.webhook_retention))
    if domain == "shipping":
        quotes = ShippingQuote.metadata.tables[ShippingQuote.__tablename__]
        tables.append((quotes, "expires_at", EXPIRED_QUOTE_RETENTION))
    return tables


async def prune_inboxes(
    domain: str, db: DomainDatabase, settings: Settings, batch: int = BATCH
) -> int:
    """Delete the rows of a domain's inboxes past their retention, in batches."""
    deleted = 0
    for table, column, retention in inboxes(domain, settings):
        deleted += await prune_older_than(db, table, column, retention, batch)
    if deleted:
        log.info("inbox.pruned", domain=domain, deleted=deleted)
    return deleted


def stream_limits(settings: Settings) -> StreamLimits:
    """How a missing stream is created: events kept as long as a consumer's inbox remembers them
    (docs/deployment.md, "NATS"); an existing stream is left as the operator configured it."""
    return StreamLimits(max_age=settings.consumer.inbox_retention)


async def send_notifications(db: DomainDatabase, sender: DevSender) -> float | None:
    """Send every notification due; the seconds until the next pending one falls due (at least
    `SENDER_MIN_WAIT_S`; None: nothing pending)."""
    while await send_due(db, sender):
        pass
    async with db.begin() as session:
        due = await session.scalar(
            select(func.min(Notification.next_attempt_at)).where(
                Notification.status == NotificationStatus.PENDING.value
            )
        )
    if due is None:
        return None
    return max((due - datetime.now(UTC)).total_seconds(), SENDER_MIN_WAIT_S)


async def start_relays(
    domains: Sequence[str],
    settings: Settings,
    stop: asyncio.Event,
    stack: AsyncExitStack,
    meter: MetricMeter | None = None,
) -> list[asyncio.Task[None]]:
    """Per domain: its outbox relay, its event consumers (the notifications sender too) and the
    pruning of its inboxes."""
    connection = await nats.connect(settings.nats.url, name="outbox-relay")
    stack.push_async_callback(connection.close)
    js = connection.jetstream()
    meter = meter or Runtime.default().metric_meter
    limits = stream_limits(settings)
    tasks = []
    for domain in domains:
        db = DomainDatabase.from_settings(domain, settings, "events")
        stack.push_async_callback(db.dispose)
        applied = asyncio.Event()  # a consumer of this domain committed an event
        consumers = await consumers_for(
            domain,
            db,
            js,
            max_deliver=settings.consumer.max_deliver,
            meter=meter,
            limits=limits,
            on_applied=applied.set,
        )
        for consumer in consumers:
            tasks.append(asyncio.create_task(consumer.run(stop)))
        if domain == "notifications":
            send = partial(send_notifications, db, DevSender(settings.data_dir / "outbox-mail"))
            sender = run_when_woken(
                "notifications.sender", stop, applied, send, idle_s=SENDER_IDLE_S
            )
            tasks.append(asyncio.create_task(sender))
        if inboxes(domain, settings):
            prune = partial(prune_inboxes, domain, db, settings)
            interval_s = settings.worker.prune_interval_s
            tasks.append(asyncio.create_task(run_every("inbox.prune", interval_s, stop, prune)))
        relay = OutboxRelay(
            domain,
            db,
            js,
            meter=meter,
            listen_dsn=settings.domain_database_url(domain),
            partitions=settings.relay.partitions,
            poll_interval_s=settings.relay.poll_interval_s,
            retention=settings.relay.retention,
            stream=limits,
        )
        tasks.append(asyncio.create_task(relay.run(stop)))
    return tasks


def worker_connections(settings: Settings) -> int:
    """The most connections a worker process opens to its domain's database: the activities'
    pool (the inventory sweeper's too), the relay's pool and LISTEN (RELAY_ENABLED)."""
    relay = settings.relay.enabled
    return process_connections(settings, pools=1 + relay, listen=int(relay))


async def run_relays(domains: Sequence[str], settings: Settings, stop: asyncio.Event) -> None:
    """Only the relays of `domains` (`python -m workers relay <domain> ...`)."""
    await check_connection_budget(
        {d: process_connections(settings, pools=1, listen=1) for d in domains},
        settings,
        "a relay process",
    )
    async with AsyncExitStack() as stack:
        runtime = metrics_runtime(settings) or Runtime.default()
        tasks = await start_relays(domains, settings, stop, stack, runtime.metric_meter)
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_workers(
    domains: Sequence[str],
    settings: Settings,
    stop: asyncio.Event,
    client: Client | None = None,
    extras: Extras | None = None,
) -> None:
    """Run the workers of `domains` until `stop` is set, then drain them within the grace period."""
    await check_connection_budget(
        {d: worker_connections(settings) for d in domains}, settings, "a worker process"
    )
    async with AsyncExitStack() as stack:
        client = client or await connect_temporal(settings, metrics_runtime(settings))
        databases = {d: DomainDatabase.from_settings(d, settings, "worker") for d in domains}
        for db in databases.values():
            stack.push_async_callback(db.dispose)
        workers = [
            await build_worker(d, client, settings, databases[d], stack, extras) for d in domains
        ]
        background: list[asyncio.Task[None]] = []
        if "inventory" in domains:
            # The sweeper shares the activities' pool: one sweep at a time, a connection each.
            sweeper = sweep_expired_reservations(databases["inventory"], client, settings, stop)
            background.append(asyncio.create_task(sweeper))
        if "checkout" in domains:
            gauges = CheckoutGauges(databases["checkout"], meter_of(client))
            background.append(
                asyncio.create_task(
                    run_every("checkout.gauges", GAUGES_INTERVAL_S, stop, gauges.observe)
                )
            )
        if settings.relay.enabled:
            background += await start_relays(domains, settings, stop, stack, meter_of(client))
        runs = [asyncio.create_task(worker.run()) for worker in workers]
        # A release's workflow workers make their version current once they poll.
        versions = [c.version for w in workers if (c := w.config().get("deployment_config"))]
        for version in versions:
            served = serve_version(client, version, stop, meter_of(client))
            background.append(asyncio.create_task(served))
        log.info("workers.started", domains=list(domains), task_queues=list(domains))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *runs], return_when=asyncio.FIRST_COMPLETED)
        if stopped not in done:
            for task in done:
                task.result()  # a worker died: surface its error
        log.info("workers.draining", grace_s=settings.worker.shutdown_grace_s)
        await asyncio.gather(*(worker.shutdown() for worker in workers))
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        log.info("workers.stopped", domains=list(domains))
