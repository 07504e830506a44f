"""The API's request metrics: per route template and status, whatever answered."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from api.app import create_app
from api.metrics import RequestMetrics
from kit.settings import Settings


def count(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("api_requests_total", labels) or 0.0


def timed(method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return REGISTRY.get_sample_value("api_request_duration_seconds_count", labels) or 0.0


def app() -> FastAPI:
    application = FastAPI()

    @application.get("/t/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @application.post("/t/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @application.get("/metrics/")
    async def scrape() -> dict[str, str]:
        return {}

    application.add_middleware(RequestMetrics)
    return application


async def test_requests_are_counted_by_route_template_and_status() -> None:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    before = {
        "ok": count("GET", "/t/items/{item_id}", "200"),
        "invalid": count("GET", "/t/items/{item_id}", "422"),
        "missing": count("GET", "unmatched", "404"),
        "boom": count("POST", "/t/boom", "500"),
        "timed": timed("GET", "/t/items/{item_id}"),
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/t/items/1")).status_code == 200
        assert (await client.get("/t/items/2")).status_code == 200
        assert (await client.get("/t/items/x")).status_code == 422
        assert (await client.get("/t/nowhere/3")).status_code == 404
        assert (await client.post("/t/boom")).status_code == 500
        scrapes = count("GET", "/metrics/", "200")
        assert (await client.get("/metrics/")).status_code == 200
    assert count("GET", "/t/items/{item_id}", "200") == before["ok"] + 2
    assert count("GET", "/t/items/{item_id}", "422") == before["invalid"] + 1
    assert count("GET", "unmatched", "404") == before["missing"] + 1
    assert count("POST", "/t/boom", "500") == before["boom"] + 1
    assert timed("GET", "/t/items/{item_id}") == before["timed"] + 3
    assert count("GET", "/metrics/", "200") == scrapes == 0
    # The raw path never becomes a label value.
    assert count("GET", "/t/items/1", "200") == 0


async def test_the_api_counts_its_routes_by_template() -> None:
    transport = httpx.ASGITransport(app=create_app(Settings()), raise_app_exceptions=False)
    # Deltas: the registry is the process's, and other tests' apps count into it too.
    before = (
        count("GET", "/livez", "200"),
        count("GET", "unmatched", "404"),
        count("GET", "unmatched", "200"),
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/v1/no-such-thing")).status_code == 404
        assert (await client.get("/metrics/")).status_code == 200
    assert count("GET", "/livez", "200") == before[0] + 1
    assert count("GET", "unmatched", "404") == before[1] + 1
    assert count("GET", "unmatched", "200") == before[2]  # the scrape is not counted
