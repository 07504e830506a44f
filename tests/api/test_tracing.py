"""Tracing, switched on: HTTP requests are spans, and the workflow start continues the trace."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

import httpx
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from api.auth import issue_token
from kit.tracing import tracer_provider
from tests.api.conftest import Caller
from tests.api.test_routes import checkout_body, new_cart, new_variant
from tests.platform import Platform


async def test_off_by_default(platform: Platform) -> None:
    assert tracer_provider(platform.settings, "api") is None


async def test_a_checkout_request_is_traced_into_temporal(platform: Platform) -> None:
    settings = platform.settings.updated(tracing={"enabled": True})
    spans = InMemorySpanExporter()
    provider = tracer_provider(settings, "api", SimpleSpanProcessor(spans))
    assert provider is not None
    app = create_app(settings, tracing=provider)  # its own Temporal client, with the interceptor
    operator = Caller(
        uuid.uuid4(),
        {"Authorization": f"Bearer {issue_token(settings, uuid.uuid4(), ['operator'])}"},
    )
    buyer = Caller(uuid.uuid4(), {})
    buyer.headers["Authorization"] = f"Bearer {issue_token(settings, buyer.user_id, ['customer'])}"
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        )
        variant = await new_variant(http, operator)
        cart = await new_cart(http, buyer, variant)
        started = await http.post(
            "/v1/checkouts",
            json=checkout_body(cart),
            headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert started.status_code == 202
    await platform.client.get_workflow_handle(f"checkout-{started.json()['checkout_id']}").result()

    names = [span.name for span in spans.get_finished_spans()]
    assert "POST /v1/checkouts" in names
    assert "StartWorkflow:CheckoutWorkflow" in names
    by_name = {span.name: span for span in spans.get_finished_spans()}
    http_span = by_name["POST /v1/checkouts"]
    start_span = by_name["StartWorkflow:CheckoutWorkflow"]
    assert start_span.context.trace_id == http_span.context.trace_id  # one trace
