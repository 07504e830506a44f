"""Declined cards end to end (Temporal, PostgreSQL, the Stripe sandbox through the official SDK):
the intent comes back `requires_payment_method`, the payment is `failed` with the issuer's code for
operators, and the buyer never learns that the card was reported lost or stolen."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.platform import Platform

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("payment_method", "issuer_code", "shown"),
    [
        ("pm_card_chargeDeclinedStolenCard", "stolen_card", "generic_decline"),
        ("pm_card_chargeDeclinedLostCard", "lost_card", "generic_decline"),
        ("pm_card_radarBlock", "fraudulent", "generic_decline"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
async def test_a_decline_fails_the_checkout_telling_the_buyer_only_what_helps(
    platform: Platform, payment_method: str, issuer_code: str, shown: str
) -> None:
    checkout, handle = await platform.checkout(token=payment_method)

    body = await handle.result()

    assert body.failure is not None
    assert body.failure.code == "payment_declined"
    assert shown in body.failure.message
    if shown != issuer_code:
        assert issuer_code not in body.failure.message
    async with platform.databases["payments"].begin() as session:
        payment = (
            await session.execute(
                text("SELECT status, last_error_code FROM payments WHERE checkout_id = :c"),
                {"c": checkout.checkout_id},
            )
        ).one()
    assert (payment.status, payment.last_error_code) == ("failed", issuer_code)
    assert await platform.invariants(checkout.checkout_id) == []
