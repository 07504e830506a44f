"""The platform's own metrics, read from a real Prometheus endpoint of a Temporal runtime: the
names and labels the alert rules and the dashboard (deploy/monitoring) are written against."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import nats as nats_client
import pytest
from sqlalchemy import delete
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.payments.metered import MeteredProvider
from devstack.services.process import free_port
from domains.checkout.models import CheckoutSession
from domains.checkout.statuses import CheckoutStatus, StepName
from domains.payments.errors import ProviderUnavailable
from domains.payments.provider import Dispute, Intent, ProviderRejected
from kit.db import DomainDatabase
from kit.money import Money
from kit.relay import OutboxRelay
from kit.settings import Settings
from tests.conftest import Service
from workers.bootstrap import metrics_address, metrics_runtime
from workers.gauges import CheckoutGauges

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def endpoint() -> tuple[Runtime, str]:
    """A runtime serving Prometheus on a free loopback port, and its /metrics URL."""
    settings = Settings(worker={"metrics_port": free_port(), "metrics_host": "127.0.0.1"})
    runtime = metrics_runtime(settings)
    assert runtime is not None
    return runtime, f"http://{metrics_address(settings)}/metrics"


def scrape(url: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample (labels as exported: in alphabetical order;
    the runtime's own `service_name` dropped)."""
    samples = {}
    for line in httpx.get(url).text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[re.sub(r',?service_name="[^"]*"', "", series).replace("{,", "{")] = float(value)
    return samples


def test_the_bind_address_is_a_setting() -> None:
    assert metrics_address(Settings(worker={"metrics_port": 9100})) == "127.0.0.1:9100"
    wide = Settings(worker={"metrics_port": 9100, "metrics_host": "0.0.0.0"})
    assert metrics_address(wide) == "0.0.0.0:9100"
    assert metrics_address(Settings(worker={"metrics_port": 9100, "metrics_host": "::"})) == (
        "[::]:9100"
    )


class FlakyProvider:
    """Answers retrieve, refuses capture, is unavailable for cancel."""

    name = "flaky"

    async def authorize(
        self, amount: Money, *, payment_method: str, metadata: dict[str, str], key: str
    ) -> Intent:
        raise RuntimeError("unexpected")

    async def retrieve(self, intent_id: str) -> Intent:
        return Intent(intent_id, "succeeded", 100, "eur", 0, 100, 0, None, None)

    async def find_intent(self, checkout_id: str) -> Intent | None:
        return None

    async def capture(self, intent_id: str, *, key: str) -> Intent:
        raise ProviderRejected("card_declined", "declined", status=402)

    async def cancel(self, intent_id: str, *, key: str) -> Intent:
        raise ProviderUnavailable("timeout")

    async def refund(
        self, intent_id: str, *, amount: Money | None, key: str, purpose: str = "compensation"
    ) -> str:
        return "re_1"

    async def retrieve_dispute(self, dispute_id: str) -> Dispute:
        raise ProviderUnavailable("timeout")

    async def aclose(self) -> None:
        return None


async def test_payment_provider_calls_are_counted_by_outcome(
    endpoint: tuple[Runtime, str],
) -> None:
    runtime, url = endpoint
    provider = MeteredProvider(FlakyProvider(), runtime.metric_meter)
    await provider.retrieve("pi_1")
    await provider.refund("pi_1", amount=None, key="k")
    with pytest.raises(ProviderRejected):
        await provider.capture("pi_1", key="k")
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await provider.cancel("pi_1", key="k")
    with pytest.raises(RuntimeError):
        await provider.authorize(Money.of("1", "EUR"), payment_method="pm", metadata={}, key="k")
    samples = scrape(url)
    calls = 'payment_provider_calls{{operation="{}",outcome="{}",provider="flaky"}}'
    assert samples[calls.format("retrieve", "ok")] == 1
    assert samples[calls.format("refund", "ok")] == 1
    assert samples[calls.format("capture", "rejected")] == 1
    assert samples[calls.format("cancel", "unavailable")] == 2
    assert samples[calls.format("authorize", "error")] == 1


async def test_open_checkouts_are_gauged_per_step(
    endpoint: tuple[Runtime, str], databases: dict[str, DomainDatabase]
) -> None:
    runtime, url = endpoint
    db = databases["checkout"]
    moved = datetime.now(UTC) - timedelta(minutes=10)
    rows = [
        CheckoutSession(
            cart_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            status=status.value,
            idempotency_key=uuid.uuid4().hex,
            request_hash="0" * 64,
            step=StepName.NEEDS_ATTENTION.value,
            updated_at=moved,
        )
        for status in (CheckoutStatus.PROCESSING, CheckoutStatus.FAILED)
    ]
    async with db.begin() as session:
        session.add_all(rows)
    gauges = CheckoutGauges(db, runtime.metric_meter)
    try:
        await gauges.observe()
        samples = scrape(url)
        # Other tests' checkouts may stand there too; the ended one is never counted.
        assert samples['checkouts_open{step="needs_attention"}'] >= 1
        assert samples['checkouts_oldest_age{step="needs_attention"}'] >= 590
        assert {f'checkouts_open{{step="{s.value}"}}' for s in StepName} <= samples.keys()
    finally:
        async with db.begin() as session:
            await session.execute(
                delete(CheckoutSession).where(CheckoutSession.id.in_([r.id for r in rows]))
            )
    await gauges.observe()
    assert scrape(url)['checkouts_oldest_age{step="needs_attention"}'] < 590


async def test_the_relay_reports_its_listen_connection(
    endpoint: tuple[Runtime, str],
    databases: dict[str, DomainDatabase],
    nats: Service,
    migrated: Settings,
) -> None:
    runtime, url = endpoint
    connection = await nats_client.connect(nats.url)
    relay = OutboxRelay(
        "accounts",
        databases["accounts"],
        connection.jetstream(),
        listen_dsn=migrated.domain_database_url("accounts"),
        meter=runtime.metric_meter,
    )
    listening = 'outbox_relay_listening{domain="accounts"}'
    assert scrape(url)[listening] == 0
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(100):
            if scrape(url).get(listening) == 1:
                break
            await asyncio.sleep(0.1)
        assert scrape(url)[listening] == 1
    finally:
        stop.set()
        await task
        await connection.close()
    assert scrape(url)[listening] == 0


@activity.defn
async def noop() -> None:
    return None


@workflow.defn(sandboxed=False)
class OneActivity:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=10))


@pytest.fixture
async def client(endpoint: tuple[Runtime, str], temporal: Service) -> Client:
    return await Client.connect(temporal.url, runtime=endpoint[0])


async def test_temporal_exports_schedule_to_start_latency(
    endpoint: tuple[Runtime, str], client: Client
) -> None:
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[OneActivity],
        activities=[noop],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await client.execute_workflow(OneActivity.run, id=queue, task_queue=queue)
    samples = scrape(endpoint[1])
    names = {series.split("{", 1)[0] for series in samples}
    assert "temporal_activity_schedule_to_start_latency_bucket" in names
    assert "temporal_workflow_task_schedule_to_start_latency_bucket" in names
    # Histograms in milliseconds (the alert's thresholds are written in them).
    bounds = {
        re.search(r'le="([^"]+)"', series).group(1)  # type: ignore[union-attr]
        for series in samples
        if series.startswith("temporal_activity_schedule_to_start_latency_bucket")
    }
    assert {"1000", "10000"} <= bounds, bounds


def test_step_durations_reach_the_payment_window(endpoint: tuple[Runtime, str]) -> None:
    runtime, url = endpoint
    histogram = runtime.metric_meter.create_histogram_timedelta(
        "checkout_step_duration", "time spent in a checkout step"
    )
    histogram.record(timedelta(minutes=14), {"step": "awaiting_payment"})
    samples = scrape(url)
    bucket = 'checkout_step_duration_bucket{{step="awaiting_payment",le="{}"}}'
    # 14 minutes fall in the 15-minute bucket, not only in +Inf.
    assert samples[bucket.format("600000")] == 0
    assert samples[bucket.format("900000")] == 1
