"""The sandbox's FastAPI application: routes, Stripe-shaped errors, and its background loops."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from kit.logging import get_logger
from kit.settings import Settings
from sandbox.easypost import shipments
from sandbox.easypost.routes import easypost_router
from sandbox.easypost.signing import easypost_headers
from sandbox.oidc import KeyRing, oidc_router
from sandbox.psp import disputes, payments, refunds
from sandbox.psp.errors import ApiError, parameter_error
from sandbox.psp.idempotency import Idempotency, json_response
from sandbox.psp.routes import Sandbox, payments_router
from sandbox.psp.scheduler import Scheduler, Timer
from sandbox.psp.signing import stripe_headers
from sandbox.psp.store import Store
from sandbox.psp.tax_routes import tax_router
from sandbox.psp.webhooks import (
    CARRIER_TARGET,
    PAYMENTS_TARGET,
    Signer,
    Target,
    WebhookDelivery,
)
from sandbox.settings import SandboxSettings

log = get_logger(__name__)


def db_path(settings: Settings, config: SandboxSettings) -> Path:
    """Where the sandbox keeps its state: SANDBOX_DB_PATH or DATA_DIR/sandbox/psp.sqlite."""
    return config.db_path or settings.data_dir / "sandbox" / "psp.sqlite"


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response(exc.status, exc.body(), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code >= 500:
        error = {"type": "api_error", "message": str(exc.detail)}
    elif exc.status_code == 404:
        error = {
            "type": "invalid_request_error",
            "message": f"Unrecognized request URL ({request.method}: {request.url.path}).",
        }
    else:
        error = {"type": "invalid_request_error", "message": str(exc.detail)}
    return json_response(exc.status_code, {"error": error})


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = dict(exc.errors()[0])
    # FastAPI prefixes where the value came from ("query", "path"); Stripe names the parameter.
    first["loc"] = tuple(first.get("loc", ()))[1:]
    error = parameter_error(first)
    return json_response(error.status, error.body())


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so uvicorn logs the traceback; this adds the path.
    log.error("sandbox.request.error", path=request.url.path, error=repr(exc))
    return json_response(
        500, {"error": {"type": "api_error", "message": "Unexpected error in the sandbox."}}
    )


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sandbox.loop.crashed", loop=task.get_name(), exc_info=task.exception())


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure answers a Stripe-shaped error body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


Endpoints = dict[Target, tuple[str, Signer]]


def stripe_secrets(settings: Settings) -> list[str]:
    """The secrets payment events are signed with: the current one, then during a rotation the
    previous one (Stripe sends a `v1=` for each until the old secret expires)."""
    secrets = [settings.stripe.webhook_secret.get_secret_value()]
    previous = settings.stripe.webhook_secret_previous
    if previous is not None and previous.get_secret_value():  # set but empty: no rotation
        secrets.append(previous.get_secret_value())
    return secrets


def _webhook_endpoints(settings: Settings, config: SandboxSettings) -> Endpoints:
    """Each target's webhook URL and signer.

    Payment events are Stripe `event` objects signed as Stripe signs them (`Stripe-Signature`
    with STRIPE_WEBHOOK_SECRET[_PREVIOUS]); the carrier's are EasyPost `Event`s signed as EasyPost
    signs them (`X-Hmac-Signature` with EASYPOST_WEBHOOK_SECRET). An empty URL records events
    without sending: they stay pending, listed with their delivery state.
    """
    payment_secrets = stripe_secrets(settings)
    carrier_secret = settings.easypost.webhook_secret.get_secret_value()
    return {
        PAYMENTS_TARGET: (
            config.webhook_url,
            lambda _event_id, body: stripe_headers(payment_secrets, body),
        ),
        CARRIER_TARGET: (
            config.carrier_webhook_url,
            lambda _event_id, body: easypost_headers(carrier_secret, body),
        ),
    }


def _deliveries(
    store: Store, endpoints: Endpoints, config: SandboxSettings
) -> dict[Target, WebhookDelivery]:
    """A delivery loop for each target with a URL."""
    return {
        target: WebhookDelivery(
            store,
            target=target,
            url=url,
            sign=sign,
            max_attempts=config.webhook_max_attempts,
        )
        for target, (url, sign) in endpoints.items()
        if url
    }


def _scheduler(
    sandbox: Sandbox, config: SandboxSettings, on_commit: Callable[[], None]
) -> Scheduler:
    """The timers: tok_async intents settling, and parcels moving along their tracking."""
    return Scheduler(
        sandbox.store,
        [
            Timer("tok_async", payments.next_due, payments.settle_due),
            Timer("refund_fail", refunds.next_due, refunds.fail_due),
            Timer("dispute", disputes.next_due, disputes.open_due),
            Timer(
                "tracking",
                shipments.next_due,
                functools.partial(shipments.advance_due, step_s=config.carrier_step_s),
            ),
        ],
        on_commit=on_commit,
    )


def _start_loops(
    scheduler: Scheduler, endpoints: Endpoints, deliveries: dict[Target, WebhookDelivery]
) -> list[asyncio.Task[None]]:
    """The timers and each target's webhook deliveries, as tasks (a crash is logged)."""
    loops: list[tuple[str, Coroutine[Any, Any, None]]] = [("timers", scheduler.run())]
    for target in endpoints:
        if target in deliveries:
            loops.append((f"webhooks.{target}", deliveries[target].run()))
        else:
            log.warning("sandbox.webhooks.disabled", target=target, reason="empty URL")
    tasks = []
    for name, coroutine in loops:
        task = asyncio.create_task(coroutine, name=f"sandbox.{name}")
        task.add_done_callback(_report_crash)
        tasks.append(task)
    return tasks


def create_app(settings: Settings, config: SandboxSettings) -> FastAPI:
    """The sandbox application; its lifespan opens the store and runs the background loops."""
    store = Store(db_path(settings, config))
    endpoints = _webhook_endpoints(settings, config)
    deliveries = _deliveries(store, endpoints, config)

    def changed() -> None:
        for delivery in deliveries.values():
            delivery.notify()
        scheduler.notify()

    idempotency = Idempotency(
        store,
        flaky_hang_s=config.flaky_hang_s,
        on_commit=changed,
        ttl_s=config.idempotency_ttl_s,
    )
    sandbox = Sandbox(settings, config, store, idempotency=idempotency, changed=changed)
    scheduler = _scheduler(sandbox, config, on_commit=changed)
    # The OpenID provider's keys live beside the database, so a restart keeps them.
    keys = KeyRing(store.path.parent / "oidc-keys.json")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.open()
        await store.transaction(shipments.create_schema)
        await keys.open()
        tasks = _start_loops(scheduler, endpoints, deliveries)
        log.info("sandbox.ready", psp_url=settings.psp.url, db=str(store.path))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            log.info("sandbox.stopped")

    app = FastAPI(title="Payment-provider sandbox", lifespan=lifespan)
    _install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @app.get("/v1/test_helpers/timers")
    async def timers() -> dict[str, dict[str, float]]:
        """The transitions the sandbox will still make on its own (an async payment settling,
        a refund failing, a dispute opening, a parcel moving), by timer: when the next is due.
        Empty once nothing is scheduled; audits wait for that before calling the platform
        quiet, since each transition sends a webhook the platform acts on."""
        return {"pending": await scheduler.pending()}

    app.include_router(payments_router(sandbox))
    app.include_router(tax_router(sandbox))
    app.include_router(easypost_router(sandbox))
    app.include_router(oidc_router(sandbox.psp_url, config, keys))
    return app
