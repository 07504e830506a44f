"""Going live: a restricted key with exactly the documented permissions runs every call the
platform makes (and one without any of them fails clearly), and a retry after the provider has
forgotten its idempotency key (Stripe: 24 hours; here a second) charges, captures and refunds
nobody twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

import httpx
import pytest
from sqlalchemy import update

from activities.payments.activities import PaymentsActivities
from activities.payments.contract import AuthorizeInput
from activities.shared import CheckoutRef, MoneyValue
from domains.payments import service
from domains.payments.errors import ProviderUnavailable
from domains.payments.models import PaymentIdempotencyKey
from domains.payments.provider import PaymentProvider, ProviderMisuse
from domains.payments.stripe_provider import RESTRICTED_KEY_PERMISSIONS, StripeProvider
from kit.db import DomainDatabase
from kit.money import Money
from sandbox.psp.permissions import known
from tests.sandbox.conftest import AUTH, Psp, SandboxFactory

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
T = TypeVar("T")
TOTAL = Money(Decimal("42.50"), "EUR")
# The sandbox forgets a key after this long; the test waits a little longer.
KEY_TTL_S = 1.0
PLATFORM_KEY = "rk_test_platform_exactly_the_documented_permissions"


def without(permission: str) -> str:
    """The restricted key holding every documented permission but `permission`."""
    return f"rk_test_without_{permission}"


def restricted_keys() -> dict[str, list[str]]:
    documented = list(RESTRICTED_KEY_PERMISSIONS)
    keys = {PLATFORM_KEY: documented}
    for permission in documented:
        keys[without(permission)] = [p for p in documented if p != permission]
    return keys


@pytest.fixture(scope="module")
def live(start_sandbox: SandboxFactory) -> Psp:
    """A sandbox that forgets idempotency keys after a second and knows restricted keys."""
    return start_sandbox(
        webhook_url="",
        SANDBOX_IDEMPOTENCY_TTL_S=str(KEY_TTL_S),
        SANDBOX_RESTRICTED_KEYS=json.dumps(restricted_keys()),
    )


@pytest.fixture
async def provider(live: Psp) -> AsyncIterator[StripeProvider]:
    stripe = StripeProvider(api_key=PLATFORM_KEY, api_base=live.url, timeout_s=5.0)
    yield stripe
    await stripe.aclose()


def _metadata() -> dict[str, str]:
    return {"checkout_id": str(uuid.uuid4())}


# --- the restricted key -------------------------------------------------------------------


async def test_the_documented_permissions_run_every_call_the_platform_makes(
    provider: StripeProvider,
) -> None:
    metadata = _metadata()
    key = uuid.uuid4().hex
    intent = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=metadata, key=f"{key}:a"
    )
    assert (await provider.retrieve(intent.id)).status == "requires_capture"
    found = await provider.find_intent(metadata["checkout_id"])
    assert found is not None
    assert found.id == intent.id
    assert (await provider.capture(intent.id, key=f"{key}:c")).status == "succeeded"
    await provider.refund(intent.id, amount=Money(Decimal("2.50"), "EUR"), key=f"{key}:r1")
    await provider.refund(intent.id, amount=None, key=f"{key}:r2")
    assert (await provider.retrieve(intent.id)).amount_refunded == 4250
    other = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=_metadata(), key=f"{key}:a2"
    )
    assert (await provider.cancel(other.id, key=f"{key}:v")).status == "canceled"


@pytest.mark.parametrize("permission", list(RESTRICTED_KEY_PERMISSIONS))
async def test_a_key_without_a_documented_permission_fails_clearly(
    live: Psp, provider: StripeProvider, permission: str
) -> None:
    captured = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=_metadata(), key=uuid.uuid4().hex
    )
    await provider.capture(captured.id, key=uuid.uuid4().hex)
    calls: dict[str, Callable[[StripeProvider], Awaitable[object]]] = {
        "payment_intent_write": lambda p: p.authorize(
            TOTAL, payment_method="pm_card_visa", metadata=_metadata(), key=uuid.uuid4().hex
        ),
        "charge_read": lambda p: p.retrieve(captured.id),
        "refund_write": lambda p: p.refund(captured.id, amount=None, key=uuid.uuid4().hex),
        # The permission is checked before the dispute is looked for.
        "dispute_read": lambda p: p.retrieve_dispute("dp_none"),
    }
    assert set(calls) == set(RESTRICTED_KEY_PERMISSIONS)
    limited = StripeProvider(api_key=without(permission), api_base=live.url, timeout_s=5.0)
    try:
        with pytest.raises(ProviderMisuse, match=f"rak_{permission}"):
            await calls[permission](limited)
    finally:
        await limited.aclose()


async def test_a_refused_call_answers_stripes_403(live: Psp) -> None:
    async with httpx.AsyncClient(base_url=live.url, trust_env=False) as http:
        answer = await http.post(
            "/v1/refunds",
            data={"payment_intent": "pi_x"},
            headers={"Authorization": f"Bearer {without('refund_write')}"},
        )
        assert answer.status_code == 403
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert "rak_refund_write" in error["message"]
        assert without("refund_write") not in error["message"]  # masked, as Stripe does
        # The secret key may do everything: the same call reaches the refund's own checks.
        full = await http.post("/v1/refunds", data={"payment_intent": "pi_x"}, headers=AUTH)
        assert full.status_code == 400


# --- after the provider forgot the idempotency key ----------------------------------------


async def test_the_sandbox_forgets_a_key_as_stripe_does(provider: StripeProvider) -> None:
    """What the platform guards against: the same key after the window makes a second intent."""
    key, metadata = uuid.uuid4().hex, _metadata()
    first = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=metadata, key=key
    )
    again = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=metadata, key=key
    )
    assert again.id == first.id
    await asyncio.sleep(KEY_TTL_S + 0.2)
    later = await provider.authorize(
        TOTAL, payment_method="pm_card_visa", metadata=metadata, key=key
    )
    assert later.id != first.id


class LosesAnswers:
    """The real provider, but the answer of the next call of `operation` is lost on its way
    back (a timeout after the provider acted)."""

    def __init__(self, provider: StripeProvider) -> None:
        self.provider = provider
        self.name = provider.name
        self.lose: set[str] = set()

    def __getattr__(self, operation: str) -> Any:
        call = getattr(self.provider, operation)

        async def maybe_lost(*args: Any, **kwargs: Any) -> Any:
            result = await call(*args, **kwargs)
            if operation in self.lose:
                self.lose.discard(operation)
                raise ProviderUnavailable(f"{operation}: the answer was lost")
            return result

        return maybe_lost


async def _days_later(db: DomainDatabase, checkout_id: uuid.UUID) -> None:
    """Both clocks moved on: the provider forgot the keys, and the platform's are two days old."""
    await asyncio.sleep(KEY_TTL_S + 0.2)
    async with db.begin() as session:
        await session.execute(
            update(PaymentIdempotencyKey)
            .where(PaymentIdempotencyKey.key.startswith(f"{checkout_id}:"))
            .values(created_at=PaymentIdempotencyKey.created_at - service.PROVIDER_KEY_TTL * 2)
        )


async def _ledger(live: Psp, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=live.url, trust_env=False) as http:
        answer = await http.get("/v1/ledger", params={"checkout_id": str(checkout_id)})
    return cast(list[dict[str, Any]], answer.json()["data"])


async def _events(live: Psp, intent_id: str, event_type: str) -> int:
    async with httpx.AsyncClient(base_url=live.url, trust_env=False) as http:
        answer = await http.get("/v1/events", params={"payment_intent": intent_id})
    return sum(1 for event in answer.json()["data"] if event["type"] == event_type)


async def _lost(call: Awaitable[T]) -> None:
    with pytest.raises(ProviderUnavailable, match="lost"):
        await call


@pytest.fixture
def checkout() -> AuthorizeInput:
    return AuthorizeInput(
        checkout_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        amount=MoneyValue.of(TOTAL),
        provider="stripe",
        token="pm_card_visa",
    )


@pytest.fixture
def flaky(provider: StripeProvider) -> LosesAnswers:
    return LosesAnswers(provider)


@pytest.fixture
def payments(databases: dict[str, DomainDatabase], flaky: LosesAnswers) -> PaymentsActivities:
    return PaymentsActivities(databases["payments"], cast(PaymentProvider, flaky))


async def test_an_authorization_retried_days_later_finds_its_intent(
    live: Psp,
    databases: dict[str, DomainDatabase],
    payments: PaymentsActivities,
    flaky: LosesAnswers,
    checkout: AuthorizeInput,
) -> None:
    flaky.lose.add("authorize")
    await _lost(payments.authorize_payment(checkout))  # made at the provider, never recorded
    await _days_later(databases["payments"], checkout.checkout_id)

    result = await payments.authorize_payment(checkout)  # a needs_attention retry

    ledger = await _ledger(live, checkout.checkout_id)
    assert [entry["payment_intent"] for entry in ledger] == [result.intent_id]
    assert result.status == "authorized"


async def test_a_compensation_retried_days_later_releases_the_one_intent(
    live: Psp,
    databases: dict[str, DomainDatabase],
    payments: PaymentsActivities,
    flaky: LosesAnswers,
    checkout: AuthorizeInput,
) -> None:
    flaky.lose.add("authorize")
    await _lost(payments.authorize_payment(checkout))
    await _days_later(databases["payments"], checkout.checkout_id)

    assert (await payments.void_payment(checkout)).action == "canceled"

    ledger = await _ledger(live, checkout.checkout_id)
    assert [entry["status"] for entry in ledger] == ["canceled"]


async def test_a_capture_retried_days_later_captures_once(
    live: Psp,
    databases: dict[str, DomainDatabase],
    payments: PaymentsActivities,
    flaky: LosesAnswers,
    checkout: AuthorizeInput,
) -> None:
    authorized = await payments.authorize_payment(checkout)
    assert authorized.intent_id is not None
    flaky.lose.add("capture")
    await _lost(payments.capture_payment(CheckoutRef(checkout_id=checkout.checkout_id)))
    await _days_later(databases["payments"], checkout.checkout_id)

    again = await payments.capture_payment(CheckoutRef(checkout_id=checkout.checkout_id))

    assert again.status == "captured"
    [entry] = await _ledger(live, checkout.checkout_id)
    assert entry["captured"] == TOTAL.to_minor_units()
    assert await _events(live, authorized.intent_id, "payment_intent.succeeded") == 1


async def test_a_refund_retried_days_later_refunds_once(
    live: Psp,
    databases: dict[str, DomainDatabase],
    payments: PaymentsActivities,
    flaky: LosesAnswers,
    checkout: AuthorizeInput,
) -> None:
    authorized = await payments.authorize_payment(checkout)
    assert authorized.intent_id is not None
    await payments.capture_payment(CheckoutRef(checkout_id=checkout.checkout_id))
    flaky.lose.add("refund")
    await _lost(payments.void_payment(checkout))  # refunded at the provider, never recorded
    await _days_later(databases["payments"], checkout.checkout_id)

    again = await payments.void_payment(checkout)

    assert again.action == "nothing"  # the re-read shows it refunded already
    [entry] = await _ledger(live, checkout.checkout_id)
    assert entry["refunded"] == entry["captured"] == TOTAL.to_minor_units()
    assert await _events(live, authorized.intent_id, "charge.refunded") == 1
    async with databases["payments"].begin() as session:
        payment = await service.payment_for_checkout(session, checkout.checkout_id)
        assert payment.status == "refunded"


def test_every_documented_permission_is_one_the_sandbox_checks() -> None:
    assert all(known(p) for p in RESTRICTED_KEY_PERMISSIONS)
