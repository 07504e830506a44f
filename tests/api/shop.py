"""A shopper and an operator driving the platform through its HTTP API only (what users do)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from kit.db import DomainDatabase
from tests.api.conftest import Caller
from tests.api.test_routes import checkout_body, new_variant
from tests.platform import Platform
from workflows.checkout.contract import FINAL, StepName

Body = dict[str, Any]


@dataclass
class Shop:
    """The HTTP API as a shopper (`buyer`) and an operator use it."""

    http: httpx.AsyncClient
    operator: Caller
    buyer: Caller
    platform: Platform

    async def variant(self, *, price: str = "12.50", stock: int = 10) -> str:
        """A new product's variant with `stock` units at `price` USD."""
        return await new_variant(self.http, self.operator, stock=stock, price=price)

    async def cart(self, *lines: tuple[str, int]) -> str:
        """A cart of the buyer holding `lines` (variant id, quantity)."""
        created = await self.http.post(
            "/v1/carts", json={"currency": "USD"}, headers=self.buyer.headers
        )
        assert created.status_code == 201, created.text
        cart_id: str = created.json()["id"]
        for variant_id, quantity in lines:
            added = await self.http.post(
                f"/v1/carts/{cart_id}/items",
                json={"variant_id": variant_id, "quantity": quantity},
                headers=self.buyer.headers,
            )
            assert added.status_code == 200, added.text
        return cart_id

    async def coupon(self, kind: str, value: str, **extra: Any) -> str:
        """A coupon valid now (`percentage` or `fixed` USD)."""
        code = f"T{uuid.uuid4().hex[:10].upper()}"
        now = datetime.now(UTC)
        body = {
            "code": code,
            "discount_type": kind,
            "discount_value": value,
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_to": (now + timedelta(days=1)).isoformat(),
            **({"currency": "USD"} if kind == "fixed" else {}),
            **extra,
        }
        created = await self.http.post("/v1/coupons", json=body, headers=self.operator.headers)
        assert created.status_code == 201, created.text
        return code

    async def start(
        self, cart_id: str, *, token: str = "tok_visa", key: str | None = None, **extra: Any
    ) -> httpx.Response:
        """POST /v1/checkouts with an Idempotency-Key (a fresh one unless given)."""
        headers = {**self.buyer.headers, "Idempotency-Key": key or uuid.uuid4().hex}
        return await self.http.post(
            "/v1/checkouts", json=checkout_body(cart_id, token, **extra), headers=headers
        )

    async def checkout(self, cart_id: str, **kwargs: Any) -> str:
        """A started checkout's id (202 asserted)."""
        started = await self.start(cart_id, **kwargs)
        assert started.status_code == 202, started.text
        checkout_id: str = started.json()["checkout_id"]
        return checkout_id

    async def status(self, checkout_id: str) -> Body:
        """GET /v1/checkouts/{id} as the buyer."""
        answer = await self.http.get(f"/v1/checkouts/{checkout_id}", headers=self.buyer.headers)
        assert answer.status_code == 200, answer.text
        body: Body = answer.json()
        return body

    async def wait(
        self, checkout_id: str, *, step: str | None = None, within_s: float = 60
    ) -> Body:
        """Poll until the checkout has ended (or, with `step`, until it is at that step)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            body = await self.status(checkout_id)
            if (step is None and body["status"] in FINAL) or (step and body["step"] == step):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"checkout still {body['status']} at {body['step']}: {body}")
            await asyncio.sleep(0.1)

    async def wait_needs_attention(self, checkout_id: str) -> Body:
        """Poll until the checkout waits for an operator."""
        return await self.wait(checkout_id, step=StepName.NEEDS_ATTENTION.value)

    async def invariants(self, checkout_id: str) -> list[str]:
        """Violations of the invariants for this checkout (and stock, coupons)."""
        return await self.platform.invariants(uuid.UUID(checkout_id))


@asynccontextmanager
async def injected_fault(
    db: DomainDatabase, table: str, when: str, *, sqlstate: str, on: str = "UPDATE"
) -> AsyncIterator[None]:
    """A trigger making `on` of `table` rows matching `when` fail with `sqlstate`, until exit.

    The fault is in the database itself, so the platform meets it exactly as it would meet a
    real one (a data error, a serialization failure) on the real stack.
    """
    name = f"test_fault_{uuid.uuid4().hex[:12]}"
    row = "NEW" if on == "INSERT" else "OLD"
    async with db.begin() as session:
        await session.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"RAISE EXCEPTION 'injected fault' USING ERRCODE = '{sqlstate}'; END $$"
            )
        )
        await session.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE {on} ON {table} FOR EACH ROW "
                f"WHEN ({when.replace('ROW.', row + '.')}) EXECUTE FUNCTION {name}()"
            )
        )
    try:
        yield
    finally:
        async with db.begin() as session:
            await session.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
            await session.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))


def release_fails(platform: Platform, variant_id: str) -> AbstractAsyncContextManager[None]:
    """While open, giving back a reservation of `variant_id` fails for good (a data error): the
    checkout's `release_inventory` compensation cannot succeed and the checkout waits for an
    operator at needs_attention."""
    return injected_fault(
        platform.databases["inventory"],
        "inventory_reservations",
        f"ROW.variant_id = '{variant_id}'",
        sqlstate="22023",  # invalid_parameter_value: a data error, never retried
    )
