"""HTTP endpoints of the sandbox: payment intents, refunds, disputes, test helpers.

Stripe's endpoints (`/v1/payment_intents*`, `/v1/refunds`, `/v1/disputes*`) want the API key;
the sandbox's own (the 3DS page a browser visits, the ledger, the event log) do not. The carrier
(EasyPost's API) is sandbox/easypost.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import HTMLResponse, Response

from kit.settings import Settings
from sandbox.psp import disputes, form, payments, permissions
from sandbox.psp.auth import require_api_key
from sandbox.psp.errors import invalid_value, parameter_error
from sandbox.psp.idempotency import Idempotency, canonical_hash, json_response
from sandbox.psp.models import (
    CancelRequest,
    CaptureRequest,
    ConfirmIntentRequest,
    CreateIntentRequest,
    DisputeUpdateRequest,
    EmptyRequest,
    Outcome,
    RefundRequest,
)
from sandbox.psp.permissions import needs
from sandbox.psp.store import Store
from sandbox.settings import SandboxSettings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Sandbox:
    """What the endpoints share: both settings, the store, the idempotency runner, change hook."""

    settings: Settings
    config: SandboxSettings
    store: Store
    idempotency: Idempotency
    changed: Callable[[], None]

    @property
    def psp_url(self) -> str:
        """The sandbox's own base URL, as clients reach it."""
        return self.settings.psp.url.rstrip("/")

    async def execute(
        self,
        request: Request,
        endpoint: str,
        request_hash: str,
        operation: Callable[[sqlite3.Connection], Outcome],
        *,
        flaky_scope: str | None = None,
    ) -> Response:
        """Run a POST's `operation` once per the request's Idempotency-Key (a retry replays)."""
        return await self.idempotency.execute(
            key=_key(request),
            endpoint=endpoint,
            request_hash=request_hash,
            operation=operation,
            flaky_scope=flaky_scope,
        )

    async def post(
        self,
        request: Request,
        endpoint: str,
        model: type[M],
        operation: Callable[[sqlite3.Connection, M], Outcome],
        *,
        flaky_scope: str | None = None,
    ) -> Response:
        """A POST's body read into `model` (400 if it does not fit), then `operation` run on it
        once per the request's Idempotency-Key."""
        body, digest = await parse_body(request, model)
        return await self.execute(
            request, endpoint, digest, lambda conn: operation(conn, body), flaky_scope=flaky_scope
        )


async def parse_body(request: Request, model: type[M]) -> tuple[M, str]:
    """The validated body and the hash of its canonical form (an empty body is `{}`).

    Form-encoded with bracket notation as Stripe's SDKs send it (the reference), or JSON (a curl
    convenience): both decode to the same dict, so they validate alike and share an
    Idempotency-Key's hash.
    """
    raw = await request.body()
    data: object = {}
    if form.is_form(request.headers.get("content-type")):
        data = form.decode(raw)
    elif raw.strip():
        try:
            data = json.loads(raw)
        except ValueError:
            raise invalid_value(
                "The request body must be JSON (content-type: application/json)."
            ) from None
    if not isinstance(data, dict):
        raise invalid_value("The request body must be a JSON object.")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise parameter_error(exc.errors()[0]) from None
    return parsed, canonical_hash(data)


def _key(request: Request) -> str | None:
    return request.headers.get("idempotency-key")


async def _flaky_scope(store: Store, kind: str, intent_id: str) -> str | None:
    """The tok_flaky call counter of `kind` calls on an intent (None: not a tok_flaky intent)."""
    # Read outside the transaction: only a confirmation with another method changes it.
    token = await store.read(lambda conn: payments.token_of(conn, intent_id))
    return f"{kind}:{intent_id}" if token == payments.TOK_FLAKY else None


def payments_router(sandbox: Sandbox) -> APIRouter:
    """Stripe's endpoints behind the API key, then the 3DS page, the ledger and the event log."""
    api_key = sandbox.settings.stripe.api_key.get_secret_value()
    key_check = require_api_key(api_key, sandbox.config.restricted_keys)
    stripe = APIRouter(dependencies=[Depends(key_check)])
    _intent_routes(stripe, sandbox)
    _intent_action_routes(stripe, sandbox)
    _refund_routes(stripe, sandbox)
    _dispute_routes(stripe, sandbox)
    router = APIRouter()
    router.include_router(stripe)
    _3ds_routes(router, sandbox)
    _ledger_routes(router, sandbox)
    return router


def _intent_routes(router: APIRouter, sandbox: Sandbox) -> None:
    """Create, search and read payment intents."""
    store = sandbox.store
    config = sandbox.config

    @router.post("/v1/payment_intents", dependencies=[needs("payment_intent_write")])
    async def create_intent(request: Request) -> Response:
        """Create and authorize a payment intent."""
        body, digest = await parse_body(request, CreateIntentRequest)
        key = _key(request)
        scope = None
        if body.method is not None and payments.behaviour_of(body.method) == payments.TOK_FLAKY:
            # "Per intent" for a create means per key, or per identical body without one.
            scope = f"create:key:{key}" if key is not None else f"create:body:{digest}"
        return await sandbox.execute(
            request,
            "POST /v1/payment_intents",
            digest,
            functools.partial(
                payments.create_intent,
                req=body,
                psp_url=sandbox.psp_url,
                async_delay_s=config.async_delay_s,
            ),
            flaky_scope=scope,
        )

    # Before the route of one intent, which would take "search" for an id.
    @router.get("/v1/payment_intents/search", dependencies=[needs("payment_intent_read")])
    async def search_intents(
        query: str, limit: Annotated[int, Query(ge=1, le=payments.SEARCH_LIMIT_MAX)] = 10
    ) -> Response:
        """Intents by metadata (`query=metadata['checkout_id']:'...'`), newest first."""
        found = await store.read(lambda conn: payments.search(conn, query, limit))
        return json_response(200, found)

    @router.get("/v1/payment_intents/{intent_id}", dependencies=[needs("payment_intent_read")])
    async def get_intent(intent_id: str, request: Request) -> Response:
        """One payment intent; `expand[]=latest_charge` (or `expand[0]=...`) adds its charge."""
        params = request.query_params.multi_items()
        expand = {value for name, value in params if name.startswith("expand[")}
        if "latest_charge" in expand:
            permissions.check(request, "charge_read")
        body = await store.read(
            lambda conn: payments.require(conn, intent_id).expanded(conn, expand)
        )
        return json_response(200, body)


def _intent_action_routes(router: APIRouter, sandbox: Sandbox) -> None:
    """Confirm (again, after a decline), capture and cancel a payment intent."""
    store = sandbox.store
    config = sandbox.config

    @router.post(
        "/v1/payment_intents/{intent_id}/confirm", dependencies=[needs("payment_intent_write")]
    )
    async def confirm_intent(intent_id: str, request: Request) -> Response:
        """Confirm an intent again: after a decline, with another payment method."""
        return await sandbox.post(
            request,
            f"POST /v1/payment_intents/{intent_id}/confirm",
            ConfirmIntentRequest,
            lambda conn, body: payments.confirm_intent(
                conn,
                intent_id=intent_id,
                req=body,
                psp_url=sandbox.psp_url,
                async_delay_s=config.async_delay_s,
            ),
        )

    @router.post(
        "/v1/payment_intents/{intent_id}/capture", dependencies=[needs("payment_intent_write")]
    )
    async def capture_intent(intent_id: str, request: Request) -> Response:
        """Capture an authorized intent."""
        return await sandbox.post(
            request,
            f"POST /v1/payment_intents/{intent_id}/capture",
            CaptureRequest,
            lambda conn, body: payments.capture_intent(
                conn, intent_id, body, dispute_delay_s=config.dispute_delay_s
            ),
            flaky_scope=await _flaky_scope(store, "capture", intent_id),
        )

    @router.post(
        "/v1/payment_intents/{intent_id}/cancel", dependencies=[needs("payment_intent_write")]
    )
    async def cancel_intent(intent_id: str, request: Request) -> Response:
        """Cancel an intent that has not been captured."""
        return await sandbox.post(
            request,
            f"POST /v1/payment_intents/{intent_id}/cancel",
            CancelRequest,
            lambda conn, _: payments.cancel_intent(conn, intent_id),
            flaky_scope=await _flaky_scope(store, "cancel", intent_id),
        )


def _refund_routes(router: APIRouter, sandbox: Sandbox) -> None:
    """Refunds of captured intents."""
    store = sandbox.store
    fail_delay_s = sandbox.config.refund_fail_delay_s

    @router.post("/v1/refunds", dependencies=[needs("refund_write")])
    async def create_refund(request: Request) -> Response:
        """Refund a captured intent, in part or in full."""
        body, digest = await parse_body(request, RefundRequest)
        return await sandbox.execute(
            request,
            "POST /v1/refunds",
            digest,
            lambda conn: payments.create_refund(conn, body, refund_fail_delay_s=fail_delay_s),
            flaky_scope=await _flaky_scope(store, "refund", body.payment_intent),
        )


def _dispute_routes(router: APIRouter, sandbox: Sandbox) -> None:
    """Disputes of captured intents: read one, answer it with evidence, or accept it."""
    store = sandbox.store

    @router.get("/v1/disputes/{dispute_id}", dependencies=[needs("dispute_read")])
    async def get_dispute(dispute_id: str) -> Response:
        """One dispute (once opened)."""
        row = await store.read(lambda conn: disputes.require(conn, dispute_id))
        return json_response(200, disputes.to_json(row))

    @router.post("/v1/disputes/{dispute_id}", dependencies=[needs("dispute_write")])
    async def update_dispute(dispute_id: str, request: Request) -> Response:
        """Stage or submit evidence."""
        return await sandbox.post(
            request,
            f"POST /v1/disputes/{dispute_id}",
            DisputeUpdateRequest,
            lambda conn, body: disputes.update(conn, dispute_id, body),
        )

    @router.post("/v1/disputes/{dispute_id}/close", dependencies=[needs("dispute_write")])
    async def close_dispute(dispute_id: str, request: Request) -> Response:
        """Accept the dispute (it is lost)."""
        return await sandbox.post(
            request,
            f"POST /v1/disputes/{dispute_id}/close",
            EmptyRequest,
            lambda conn, _: disputes.close(conn, dispute_id),
        )


def _3ds_routes(router: APIRouter, sandbox: Sandbox) -> None:
    """The page behind next_action.redirect_to_url.url; a browser visits it, without a key."""
    store = sandbox.store

    @router.get("/v1/test_helpers/3ds/{intent_id}/authenticate")
    async def authenticate(intent_id: str, request: Request) -> Response:
        """The page behind next_action.url: visiting it completes the 3DS challenge."""
        intent = await store.transaction(lambda conn: payments.authenticate(conn, intent_id))
        sandbox.changed()
        accept = request.headers.get("accept", "")
        if "text/html" in accept and "application/json" not in accept:
            outcome = {
                "requires_capture": "approved",
                payments.DECLINED: "failed",
            }.get(intent.status, f"unchanged ({intent.status})")
            return HTMLResponse(
                "<!doctype html><title>Sandbox 3-D Secure</title>"
                f"<h1>3-D Secure {outcome}</h1><p>PaymentIntent {intent.id}</p>"
            )
        return json_response(200, intent.to_json())


def _ledger_routes(router: APIRouter, sandbox: Sandbox) -> None:
    """What the provider holds: every intent's amounts, and the webhook events."""
    store = sandbox.store

    @router.get("/v1/ledger")
    async def ledger(checkout_id: str | None = None) -> Response:
        """Every intent with its authorized, captured and refunded amounts."""
        return json_response(200, await store.read(lambda conn: payments.ledger(conn, checkout_id)))

    @router.get("/v1/events")
    async def events(
        payment_intent: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> Response:
        """Webhook events, newest first, with their delivery state."""
        return json_response(
            200,
            await store.read(lambda conn: payments.list_events(conn, payment_intent, limit)),
        )
