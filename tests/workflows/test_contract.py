"""The checkout's contract ties to the domains: every error code is a failure code, every
activity the workflow calls runs on its own domain's queue."""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from typing import Any

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

import activities
import domains
from activities.errors import business_failures
from activities.shared import ActivityName
from domains.payments.errors import ProviderUnavailable
from domains.payments.provider import ProviderMisuse, ProviderRejected
from kit.errors import DomainError
from workflows.checkout.contract import FailureCode, TaskQueue, checkout_id_of, workflow_id
from workflows.checkout.steps import STEPS, failure_code
from workflows.order_cancel.workflow import CALLS as ORDER_CANCEL_CALLS
from workflows.order_refund.workflow import CALLS as ORDER_REFUND_CALLS
from workflows.returns.workflow import CALLS as RETURN_CALLS


def _domain_errors() -> set[type[DomainError]]:
    for module in pkgutil.iter_modules(domains.__path__):
        try:
            importlib.import_module(f"domains.{module.name}.errors")
        except ModuleNotFoundError:
            continue
    found: set[type[DomainError]] = set()
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    # The domains' own: kit's (a payload the codec cannot decrypt) never come from an activity.
    return {cls for cls in found - {DomainError} if cls.__module__.startswith("domains.")}


def _contract_activities() -> list[ActivityName[Any, Any]]:
    found = []
    for module in pkgutil.iter_modules(activities.__path__):
        if not module.ispkg:
            continue
        contract = importlib.import_module(f"activities.{module.name}.contract")
        found += [value for value in vars(contract).values() if isinstance(value, ActivityName)]
    return found


def test_every_domain_error_code_is_a_failure_code() -> None:
    codes = {error.code for error in _domain_errors()}
    assert len(codes) > 20, "the domains' errors were found"
    assert codes - {code.value for code in FailureCode} == set()


def test_a_domain_code_reaches_the_checkout_unchanged() -> None:
    for error in _domain_errors():
        cause = ApplicationError("no", type=error.code, non_retryable=True)
        failure = ActivityError(
            "activity failed",
            scheduled_event_id=1,
            started_event_id=2,
            identity="test",
            activity_type="x.y",
            activity_id="1",
            retry_state=RetryState.NON_RETRYABLE_FAILURE,
        )
        failure.__cause__ = cause
        assert failure_code(failure) == (FailureCode(error.code), "no")


def test_an_unknown_code_is_an_internal_error() -> None:
    assert failure_code(RuntimeError("boom"))[0] is FailureCode.INTERNAL_ERROR


def test_every_step_runs_on_its_domains_queue() -> None:
    for name, options in STEPS.items():
        assert options.queue is TaskQueue(name.split(".", 1)[0]), name


def test_every_remote_activity_has_options() -> None:
    # The checkout's own record has its own options (local first, then on the checkout queue);
    # refunds and disputes after the sale are recorded by their own workflows.
    records = {
        "checkout.open_session",
        "checkout.record_progress",
        "payments.after_sale",
        "payments.retry_refund",
    }
    # Tax steps, until the checkout calls them (README, "Tax"): then they belong in STEPS.
    records |= {"payments.calculate_tax", "payments.commit_tax", "payments.reverse_tax"}
    named = {activity.name for activity in _contract_activities()}
    # The order cancellation calls some of the checkout's activities and one of its own; an
    # operator's order refund calls its own two; a return its own and the refund's.
    calls = ORDER_CANCEL_CALLS | ORDER_REFUND_CALLS | RETURN_CALLS
    assert named - records == set(STEPS) | calls


@pytest.mark.parametrize("text", ["checkout-", "checkout-nope", "reconcile-pi_1", ""])
def test_foreign_workflow_ids_name_no_checkout(text: str) -> None:
    assert checkout_id_of(text) is None


def test_workflow_id_round_trip() -> None:

    checkout_id = uuid.uuid4()
    assert checkout_id_of(workflow_id(checkout_id)) == checkout_id


def test_a_definite_provider_refusal_is_not_retried() -> None:
    refusal = ProviderRejected("resource_missing", "No such payment_intent", status=404)
    with pytest.raises(ApplicationError) as raised, business_failures():
        raise refusal
    assert raised.value.non_retryable
    assert raised.value.type == FailureCode.PROVIDER_REFUSED.value


def test_transient_provider_failures_are_left_to_retry() -> None:
    with pytest.raises(ProviderUnavailable), business_failures():
        raise ProviderUnavailable("HTTP 503")


def test_a_provider_misuse_is_retried_until_someone_fixes_it() -> None:
    # An idempotency error or a bad API key is the platform's bug, never the buyer's: it must
    # not end the checkout; it retries (visibly stuck) until the code or the key is fixed.
    with pytest.raises(ProviderMisuse), business_failures():
        raise ProviderMisuse("Stripe refused an idempotency key")
