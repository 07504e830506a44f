"""The platform's payment provider (domains/payments/stripe_provider.py) against the sandbox:
each Stripe outcome becomes the provider interface's outcome the activities rely on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from devstack.services.process import free_port
from domains.payments.errors import ProviderUnavailable
from domains.payments.provider import ProviderMisuse, ProviderRejected
from domains.payments.stripe_provider import StripeProvider
from kit.money import Money
from tests.sandbox.conftest import API_KEY, Psp

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
TOTAL = Money(Decimal("42.50"), "EUR")


@pytest.fixture
async def provider(psp: Psp) -> AsyncIterator[StripeProvider]:
    stripe = StripeProvider(api_key=API_KEY, api_base=psp.url, timeout_s=5.0)
    yield stripe
    await stripe.aclose()


def _metadata() -> dict[str, str]:
    return {"checkout_id": str(uuid.uuid4())}


async def test_authorize_capture_refund_in_minor_units(provider: StripeProvider) -> None:
    key = uuid.uuid4().hex
    intent = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=_metadata(), key=f"{key}:a"
    )
    assert (intent.status, intent.amount, intent.currency) == ("requires_capture", 4250, "EUR")
    assert intent.amount_capturable == 4250
    assert intent.redirect_url is None

    captured = await provider.capture(intent.id, key=f"{key}:c")
    assert (captured.status, captured.amount_received) == ("succeeded", 4250)

    await provider.refund(intent.id, amount=Money(Decimal("10.00"), "EUR"), key=f"{key}:r1")
    assert (await provider.retrieve(intent.id)).amount_refunded == 1000
    await provider.refund(intent.id, amount=None, key=f"{key}:r2")
    assert (await provider.retrieve(intent.id)).amount_refunded == 4250


async def test_a_replayed_key_returns_the_same_intent(provider: StripeProvider) -> None:
    key, metadata = uuid.uuid4().hex, _metadata()
    first = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=metadata, key=key
    )
    again = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=metadata, key=key
    )
    assert again.id == first.id


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_insufficient_funds", "insufficient_funds"),
    ],
)
async def test_a_declined_card_is_a_card_rejection_with_its_failed_intent(
    provider: StripeProvider, method: str, decline_code: str
) -> None:
    with pytest.raises(ProviderRejected) as refused:
        await provider.authorize(
            TOTAL, payment_method=method, metadata=_metadata(), key=uuid.uuid4().hex
        )
    assert refused.value.card_error
    assert (refused.value.status, refused.value.code) == (402, "card_declined")
    assert refused.value.reason == decline_code
    assert refused.value.intent is not None
    assert refused.value.intent.status == "requires_payment_method"
    assert refused.value.intent.last_error_code == decline_code


async def test_an_unknown_payment_method_is_a_plain_rejection(provider: StripeProvider) -> None:
    with pytest.raises(ProviderRejected) as refused:
        await provider.authorize(
            TOTAL, payment_method="pm_card_unknown", metadata=_metadata(), key=uuid.uuid4().hex
        )
    assert not refused.value.card_error
    assert (refused.value.status, refused.value.reason) == (400, "resource_missing")
    assert refused.value.intent is None


async def test_three_d_secure_gives_the_redirect(psp: Psp) -> None:
    provider = StripeProvider(
        api_key=API_KEY, api_base=psp.url, timeout_s=5, return_url="https://shop.example/back"
    )
    intent = await provider.authorize(
        TOTAL,
        payment_method="pm_card_threeDSecure2Required",
        metadata=_metadata(),
        key=uuid.uuid4().hex,
    )
    assert intent.status == "requires_action"
    assert intent.redirect_url is not None
    assert intent.id in intent.redirect_url
    canceled = await provider.cancel(intent.id, key=uuid.uuid4().hex)
    assert canceled.status == "canceled"
    await provider.aclose()


async def test_an_intent_in_the_wrong_state_is_a_rejection_with_the_intent(
    provider: StripeProvider,
) -> None:
    intent = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=_metadata(), key=uuid.uuid4().hex
    )
    await provider.cancel(intent.id, key=uuid.uuid4().hex)
    with pytest.raises(ProviderRejected) as refused:
        await provider.capture(intent.id, key=uuid.uuid4().hex)
    assert refused.value.code == "payment_intent_unexpected_state"
    assert refused.value.intent is not None
    assert refused.value.intent.status == "canceled"


async def test_a_key_reused_for_other_parameters_is_a_misuse(provider: StripeProvider) -> None:
    key = uuid.uuid4().hex
    await provider.authorize(TOTAL, payment_method="pm_card_visa", metadata=_metadata(), key=key)
    with pytest.raises(ProviderMisuse, match="idempotency"):
        await provider.authorize(
            TOTAL, payment_method="pm_card_visa", metadata=_metadata(), key=key
        )


async def test_a_wrong_api_key_is_a_misuse(psp: Psp) -> None:
    wrong = StripeProvider(api_key="sk_test_not_the_key_0000000000", api_base=psp.url, timeout_s=5)
    try:
        with pytest.raises(ProviderMisuse, match="API key"):
            await wrong.retrieve("pi_whatever")
    finally:
        await wrong.aclose()


async def test_no_answer_and_server_errors_are_unavailable(provider: StripeProvider) -> None:
    nobody = StripeProvider(
        api_key=API_KEY, api_base=f"http://127.0.0.1:{free_port()}", timeout_s=2
    )
    try:
        with pytest.raises(ProviderUnavailable):
            await nobody.retrieve("pi_whatever")
    finally:
        await nobody.aclose()
    # pm_sandbox_flaky: the first calls commit at the provider and answer 500 or hang past
    # the timeout; the same key then replays what was committed.
    key, metadata = uuid.uuid4().hex, _metadata()
    outcomes: list[str] = []
    for _ in range(4):
        try:
            intent = await provider.authorize(
                TOTAL, payment_method="pm_sandbox_flaky", metadata=metadata, key=key
            )
        except ProviderUnavailable:
            outcomes.append("unavailable")
        else:
            outcomes.append(intent.status)
            break
    assert outcomes[0] == "unavailable"
    assert outcomes[-1] == "requires_capture"
