"""A total below the provider's minimum charge ends the checkout `amount_below_minimum` before
anything reaches the provider, with its stock and cart released."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.conftest import Caller
from tests.api.shop import Shop
from tests.platform import Platform

pytestmark = pytest.mark.timeout(120)


async def test_a_total_below_the_minimum_charge_fails_before_the_provider(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform
) -> None:
    shop = Shop(http, operator, alice, platform)
    variant = await shop.variant(price="0.10", stock=3)
    cart_id = await shop.cart((variant, 2))
    checkout_id = await shop.checkout(cart_id)

    done = await shop.wait(checkout_id)

    assert done["status"] == "failed", done
    assert done["order"]["total_amount"] == "0.20"
    assert done["failure"]["code"] == "amount_below_minimum", done
    assert await platform.ledger(uuid.UUID(checkout_id)) == []  # nothing reached the provider
    assert await shop.invariants(checkout_id) == []
