"""Payments: idempotency keys refused for another request before anything is sent; every
provider intent status mapped (an unknown one an error, counted); what a buyer is told of a
decline."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.errors import business_failures
from activities.payments.activities import UNKNOWN_STATUS_METRIC, PaymentsActivities
from activities.payments.contract import AuthorizeInput, SettleInput
from activities.shared import MoneyValue
from domains.checkout.statuses import FailureCode
from domains.payments import service
from domains.payments.declines import buyer_code, buyer_message
from domains.payments.errors import (
    AmountBelowMinimum,
    IdempotencyKeyReused,
    ProviderUnavailable,
    UnknownIntentStatus,
)
from domains.payments.minimums import STRIPE_MINIMUM_CHARGES, minimum_charge
from domains.payments.models import PaymentIdempotencyKey
from domains.payments.provider import Intent, PaymentProvider
from domains.payments.statuses import INTENT_TO_PAYMENT, PaymentStatus
from domains.payments.stripe_provider import intent_of
from kit.db import DomainDatabase
from kit.money import Money
from tests.sandbox.stripe_spec import document
from workflows.checkout.steps import failure_code


async def test_same_key_same_request_is_accepted_again(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    key = service.idempotency_key(uuid.uuid4(), "authorize")
    request = {"amount": 1999, "currency": "USD", "token": "tok_visa"}

    for _ in range(3):
        async with db.begin() as session:
            await service.open_call(session, key, dict(reversed(list(request.items()))))

    async with db.begin() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PaymentIdempotencyKey)
            .where(PaymentIdempotencyKey.key == key)
        )
    assert count == 1


async def test_same_key_another_request_is_refused(databases: dict[str, DomainDatabase]) -> None:
    db = databases["payments"]
    key = service.idempotency_key(uuid.uuid4(), "capture")
    async with db.begin() as session:
        await service.open_call(session, key, {"intent": "pi_1", "amount": "10.00"})

    with pytest.raises(IdempotencyKeyReused):
        async with db.begin() as session:
            await service.open_call(session, key, {"intent": "pi_1", "amount": "11.00"})


# --- intent statuses: every one of Stripe's mapped, an unknown one never guessed ------------


def _intent(status: str) -> Intent:
    return Intent(
        id="pi_1",
        status=status,
        amount=1000,
        currency="EUR",
        amount_capturable=0,
        amount_received=0,
        amount_refunded=0,
        redirect_url=None,
        last_error_code=None,
    )


def test_every_stripe_intent_status_is_mapped_explicitly() -> None:
    stripe_statuses = document()["schemas"]["payment_intent"]["properties"]["status"]["enum"]
    assert set(INTENT_TO_PAYMENT) == set(stripe_statuses)
    assert service.payment_status(_intent("requires_payment_method")) == PaymentStatus.FAILED
    assert service.payment_status(_intent("requires_capture")) == PaymentStatus.AUTHORIZED


@pytest.mark.parametrize("status", ["failed", "requires_source", ""])
def test_an_unknown_intent_status_is_a_retryable_error_not_pending(status: str) -> None:
    with pytest.raises(UnknownIntentStatus) as unknown:
        service.payment_status(_intent(status))
    assert unknown.value.status == status
    assert isinstance(unknown.value, ProviderUnavailable)  # retried like an outage
    with pytest.raises(UnknownIntentStatus):
        intent_of({"id": "pi_2", "status": status, "amount": 100, "currency": "eur"})


class _ProviderSaying:
    """A provider whose intents all have one status (only `retrieve` is called)."""

    name = "stub"

    def __init__(self, status: str) -> None:
        self.status = status

    async def retrieve(self, intent_id: str) -> Intent:
        return intent_of({"id": intent_id, "status": self.status, "amount": 1, "currency": "eur"})


async def test_an_activity_meeting_an_unknown_status_counts_it_and_fails_retryably() -> None:
    buffer = MetricBuffer(100)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    env = ActivityEnvironment()
    env.metric_meter = runtime.metric_meter
    provider = cast(PaymentProvider, _ProviderSaying("partially_captured"))
    # settle_ended reads the intent before it touches its database.
    activities = PaymentsActivities(cast(DomainDatabase, None), provider)
    settle = SettleInput(checkout_id=uuid.uuid4(), intent_id="pi_3")

    with pytest.raises(UnknownIntentStatus):
        await env.run(activities.settle_ended, settle)

    counted = [
        (update.value, update.attributes.get("status"))
        for update in buffer.retrieve_updates()
        if update.metric.name == UNKNOWN_STATUS_METRIC
    ]
    assert counted == [(1, "partially_captured")]


# --- what a buyer is told about a declined card -------------------------------------------


@pytest.mark.parametrize("code", ["lost_card", "stolen_card", "fraudulent", "pickup_card"])
def test_a_fraud_related_decline_is_generic_for_the_buyer(code: str) -> None:
    assert buyer_code(code) == "generic_decline"
    assert buyer_message(code) == "Your card was declined."


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("insufficient_funds", "Your card has insufficient funds."),
        ("expired_card", "Your card has expired."),
        ("incorrect_cvc", "Your card's security code is incorrect."),
        ("generic_decline", "Your card was declined."),
        (None, "Your card was declined."),
    ],
)
def test_a_decline_the_buyer_can_act_on_says_so(code: str | None, message: str) -> None:
    assert buyer_code(code) == code
    assert buyer_message(code) == message


# --- Stripe's minimum charge: refused before anything is recorded or sent ------------------


class _ProviderRecording:
    """A provider that records the authorizations it is asked for (and authorizes them)."""

    name = "stub"

    def __init__(self) -> None:
        self.authorized: list[Money] = []

    async def authorize(
        self, amount: Money, *, payment_method: str, metadata: dict[str, str], key: str
    ) -> Intent:
        self.authorized.append(amount)
        minor = amount.to_minor_units()
        return intent_of(
            {
                "id": f"pi_{uuid.uuid4().hex[:24]}",
                "status": "requires_capture",
                "amount": minor,
                "amount_capturable": minor,
                "currency": amount.currency.lower(),
            }
        )


def _authorize_input(amount: str, currency: str) -> AuthorizeInput:
    return AuthorizeInput(
        checkout_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        amount=MoneyValue.of(Money.of(amount, currency)),
        provider="stub",
        token="pm_card_visa",
    )


@pytest.mark.parametrize(
    ("amount", "currency", "minimum"),
    [
        ("0.49", "USD", "0.50"),
        ("0.01", "EUR", "0.50"),
        ("0.29", "GBP", "0.30"),
        ("49", "JPY", "50"),
    ],
)
async def test_a_total_below_the_minimum_charge_is_refused_before_the_provider(
    databases: dict[str, DomainDatabase], amount: str, currency: str, minimum: str
) -> None:
    provider = _ProviderRecording()
    activities = PaymentsActivities(databases["payments"], cast(PaymentProvider, provider))
    order = _authorize_input(amount, currency)

    with pytest.raises(ApplicationError) as refused:
        with business_failures():  # what every worker applies to its activities
            await ActivityEnvironment().run(activities.authorize_payment, order)

    assert refused.value.type == AmountBelowMinimum.code
    assert refused.value.non_retryable
    assert refused.value.details[0]["minimum"] == minimum
    # The checkout reports this code, not an internal error.
    assert failure_code(refused.value) == (FailureCode.AMOUNT_BELOW_MINIMUM, refused.value.message)
    assert provider.authorized == []
    async with databases["payments"].begin() as session:
        assert await service.find_payment(session, order.checkout_id) is None
        key = service.idempotency_key(order.checkout_id, "authorize")
        stored = select(PaymentIdempotencyKey).where(PaymentIdempotencyKey.key == key)
        assert await session.scalar(stored) is None


@pytest.mark.parametrize(
    ("amount", "currency"), [("0.50", "USD"), ("0.30", "GBP"), ("50", "JPY"), ("0.05", "ILS")]
)
async def test_a_total_at_the_minimum_or_of_an_unlisted_currency_reaches_the_provider(
    databases: dict[str, DomainDatabase], amount: str, currency: str
) -> None:
    provider = _ProviderRecording()
    activities = PaymentsActivities(databases["payments"], cast(PaymentProvider, provider))
    order = _authorize_input(amount, currency)

    result = await ActivityEnvironment().run(activities.authorize_payment, order)

    assert result.status == PaymentStatus.AUTHORIZED
    assert provider.authorized == [Money.of(amount, currency)]


def test_every_minimum_is_a_positive_amount_of_its_currency() -> None:
    for currency, amount in STRIPE_MINIMUM_CHARGES.items():
        minimum = minimum_charge(currency)
        assert minimum is not None
        assert minimum.amount == amount > 0
    assert minimum_charge("usd") == Money.of("0.50", "USD")
    assert minimum_charge("ILS") is None
