"""EasyPost's endpoints as the sandbox serves them, under `/v2` (the `easypost` package's base).

EasyPost's own (`/v2/shipments*`) want the API key (`Authorization: Bearer EASYPOST_API_KEY`, as
the package sends it) and answer EasyPost's error shape; the sandbox's own (the label PDF, the
event log, the test helper that moves a tracker now) do not.

"Carrier down" on demand: `POST /v1/test_helpers/carrier/fault` with `{"mode": "error"}` makes
shipment create, buy and refund answer 503 in EasyPost's error shape before doing anything (the
codes EasyPost publishes for a carrier that does not answer: `SHIPMENT.RATES.UNAVAILABLE`,
`SHIPMENT.POSTAGE.NO_RESPONSE`, `REFUND.NO_RESPONSE`),
`{"mode": "hang"}` answer only after SANDBOX_CARRIER_HANG_S (or the body's `hang_s`; then
normally, as a slow carrier does after the client gave up), `{"mode": "none"}` behave again.
SANDBOX_CARRIER_FAULT sets the mode a sandbox starts in. Reads and the tracker's own moves and
webhooks are not affected.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sqlite3
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from kit.logging import get_logger
from sandbox.easypost import objects, shipments
from sandbox.easypost.shipments import EasyPostApiError
from sandbox.psp.auth import presented_key
from sandbox.psp.idempotency import json_response
from sandbox.psp.routes import Sandbox

log = get_logger(__name__)

PREFIX = "/v2"
FAULT_PATH = "/v1/test_helpers/carrier/fault"


class CarrierFaultRequest(BaseModel):
    """`POST /v1/test_helpers/carrier/fault`: how shipment create, buy and refund misbehave."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["none", "error", "hang"]
    hang_s: float | None = Field(default=None, ge=0, le=600)


class CarrierFaults:
    """The fault the carrier's shipment writes simulate now (`none`, `error`, `hang`)."""

    def __init__(self, mode: str, hang_s: float) -> None:
        self.mode = mode
        self.hang_s = hang_s

    async def check(self, endpoint: str, code: str) -> None:
        """Fail (503 with EasyPost's `code` for the endpoint) or stall a carrier request as the
        current mode says (before any effect; after its body was read, so that a stalled request
        still acts once its client gave up)."""
        if self.mode == "error":
            log.info("sandbox.carrier.fault", endpoint=endpoint, mode="error")
            raise EasyPostApiError(503, code, "The carrier is temporarily unavailable (sandbox).")
        if self.mode == "hang":
            log.info("sandbox.carrier.fault", endpoint=endpoint, mode="hang", seconds=self.hang_s)
            await asyncio.sleep(self.hang_s)

    def as_json(self) -> dict[str, Any]:
        """The switch's position, as its endpoint answers it."""
        return {"mode": self.mode, "hang_s": self.hang_s}


def _check_key(request: Request, expected: str) -> None:
    key = presented_key(request.headers.get("authorization"))
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise EasyPostApiError(401, "UNAUTHORIZED", "Invalid or missing API key.")


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else {}
    except ValueError as exc:
        raise EasyPostApiError(400, "BAD_REQUEST", "The body is not JSON.") from exc


def easypost_router(sandbox: Sandbox) -> APIRouter:
    """Shipments, labels, refunds and trackers, as EasyPost serves them, and the sandbox's
    switch that makes the carrier fail or stall."""
    faults = CarrierFaults(sandbox.config.carrier_fault, sandbox.config.carrier_hang_s)
    router = APIRouter()
    router.include_router(_shipment_routes(sandbox, faults))

    @router.post(FAULT_PATH)
    async def set_fault(request: Request) -> Response:
        """Make shipment writes fail (`error`), stall (`hang`) or behave (`none`)."""
        try:
            body = CarrierFaultRequest.model_validate(await _json(request))
        except EasyPostApiError as exc:
            return json_response(exc.status, exc.body())
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            return json_response(422, objects.error("PARAMETER.INVALID", message))
        faults.mode = body.mode
        if body.hang_s is not None:
            faults.hang_s = body.hang_s
        log.warning("sandbox.carrier.fault_set", **faults.as_json())
        return json_response(200, faults.as_json())

    return router


def _shipment_routes(sandbox: Sandbox, faults: CarrierFaults) -> APIRouter:
    """EasyPost's own endpoints under /v2, and the sandbox's beside them."""
    router = APIRouter(prefix=PREFIX)
    store = sandbox.store
    step_s = sandbox.config.carrier_step_s
    base_url = sandbox.psp_url + PREFIX
    api_key = sandbox.settings.easypost.api_key.get_secret_value()

    async def answer(
        request: Request,
        operation: Callable[[sqlite3.Connection], dict[str, Any]],
        status: int = 200,
        *,
        writes: bool = True,
    ) -> Response:
        """Run `operation` for a caller with the API key; EasyPost's error shape on failure."""
        try:
            _check_key(request, api_key)
            if not writes:
                return json_response(status, await store.read(operation))
            body = await store.transaction(operation)
        except EasyPostApiError as exc:
            return json_response(exc.status, exc.body())
        sandbox.changed()
        return json_response(status, body)

    @router.post("/shipments")
    async def create_shipment(request: Request) -> Response:
        """A shipment with its rates."""
        try:
            params = shipments.parse_shipment(await _json(request))
            await faults.check("POST /v2/shipments", "SHIPMENT.RATES.UNAVAILABLE")
        except EasyPostApiError as exc:
            return json_response(exc.status, exc.body())
        return await answer(request, lambda conn: shipments.create_shipment(conn, params), 201)

    @router.get("/shipments/{shipment_id}")
    async def retrieve_shipment(shipment_id: str, request: Request) -> Response:
        """One shipment."""
        return await answer(
            request, lambda conn: shipments.get_shipment(conn, shipment_id), writes=False
        )

    @router.post("/shipments/{shipment_id}/buy")
    async def buy(shipment_id: str, request: Request) -> Response:
        """Buy one of the shipment's rates (`{"rate": {"id": ...}}`)."""
        try:
            params = await _json(request)
            await faults.check("POST /v2/shipments/:id/buy", "SHIPMENT.POSTAGE.NO_RESPONSE")
        except EasyPostApiError as exc:
            return json_response(exc.status, exc.body())
        rate = params.get("rate") if isinstance(params, dict) else None
        rate_id = str(rate.get("id", "")) if isinstance(rate, dict) else ""
        return await answer(
            request,
            lambda conn: shipments.buy(
                conn, shipment_id, rate_id, base_url=base_url, step_s=step_s
            ),
        )

    @router.post("/shipments/{shipment_id}/refund")
    async def refund(shipment_id: str, request: Request) -> Response:
        """Void the shipment's label."""
        try:
            await faults.check("POST /v2/shipments/:id/refund", "REFUND.NO_RESPONSE")
        except EasyPostApiError as exc:
            return json_response(exc.status, exc.body())
        return await answer(request, lambda conn: shipments.refund(conn, shipment_id))

    _add_sandbox_routes(router, sandbox)
    return router


def _add_sandbox_routes(router: APIRouter, sandbox: Sandbox) -> None:
    """The sandbox's own endpoints beside EasyPost's: the test helper moving a tracker now, the
    label PDFs, the event log with delivery states (no API key)."""
    store = sandbox.store
    step_s = sandbox.config.carrier_step_s

    @router.post("/test_helpers/shipments/{shipment_id}/advance")
    async def advance(shipment_id: str) -> Response:
        """Move the shipment's tracker to its next status now (sends its `tracker.updated`)."""
        try:
            body = await store.transaction(
                lambda conn: shipments.advance(conn, shipment_id, step_s=step_s)
            )
        except EasyPostApiError as exc:
            return json_response(exc.status, exc.body())
        sandbox.changed()
        return json_response(200, body)

    @router.get("/labels/{filename}")
    async def label(filename: str) -> Response:
        """The shipment's label as a PDF."""
        shipment_id = filename.removesuffix(".pdf")
        try:
            shipment = await store.read(lambda conn: shipments.get_shipment(conn, shipment_id))
        except EasyPostApiError as exc:
            return json_response(exc.status, exc.body())
        if shipment["tracking_code"] is None or shipment_id == filename:
            return json_response(404, objects.error("NOT_FOUND", "No such label."))
        return Response(
            shipments.label_pdf(shipment["id"], shipment["tracking_code"]),
            media_type="application/pdf",
        )

    @router.get("/events")
    async def events(
        shipment: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> Response:
        """The carrier's events, newest first, with their delivery state."""
        return json_response(
            200, await store.read(lambda conn: shipments.list_events(conn, shipment, limit))
        )
