"""The platform for saga and API tests: real Temporal, PostgreSQL and sandbox, in-process domain
workers, and the real HTTP API served on a port (the sandbox delivers its webhooks there)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from temporalio.client import Client, WorkflowHandle

from activities.shared import Address, MoneyValue
from api.app import create_app
from api.services.shipping import carrier
from devstack.processes import sandbox_process
from devstack.services.process import free_port
from domains.shipping import quotes
from domains.shipping.carrier import Parcel
from kit.db import DomainDatabase
from kit.settings import Settings
from kit.temporal import connect
from tests.conftest import Service
from tools.invariants import check_invariants
from tools.seed import Seeder, new_input
from workers.bootstrap import WORKER_DOMAINS, run_relays, run_workers
from workflows.checkout.client import CheckoutClient
from workflows.checkout.contract import checkout_id_of
from workflows.checkout.models import CheckoutInput, CheckoutStatusBody
from workflows.checkout.workflow import CheckoutWorkflow

# Small provider timeouts so tok_flaky's hang (3 s) outlasts the client (2 s) in a test's time.
PSP_TIMEOUT_S = 2.0
# Parcels do not travel on their own in tests (an hour a step): tests move them with the
# sandbox's `advance` helper, so no order changes status behind another test's back.
SANDBOX_ENV = {
    "SANDBOX_ASYNC_DELAY_S": "0.5",
    "SANDBOX_FLAKY_HANG_S": "3",
    "SANDBOX_CARRIER_STEP_S": "3600",
}


@dataclass
class Platform:
    """Everything a saga test talks to."""

    client: Client
    settings: Settings
    databases: dict[str, DomainDatabase]
    seed: Seeder
    psp_url: str
    api_url: str
    histories: list[WorkflowHandle[Any, Any]]

    async def start(
        self, checkout: CheckoutInput
    ) -> WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]:
        """Start a checkout and remember it for the replay test."""
        handle = await CheckoutClient(self.client).start(checkout)
        self.histories.append(handle)
        return handle

    async def checkout(
        self,
        *,
        token: str = "tok_visa",
        coupon_code: str | None = None,
        quantity: int = 1,
        price: str = "19.99",
        stock: int = 100,
    ) -> tuple[CheckoutInput, WorkflowHandle[CheckoutWorkflow, CheckoutStatusBody]]:
        """A fresh user, variant and cart, and a started checkout."""
        variant = await self.seed.variant(price=price, stock=stock)
        user_id = uuid.uuid4()
        cart_id = await self.seed.cart(user_id, [(variant, quantity)])
        checkout = new_input(user_id=user_id, cart_id=cart_id, token=token, coupon_code=coupon_code)
        return checkout, await self.start(checkout)

    async def invariants(self, *checkout_ids: uuid.UUID) -> list[str]:
        """Violations of the invariants (empty when all hold)."""
        report = await check_invariants(self.databases, self.psp_url, checkout_ids or None)
        return report.violations

    async def ledger(self, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
        """The provider's ledger rows of one checkout."""
        async with httpx.AsyncClient(base_url=self.psp_url) as http:
            rows = (await http.get("/v1/ledger")).json()["data"]
        return [r for r in rows if (r.get("metadata") or {}).get("checkout_id") == str(checkout_id)]

    async def wait_recorded(
        self, handle: WorkflowHandle[Any, Any], status: str, within_s: float = 30
    ) -> dict[str, Any] | None:
        """Poll the checkout's database record until it shows `status`; its `next_action` then.
        It asks no worker, so it suits checkouts in their first seconds on workers with a tiny
        cache: a query about a run a worker has not cached makes it rebuild the run, which can
        trip the first-second watch's race (tests/workflows/test_run_watch_race.py)."""
        checkout_id = checkout_id_of(handle.id)
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            async with self.databases["checkout"].begin() as session:
                row = (
                    await session.execute(
                        text("SELECT status, next_action FROM checkout_sessions WHERE id = :c"),
                        {"c": checkout_id},
                    )
                ).first()
            if row is not None and row.status == status:
                next_action: dict[str, Any] | None = row.next_action
                return next_action
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"recorded {row and row.status} after {within_s}s, not {status}"
                )
            await asyncio.sleep(0.1)

    async def wait_status(
        self, handle: WorkflowHandle[Any, Any], status: str, within_s: float = 30
    ) -> CheckoutStatusBody:
        """Poll the `status` query until the checkout reaches `status`."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            body: CheckoutStatusBody = await handle.query(CheckoutWorkflow.status)
            if body.status == status:
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still {body.status} at {body.step} after {within_s}s")
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Rate:
    """A shipping quote a checkout may name, and its price."""

    id: uuid.UUID
    price: MoneyValue


async def quoted_rate(
    platform: Platform, cart_id: uuid.UUID, user_id: uuid.UUID, address: Address
) -> Rate:
    """The cheapest of the carrier's rates for a default parcel to `address`, kept as a quote
    of the cart (as `POST /v1/carts/{id}/shipping-rates` keeps it)."""
    to_address = address.model_dump(mode="json")
    parcel = Parcel.of_millimetres(500, 300, 200, 100)
    shipment = await carrier(platform.settings).create(
        to_address=quotes.carrier_address(to_address),
        from_address=platform.settings.shipping.from_address,
        parcel=parcel,
        reference=f"cart:{cart_id}",
    )
    async with platform.databases["shipping"].begin() as session:
        stored = await quotes.store_quotes(
            session,
            cart_id=cart_id,
            user_id=user_id,
            address=to_address,
            parcel=parcel,
            shipment=shipment,
            expires_at=datetime.now(UTC) + timedelta(minutes=15),
        )
    cheapest = stored[0]
    return Rate(cheapest.id, MoneyValue(amount=cheapest.amount, currency=cheapest.currency))


def taxing(settings: Settings) -> Settings:
    """The settings with TAX_PROVIDER=stripe (the sandbox's Stripe Tax)."""
    return settings.updated(tax={"provider": "stripe"})


@asynccontextmanager
async def serve_api(platform: Platform, settings: Settings) -> AsyncIterator[str]:
    """Another API process on the platform (its own settings, the same databases, Temporal
    and workers), served until exit; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, temporal=platform.client),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            log_config=None,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the API did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def temporal_client(temporal: Service, settings: Settings) -> Client:
    """A client of the session's Temporal speaking the platform's (encrypted) payloads."""
    return await connect(settings.temporal.model_copy(update={"address": temporal.url}))


@pytest.fixture(scope="session")
async def platform(
    migrated: Settings,
    temporal: Service,
    temporal_client: Client,
    databases: dict[str, DomainDatabase],
    work_dir: Path,
    nats: Service,
) -> AsyncIterator[Platform]:
    """Sandbox, webhook relay and every domain worker, for the whole session."""
    api_port, psp_port = free_port(), free_port()
    psp_url = f"http://127.0.0.1:{psp_port}"
    psp = sandbox_process(
        port=psp_port,
        db_path=work_dir / "sandbox" / "psp.sqlite",
        webhook_url=f"http://127.0.0.1:{api_port}/v1/webhooks/payments/stripe",
        log_dir=work_dir / "logs",
        extra_env=SANDBOX_ENV,
        carrier_webhook_url=f"http://127.0.0.1:{api_port}/v1/webhooks/carriers/easypost",
    )
    settings = migrated.updated(
        temporal={"address": temporal.url},
        nats={"url": nats.url},
        psp={"url": psp_url, "timeout_s": PSP_TIMEOUT_S},
        stripe={"api_base": psp_url, "timeout_s": PSP_TIMEOUT_S},
        easypost={"api_base": f"{psp_url}/v2"},
        worker={"shutdown_grace_s": 2.0},
        data_dir=work_dir,
    )
    # The real HTTP API, in this event loop: it receives the sandbox's webhooks too.
    api = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, temporal=temporal_client),
            host="127.0.0.1",
            port=api_port,
            log_level="warning",
            log_config=None,
        )
    )
    stop = asyncio.Event()
    psp.start()
    api_task = asyncio.create_task(api.serve())
    while not api.started:  # the first test may call the API right away
        assert not api_task.done(), "the API did not start"
        await asyncio.sleep(0.02)
    # The workers can tax (Stripe Tax in the sandbox); whether a checkout is taxed is decided
    # where it starts (the API's TAX_PROVIDER, `none` here): `taxed_api` starts taxed ones.
    workers = asyncio.create_task(
        run_workers(WORKER_DOMAINS, taxing(settings), stop, client=temporal_client)
    )
    # Notifications has no task queue: its relay, consumer and sender run on their own.
    notifications = asyncio.create_task(run_relays(["notifications"], settings, stop))
    try:
        yield Platform(
            client=temporal_client,
            settings=settings,
            databases=databases,
            seed=Seeder(databases),
            psp_url=psp_url,
            api_url=f"http://127.0.0.1:{api_port}",
            histories=[],
        )
    finally:
        stop.set()
        await workers
        await notifications
        api.should_exit = True
        await api_task
        psp.stop()
