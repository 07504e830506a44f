"""Who asked for a refund, as the payments domain records it: a request keeps the purpose and
owner it was asked with (never guessed from its key), the operators' view of a failed refund
shows them, and only a return's own refund is refused a retry outside its return."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from activities.payments.contract import RefundRequestInput
from domains.payments import aftersale, refunds, service
from domains.payments.errors import RefundOwnedByReturn
from domains.payments.provider import PLATFORM, PURPOSE, REFUNDED_BY, Refund
from domains.payments.statuses import RefundPurpose
from kit.db import DomainDatabase
from kit.money import Money
from tests.domains.test_aftersale_records import _captured


async def _order_of(db: DomainDatabase, checkout_id: uuid.UUID) -> uuid.UUID:
    async with db.begin() as session:
        order_id = (await service.payment_for_checkout(session, checkout_id)).order_id
    assert order_id is not None
    return order_id


async def _failed_request(
    db: DomainDatabase,
    checkout_id: uuid.UUID,
    key: str,
    requester: refunds.Requester | None,
    *,
    event_first: bool = False,
) -> uuid.UUID:
    """A request asked under `key` by `requester`, sent, whose provider refund failed; the id
    operators see it under (the request's, or another when the provider's event about the
    refund was recorded before the request heard back: `event_first`)."""
    ask = refunds.RefundAsk(
        order_id=await _order_of(db, checkout_id),
        amount=Money.of("5.00", "EUR"),
        key=key,
        reason="test",
        requested_by="someone",
        requester=requester,
    )
    made = f"re_{uuid.uuid4().hex}"
    async with db.begin() as session:
        row = await refunds.request_refund(session, ask)
        payment = await service.payment_for_checkout(session, checkout_id, lock=True)
        metadata = {REFUNDED_BY: PLATFORM, PURPOSE: row.purpose}
        failed = Refund(made, 500, "EUR", "failed", metadata=metadata)
        if event_first:
            await aftersale.record_refunds(session, payment, [failed])
        await aftersale.record_refunds(session, payment, [failed], ours=[made], ids={made: row.id})
        await refunds.mark_sent(session, row, made)
        view = await refunds.request_view(session, row.id)
        assert view.refund is not None
        return view.refund.id


async def _view(db: DomainDatabase, refund_id: uuid.UUID) -> aftersale.RefundView:
    async with db.begin() as session:
        waiting = {v.refund.id: v for v in await aftersale.waiting_refunds(session, 500)}
        one = await aftersale.refund(session, refund_id)
    assert (one.purpose, one.return_id) == (
        waiting[refund_id].purpose,
        waiting[refund_id].return_id,
    )
    return one


async def _refused(db: DomainDatabase, refund_id: uuid.UUID) -> str | None:
    """The return named by the refusal of a retry of `refund_id` here, None when it may go."""
    async with db.begin() as session:
        try:
            await aftersale.refuse_if_a_returns(session, refund_id)
        except RefundOwnedByReturn as refused:
            return str(refused.details["return_id"])
    return None


async def test_a_returns_refund_is_refused_by_its_recorded_owner_whatever_its_key(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    return_id = uuid.uuid4()
    refund_id = await _failed_request(
        db,
        checkout_id,
        f"order-refund-{uuid.uuid4().hex}",  # a key that looks like an operator's
        refunds.Requester(RefundPurpose.RETURN, return_id),
    )
    view = await _view(db, refund_id)
    assert (view.purpose, view.return_id) == ("return", return_id)
    assert await _refused(db, refund_id) == str(return_id)


async def test_an_operators_refund_is_not_refused_though_its_key_looks_like_a_returns(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    order_id = await _order_of(db, checkout_id)
    refund_id = await _failed_request(
        db,
        checkout_id,
        f"return-{uuid.uuid4()}",
        refunds.Requester(RefundPurpose.OPERATOR_REFUND, order_id),
    )
    view = await _view(db, refund_id)
    assert (view.purpose, view.return_id, view.payment.order_id) == (
        "operator_refund",
        None,
        order_id,
    )
    assert await _refused(db, refund_id) is None


async def test_a_returns_refund_recorded_first_from_the_providers_event_is_still_its(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    return_id = uuid.uuid4()
    requester = refunds.Requester(RefundPurpose.RETURN, return_id)
    key = f"return-{return_id}"
    refund_id = await _failed_request(db, checkout_id, key, requester, event_first=True)
    view = await _view(db, refund_id)
    assert view.request is not None
    assert view.request.id != refund_id  # not the id it was asked under
    assert (view.purpose, view.return_id) == ("return", return_id)
    assert await _refused(db, refund_id) == str(return_id)


async def test_an_ask_without_a_requester_gets_it_from_its_key_in_the_database(
    databases: dict[str, DomainDatabase],
) -> None:
    """An ask the release before this one scheduled carries no requester: the database fills it
    in from the key (the one place its form is read), and the request reads it back at once."""
    db = databases["payments"]
    checkout_id = await _captured(db)
    return_id = uuid.uuid4()
    refund_id = await _failed_request(db, checkout_id, f"return-{return_id}:retry-1", None)
    async with db.begin() as session:
        view = await refunds.request_view(session, refund_id)
    assert (view.request.purpose, view.return_id) == ("return", return_id)
    assert await _refused(db, refund_id) == str(return_id)


async def test_a_refund_no_request_asked_for_says_why_from_the_providers_metadata(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases["payments"]
    checkout_id = await _captured(db)
    compensation, dashboard = f"re_{uuid.uuid4().hex}", f"re_{uuid.uuid4().hex}"
    async with db.begin() as session:
        payment = await service.payment_for_checkout(session, checkout_id, lock=True)
        made = [
            Refund(compensation, 500, "EUR", "failed", metadata={REFUNDED_BY: PLATFORM}),
            Refund(dashboard, 700, "EUR", "failed"),
        ]
        rows = await aftersale.record_refunds(session, payment, made, ours=[compensation])
    for row, purpose in zip(rows, ("compensation", "dashboard"), strict=True):
        view = await _view(db, row.id)
        assert (view.purpose, view.return_id, view.request) == (purpose, None, None)
        assert await _refused(db, row.id) is None


def test_a_request_is_asked_for_by_an_operator_or_a_return_only() -> None:
    with pytest.raises(ValueError, match="dashboard"):
        refunds.Requester(RefundPurpose.DASHBOARD, uuid.uuid4())
    asked = {
        "order_id": uuid.uuid4(),
        "amount": {"amount": "5.00", "currency": "EUR"},
        "key": "return-x",
        "reason": "return",
        "requested_by": "returns",
    }
    with pytest.raises(ValidationError, match="go together"):
        RefundRequestInput.model_validate({**asked, "purpose": "return"})
    assert RefundRequestInput.model_validate(asked).purpose is None  # an earlier release's
