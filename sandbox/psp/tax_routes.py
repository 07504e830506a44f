"""HTTP endpoints of Stripe Tax in the sandbox, and the switch that makes them fail.

`POST /v1/tax/calculations`, `GET /v1/tax/calculations/{id}/line_items`,
`POST /v1/tax/transactions/create_from_calculation`, `POST /v1/tax/transactions/create_reversal`
and `GET /v1/tax/transactions/{id}/line_items` want the API key; the POSTs run under the
Idempotency-Key as every Stripe POST does.

"Tax service down" on demand: `POST /v1/test_helpers/tax/fault` with `mode=error` makes every
tax endpoint answer 500 `api_error` before doing anything, `mode=hang` answer only after
SANDBOX_TAX_HANG_S (then normally, as a slow service does after the client gave up), `mode=none`
behave again. SANDBOX_TAX_FAULT sets the mode a sandbox starts in.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from kit.logging import get_logger
from sandbox.psp import tax, tax_reversals
from sandbox.psp.auth import require_api_key
from sandbox.psp.errors import ApiError
from sandbox.psp.idempotency import json_response
from sandbox.psp.models import Outcome
from sandbox.psp.permissions import needs
from sandbox.psp.routes import M, Sandbox, parse_body
from sandbox.psp.tax_models import (
    CalculationRequest,
    FromCalculationRequest,
    ReversalRequest,
    TaxFaultRequest,
)

log = get_logger(__name__)

PageLimit = Annotated[int, Query(ge=1, le=100)]


class TaxFaults:
    """The fault the tax endpoints simulate now (`none`, `error`, `hang`)."""

    def __init__(self, mode: str, hang_s: float) -> None:
        self.mode = mode
        self.hang_s = hang_s

    async def check(self, endpoint: str) -> None:
        """Fail or stall a tax request as the current mode says (before any effect)."""
        if self.mode == "error":
            log.info("sandbox.tax.fault", endpoint=endpoint, mode="error")
            raise ApiError(
                500, "api_error", None, "An unexpected error occurred in Stripe Tax (sandbox)."
            )
        if self.mode == "hang":
            log.info("sandbox.tax.fault", endpoint=endpoint, mode="hang", seconds=self.hang_s)
            await asyncio.sleep(self.hang_s)


def tax_router(sandbox: Sandbox) -> APIRouter:
    """Stripe Tax's endpoints behind the API key, and the sandbox's fault switch."""
    faults = TaxFaults(sandbox.config.tax_fault, sandbox.config.tax_hang_s)
    api_key = sandbox.settings.stripe.api_key.get_secret_value()
    stripe = APIRouter(
        dependencies=[Depends(require_api_key(api_key, sandbox.config.restricted_keys))]
    )
    _calculation_routes(stripe, sandbox, faults)
    _transaction_routes(stripe, sandbox, faults)
    router = APIRouter()
    router.include_router(stripe)

    @router.post("/v1/test_helpers/tax/fault")
    async def set_fault(request: Request) -> Response:
        """Make the tax endpoints fail (`error`), stall (`hang`) or behave (`none`)."""
        body, _ = await parse_body(request, TaxFaultRequest)
        faults.mode = body.mode
        log.warning("sandbox.tax.fault_set", mode=body.mode)
        return json_response(200, {"mode": faults.mode})

    return router


async def _post(
    request: Request,
    sandbox: Sandbox,
    faults: TaxFaults,
    endpoint: str,
    model: type[M],
    operation: Callable[[sqlite3.Connection, M], Outcome],
) -> Response:
    """A tax POST: the fault switch, then the body read into `model` and `operation` run once
    per Idempotency-Key."""
    await faults.check(endpoint)
    return await sandbox.post(request, endpoint, model, operation)


async def _lines(
    sandbox: Sandbox,
    faults: TaxFaults,
    endpoint: str,
    url: str,
    read: Callable[[sqlite3.Connection], list[dict[str, Any]]],
    page: tuple[int, str | None],
) -> Response:
    """A page (`limit`, `starting_after`) of a calculation's or a transaction's line items."""
    await faults.check(endpoint)
    lines = await sandbox.store.read(read)
    return json_response(200, tax.page(lines, url, *page))


def _calculation_routes(router: APIRouter, sandbox: Sandbox, faults: TaxFaults) -> None:
    @router.post(
        "/v1/tax/calculations", dependencies=[needs("tax_calculations_and_transactions_write")]
    )
    async def create_calculation(request: Request) -> Response:
        """Calculate the tax of line items and shipping for a customer's address."""
        return await _post(
            request,
            sandbox,
            faults,
            "POST /v1/tax/calculations",
            CalculationRequest,
            tax.create_calculation,
        )

    @router.get(
        "/v1/tax/calculations/{calculation_id}/line_items",
        dependencies=[needs("tax_calculations_and_transactions_read")],
    )
    async def calculation_lines(
        calculation_id: str, limit: PageLimit = 10, starting_after: str | None = None
    ) -> Response:
        """A calculation's line items, a page at a time."""
        return await _lines(
            sandbox,
            faults,
            "GET /v1/tax/calculations/:id/line_items",
            f"/v1/tax/calculations/{calculation_id}/line_items",
            lambda conn: tax.calculation_lines(conn, calculation_id),
            (limit, starting_after),
        )


def _transaction_routes(router: APIRouter, sandbox: Sandbox, faults: TaxFaults) -> None:
    @router.post(
        "/v1/tax/transactions/create_from_calculation",
        dependencies=[needs("tax_calculations_and_transactions_write")],
    )
    async def create_from_calculation(request: Request) -> Response:
        """Record a calculation as a tax transaction."""
        return await _post(
            request,
            sandbox,
            faults,
            "POST /v1/tax/transactions/create_from_calculation",
            FromCalculationRequest,
            tax.create_from_calculation,
        )

    @router.post(
        "/v1/tax/transactions/create_reversal",
        dependencies=[needs("tax_calculations_and_transactions_write")],
    )
    async def create_reversal(request: Request) -> Response:
        """Reverse a tax transaction in full or in part."""
        return await _post(
            request,
            sandbox,
            faults,
            "POST /v1/tax/transactions/create_reversal",
            ReversalRequest,
            tax_reversals.create_reversal,
        )

    @router.get(
        "/v1/tax/transactions/{transaction_id}/line_items",
        dependencies=[needs("tax_calculations_and_transactions_read")],
    )
    async def transaction_lines(
        transaction_id: str, limit: PageLimit = 10, starting_after: str | None = None
    ) -> Response:
        """A transaction's line items, a page at a time."""
        return await _lines(
            sandbox,
            faults,
            "GET /v1/tax/transactions/:id/line_items",
            f"/v1/tax/transactions/{transaction_id}/line_items",
            lambda conn: tax.transaction_lines(conn, transaction_id),
            (limit, starting_after),
        )
