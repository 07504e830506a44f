"""Property: whatever fails, and however, every checkout ends with the world consistent.

Hypothesis picks the cart (with or without a coupon, a 100 % one included), how the provider
answers (authorized, 3-D Secure, async, declined) and what the buyer does, and injects up to
three failures into any activity the checkout calls (forward steps and compensations alike): for
good, once (an operator's retry then works), or transiently (before or after the attempt did its
work). The buyer answers the challenge; an operator mends and retries any compensation that waits
for them. Then the checkout has ended; completed exactly when nothing failed for good on its
path and the payment went through; and the world holds nothing for it, or one paid order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import partial

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from activities.coupons import contract as coupons
from activities.payments import contract as payments
from tests.workflows.fast.harness import NEEDS_ATTENTION, Run, Shop
from tests.workflows.fast.world import Behaviour, Fail, Transient
from workflows.checkout.contract import FINAL, FailureCode, StepName
from workflows.checkout.models import CheckoutStatusBody, PaymentEvent
from workflows.checkout.steps import STEPS

pytestmark = pytest.mark.timeout(120)

# Every activity the checkout calls, with a code it fails with for good (one per activity, so
# that a failure code names the activity that failed).
CODES = dict(zip(sorted(STEPS), sorted(FailureCode, key=lambda c: c.value)[3:], strict=False))
# How many operator retries a checkout may need (each failing-once compensation needs one).
RETRIES = 4

behaviours: st.SearchStrategy[Behaviour] = st.one_of(
    st.sampled_from(sorted(STEPS)).map(lambda name: Fail(CODES[name])),
    st.sampled_from(sorted(STEPS)).map(lambda name: Fail(CODES[name], times=1)),
    # One transient failure per activity: its retry waits (in real time) less than the second after
    # which a step is published, so the run's timers stay as they are without failures.
    st.builds(Transient, times=st.just(1), after_effect=st.booleans()),
)


@dataclass(frozen=True)
class Case:
    """One example: the cart, the provider's answer, the buyer, and the failures."""

    coupon: bool
    discount: Decimal
    payment: str
    approve: bool
    script: dict[str, Behaviour]

    def path(self) -> set[str]:
        """The activities a checkout calls going forward."""
        steps = {name for name in STEPS if STEPS[name] and not _undo(name)}
        # These checkouts name no shipping rate and ask for no tax: the tax steps are not on their
        # path (tests/workflows/fast/test_whole_price.py fails those).
        steps -= {payments.CALCULATE_TAX.name, payments.COMMIT_TAX.name, payments.REVERSE_TAX.name}
        # Confirming with another method follows a decline the buyer retries: not on this path.
        steps.discard(payments.CONFIRM.name)
        if not self.coupon:
            steps -= {coupons.RESERVE.name, coupons.CONFIRM.name}
        if self.zero_total:
            steps -= {name for name in steps if name.startswith("payments.")}
        elif self.payment not in ("requires_action", "processing"):
            steps.discard(payments.REFRESH.name)
        return steps

    @property
    def zero_total(self) -> bool:
        """A 100 % coupon: nothing to pay."""
        return self.coupon and self.discount == 100

    def completes(self) -> bool:
        """Whether the checkout must complete: nothing on its path fails for good, and it is
        paid (or has nothing to pay)."""
        fails = {name for name, b in self.script.items() if isinstance(b, Fail)}
        paid = self.payment == "authorized" or (self.payment != "failed" and self.approve)
        return not (fails & self.path()) and (paid or self.zero_total)


def _undo(name: str) -> bool:
    """Off the forward path: a compensation, or the settling of a provider's late news."""
    return name.split(".", 1)[1] in ("unlock", "release", "cancel", "void", "settle_ended")


cases = st.builds(
    Case,
    coupon=st.booleans(),
    discount=st.sampled_from([Decimal(10), Decimal(100)]),
    payment=st.sampled_from(["authorized", "requires_action", "processing", "failed"]),
    approve=st.booleans(),
    script=st.dictionaries(st.sampled_from(sorted(STEPS)), behaviours, max_size=3),
)


def _acts(body: CheckoutStatusBody, answered: bool) -> bool:
    """Whether somebody has something to do: the checkout ended, waits for an operator, or
    waits for the buyer who has not answered yet."""
    if body.status in FINAL or body.step == NEEDS_ATTENTION:
        return True
    return body.step == StepName.AWAITING_PAYMENT and not answered


async def _drive(run: Run, case: Case) -> None:
    """Answer the challenge as the buyer, mend and retry as an operator, until the end."""
    answered, retries = False, 0
    while True:
        body = await run.wait_for(until=partial(_acts, answered=answered))
        if body.status in FINAL:
            return
        if body.step == NEEDS_ATTENTION:
            assert retries < RETRIES, f"still waiting after {retries} retries"
            for name in [n for n, b in run.world.script.items() if isinstance(b, Fail)]:
                del run.world.script[name]  # the operator mends the cause
            await run.checkouts.retry_compensation(run.id)
            retries += 1
            continue
        run.world.approve(case.approve)
        kind = "succeeded" if case.approve else "payment_failed"
        await run.checkouts.deliver_payment_event(
            run.id,
            PaymentEvent(
                id=f"evt_{kind}", type=f"payment_intent.{kind}", intent=run.world.intent_id
            ),
        )
        answered = True


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases)
async def test_whatever_fails_every_checkout_ends_consistent(shop: Shop, case: Case) -> None:
    run = await shop.start(
        coupon=case.coupon,
        discount_percent=case.discount,
        payment=case.payment,
        script=dict(case.script),
    )

    await _drive(run, case)
    body = await run.handle.result()

    event(f"{body.status} {body.failure.code.value if body.failure else ''}".strip())
    assert body.status in FINAL
    ran = await run.compensations()
    assert len(ran) == len(set(ran)), ran  # no compensation ran twice
    if case.completes():
        assert body.status == "completed", (body, case)
        assert ran == []
        assert run.world.completed(coupon=case.coupon) == []
    else:
        assert body.status == "failed", (body, case)
        assert body.failure is not None
        injected = {b.code for b in case.script.values() if isinstance(b, Fail)}
        assert body.failure.code in injected | {FailureCode.PAYMENT_DECLINED}, (body, case)
        assert run.world.given_back() == []
    assert run.recorded() == body
