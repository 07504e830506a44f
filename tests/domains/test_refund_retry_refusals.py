"""An operator's retry of a failed refund when less is left of the capture than the failed refund
(e.g. refunded meanwhile in the provider's dashboard): refused as `refund_exceeds_captured`,
whether the payments database knows it already (checked before anything starts) or only the
provider does (its refusal in the retry activity); any other refusal is `provider_refused`.
Nothing moves and the failed refund still waits for an operator."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import PROVIDER_REFUSED, business_failures
from activities.payments.aftersale import AfterSaleActivities
from activities.payments.contract import RetryRefundInput
from api.schemas import NOTE_LIMIT, ResolutionIn
from domains.payments import aftersale
from domains.payments.errors import RefundExceedsCaptured
from domains.payments.provider import PaymentProvider, ProviderRejected, Refund
from domains.payments.statuses import RefundResolution
from kit.db import DomainDatabase
from kit.money import Money
from tests.domains.test_aftersale_records import _captured, _record


class _ProviderRefusing:
    """A provider that refuses every refund with `code` (as Stripe's 400s become)."""

    name = "stub"

    def __init__(self, code: str) -> None:
        self.code = code
        self.asked: list[tuple[str, Money | None, str]] = []

    async def refund(
        self, intent_id: str, *, amount: Money | None, key: str, purpose: str = ""
    ) -> str:
        self.asked.append((intent_id, amount, key))
        raise ProviderRejected(self.code, "refused", status=400)


async def _failed_refund(db: DomainDatabase, *others: Refund) -> tuple[uuid.UUID, uuid.UUID]:
    """A captured payment of 25.00 whose refund of all of it failed, with `others` recorded
    after it: the checkout's id and the failed refund's."""
    checkout_id = await _captured(db)
    failed = Refund(id=f"re_{uuid.uuid4().hex}", amount=2500, currency="EUR", status="failed")
    await _record(db, checkout_id, failed, *others)
    async with db.begin() as session:
        waiting = await aftersale.waiting_refunds(session, 500)
    [refund_id] = [v.refund.id for v in waiting if v.refund.provider_refund_id == failed.id]
    return checkout_id, refund_id


async def _still_waiting(db: DomainDatabase, refund_id: uuid.UUID) -> bool:
    async with db.begin() as session:
        view = await aftersale.refund(session, refund_id)
        waiting = await aftersale.waiting_refunds(session, 500)
    assert (view.refund.status, view.refund.resolution) == ("failed", None)
    return refund_id in [v.refund.id for v in waiting]


async def _retry(db: DomainDatabase, code: str, refund_id: uuid.UUID) -> ApplicationError:
    provider = _ProviderRefusing(code)
    activities = AfterSaleActivities(db, cast(PaymentProvider, provider))
    with pytest.raises(ApplicationError) as refused:
        with business_failures():  # what every worker applies to its activities
            await ActivityEnvironment().run(
                activities.retry_refund, RetryRefundInput(refund_id=refund_id, note=None)
            )
    assert [amount for _, amount, _ in provider.asked] == [Money.of("25.00", "EUR")]
    return refused.value


@pytest.mark.parametrize("code", ["charge_already_refunded", "amount_too_large"])
async def test_the_provider_refusing_for_want_of_money_left_is_refund_exceeds_captured(
    databases: dict[str, DomainDatabase], code: str
) -> None:
    db = databases["payments"]
    _, refund_id = await _failed_refund(db)

    refused = await _retry(db, code, refund_id)

    assert refused.type == RefundExceedsCaptured.code
    assert refused.non_retryable
    details = refused.details[0]
    assert (details["requested"], details["currency"], details["provider_code"]) == (
        "25.00",
        "EUR",
        code,
    )
    assert await _still_waiting(db, refund_id)


async def test_another_refusal_of_the_retry_is_provider_refused(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    _, refund_id = await _failed_refund(db)

    refused = await _retry(db, "resource_missing", refund_id)

    assert (refused.type, refused.non_retryable) == (PROVIDER_REFUSED, True)
    assert refused.details[0]["provider_code"] == "resource_missing"
    assert await _still_waiting(db, refund_id)


async def test_a_retry_is_refused_early_when_the_database_knows_less_is_left(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    elsewhere = Refund(id=f"re_{uuid.uuid4().hex}", amount=1000, currency="EUR", status="pending")
    _, refund_id = await _failed_refund(db, elsewhere)

    async with db.begin() as session:
        view = await aftersale.failed_refund(session, refund_id)
        with pytest.raises(RefundExceedsCaptured) as refused:
            await aftersale.refuse_if_nothing_left(session, view)
    assert (refused.value.details["requested"], refused.value.details["refundable"]) == (
        "25.00",
        "15.00",
    )
    assert await _still_waiting(db, refund_id)


async def test_a_retry_that_fits_what_is_left_passes_the_early_check(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    _, refund_id = await _failed_refund(db)

    async with db.begin() as session:
        view = await aftersale.failed_refund(session, refund_id)
        await aftersale.refuse_if_nothing_left(session, view)


async def test_a_resolution_note_as_long_as_the_api_takes_is_kept(
    databases: dict[str, DomainDatabase],
) -> None:
    """An operator's note on a failed refund of the most characters the API accepts is stored
    whole (the column once held half of it: resolving failed with a database error, a 500)."""
    db = databases["payments"]
    longest = "n" * NOTE_LIMIT
    ResolutionIn(note=longest)  # the API takes it
    _, refund_id = await _failed_refund(db)

    async with db.begin() as session:
        await aftersale.settle_refund(session, refund_id, RefundResolution.RESOLVED, longest)

    async with db.begin() as session:
        view = await aftersale.refund(session, refund_id)
    assert view.refund.resolution_note == longest
