"""The FastAPI application and its lifespan: the one place the API is wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import make_asgi_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from api import errors
from api.auth import verifier_for
from api.deps import Platform, RateLimiter
from api.metrics import METRICS_PATH, RequestMetrics
from api.routers import (
    aftersale,
    carts,
    catalog,
    checkouts,
    codec,
    health,
    ops,
    orders,
    returns,
    users,
    webhooks,
)
from kit.budget import check_connection_budget, process_connections
from kit.db import DomainDatabase
from kit.settings import ProcessRole, Settings, get_settings
from kit.temporal import connect
from kit.tracing import tracer_provider
from workflows.checkout.client import CheckoutClient

# The API reads and writes through these domains' services.
API_DOMAINS = (
    "accounts",
    "products",
    "inventory",
    "coupons",
    "cart",
    "checkout",
    "orders",
    "payments",
    "shipping",
)


# Every router, in the order FastAPI tries their routes (one by one, about 1.5 µs each): the
# busiest first, the checkouts' (every status read) and the webhooks' (several per checkout). No
# request matches routes of two routers (tests/api/test_route_order.py): the order decides nothing.
ROUTERS = (
    checkouts,
    webhooks,
    carts,
    catalog,
    orders,
    returns,
    users,
    aftersale,
    ops,
    codec,
    health,
)

# The API's spans come from its own tracer provider under TRACING_ENABLED (FastAPIInstrumentor
# below), never from OpenTelemetry's global providers, which this platform does not set. FastAPI's
# built-in telemetry would look those global providers up on every request (three environment
# reads each) to find them unset: off.
NO_NATIVE_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, counted as they stream in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await errors.problem(413, "body_too_large", f"at most {self.limit} bytes")(
                scope, receive, send
            )
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise errors.ApiError(413, "body_too_large", f"at most {self.limit} bytes")
            return message

        await self.app(scope, counted, send)


def create_app(
    settings: Settings | None = None,
    temporal: Client | None = None,
    tracing: TracerProvider | None = None,
) -> FastAPI:
    """The API; `temporal` may be handed in (tests), else it is connected in the lifespan."""
    config = (settings or get_settings()).validate_for(ProcessRole("api"))
    provider = tracing or tracer_provider(config, "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await check_connection_budget(
            {d: process_connections(config, pools=1) for d in API_DOMAINS}, config, "the API"
        )
        databases = {d: DomainDatabase.from_settings(d, config, "api") for d in API_DOMAINS}
        client = temporal or await connect(
            config.temporal,
            lazy=True,
            # The trace of a request continues into the workflow it starts or signals.
            interceptors=(
                [TracingInterceptor(provider.get_tracer("temporal"))] if provider else []
            ),
        )
        app.state.platform = Platform(
            settings=config,
            databases=databases,
            temporal=client,
            checkouts=CheckoutClient(client),
            checkout_limiter=RateLimiter(config.checkout.rate_per_minute),
            verifier=verifier_for(config),
        )
        try:
            yield
        finally:
            await app.state.platform.verifier.aclose()
            for db in databases.values():
                await db.dispose()

    app = FastAPI(
        title="Checkout platform",
        version="1.0.0",
        description=(
            "Carts to paid, reserved, shippable orders. Errors are application/problem+json "
            "with a stable `code`. Money is a decimal string plus an ISO 4217 code."
        ),
        lifespan=lifespan,
        telemetry=NO_NATIVE_TELEMETRY,
    )
    errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=config.api.max_body_bytes)
    # The web UI calls the payload codec from its own origin (api/routers/codec.py).
    app.add_middleware(codec.CodecCors, origin=codec.ui_origin(config))
    # Outermost: counts every answer, the body limit's 413 and the error handlers' too.
    app.add_middleware(RequestMetrics)
    # Prometheus text format; not part of the OpenAPI document.
    app.mount(METRICS_PATH, make_asgi_app())
    if provider is not None:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return app
