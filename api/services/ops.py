"""Operations: checkouts from Temporal visibility, the stuck policy, one checkout in detail, and
an operator's cancel."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    WorkflowExecution,
    WorkflowExecutionDescription,
)
from temporalio.service import RPCError

from api.deps import Platform
from api.schemas import (
    AttentionOut,
    CheckoutAccepted,
    CheckoutOut,
    OperatorCancelOut,
    OpsCheckout,
    OpsCheckoutDetail,
    OpsCheckoutList,
    PendingActivity,
    RetryingActivity,
    StepOut,
    StuckCheckout,
    StuckList,
)
from api.services.checkouts import asked, running_session, status_of, update_id
from domains.checkout import service as sessions
from kit.settings import Settings
from workflows.checkout.contract import (
    CHECKOUT_STATUS,
    CHECKOUT_STEP,
    CUSTOMER_ID,
    ORDER_NUMBER,
    WORKFLOW_TYPE,
    CheckoutStatus,
    StepName,
    checkout_id_of,
    workflow_id,
)

# The most running checkouts one look for stuck ones goes through.
STUCK_SCAN_LIMIT = 1000


def ui_url(settings: Settings, workflow: str) -> str:
    """The Temporal web UI's page of a workflow."""
    base = settings.temporal.ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal.namespace}/workflows/{workflow}"


def visibility_query(
    status: str | None, step: str | None, older_than_s: float | None, *, running: bool = False
) -> str:
    """The Temporal visibility query an operator can paste into the web UI."""
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    if running:
        clauses.append("ExecutionStatus = 'Running'")
    # Values are validated enum members, never free text.
    if status:
        clauses.append(f"{CHECKOUT_STATUS.name} = '{status}'")
    if step:
        clauses.append(f"{CHECKOUT_STEP.name} = '{step}'")
    if older_than_s:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        clauses.append(f"StartTime < '{cutoff.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'")
    return " AND ".join(clauses)


def _listed(settings: Settings, execution: WorkflowExecution) -> OpsCheckout | None:
    """A checkout's line in a listing (None for a workflow that is not a checkout)."""
    checkout_id = checkout_id_of(execution.id)
    if checkout_id is None:
        return None
    attributes = execution.typed_search_attributes
    started = execution.start_time
    return OpsCheckout(
        checkout_id=checkout_id,
        workflow_id=execution.id,
        run_status=execution.status.name.lower() if execution.status else "unknown",
        status=attributes.get(CHECKOUT_STATUS),
        step=attributes.get(CHECKOUT_STEP),
        customer_id=attributes.get(CUSTOMER_ID),
        order_number=attributes.get(ORDER_NUMBER),
        started_at=started,
        age_s=(datetime.now(UTC) - started).total_seconds() if started else 0.0,
        ui_url=ui_url(settings, execution.id),
    )


async def _checkouts(wired: Platform, query: str, limit: int) -> list[OpsCheckout]:
    rows = [_listed(wired.settings, e) async for e in wired.checkouts.list(query, limit)]
    return [row for row in rows if row is not None]


async def list_checkouts(
    wired: Platform,
    status: CheckoutStatus | None,
    step: StepName | None,
    older_than_s: float | None,
    limit: int,
) -> OpsCheckoutList:
    """Checkouts from Temporal visibility (search attributes), each with its web-UI link."""
    query = visibility_query(
        status.value if status else None, step.value if step else None, older_than_s
    )
    return OpsCheckoutList(data=await _checkouts(wired, query, limit))


async def _pending(
    wired: Platform, description: WorkflowExecutionDescription | None
) -> list[PendingActivity]:
    """The activities Temporal has scheduled for a workflow and not finished."""
    if description is None:
        return []
    return [
        PendingActivity(
            activity_type=activity.activity_type.name,
            state=PendingActivityState.Name(activity.state)
            .removeprefix("PENDING_ACTIVITY_STATE_")
            .lower(),
            attempt=activity.attempt,
            last_failure=(
                # Failure messages are stored encrypted (kit/codec.py): decoded here.
                str(await wired.temporal.data_converter.decode_failure(activity.last_failure))
                if activity.HasField("last_failure")
                else None
            ),
        )
        for activity in description.raw_description.pending_activities
    ]


def _retrying(activities: list[PendingActivity]) -> list[RetryingActivity]:
    return [
        RetryingActivity(
            activity_type=a.activity_type, attempt=a.attempt, last_failure=a.last_failure
        )
        for a in activities
    ]


def stuck_reasons(
    settings: Settings, step: str | None, step_age_s: float | None, retrying: bool
) -> list[str]:
    """Why a running checkout needs a look (the stuck policy); empty when it does not.

    Waiting for the buyer is overdue past the payment window, any other step past its deadline
    (`OPS_STEP_DEADLINES_S`, else the default); an activity at or past the retry threshold is
    a reason on its own.
    """
    reasons = []
    if step == StepName.NEEDS_ATTENTION.value:
        reasons.append("needs_attention")
    elif step == StepName.AWAITING_PAYMENT.value:
        window = settings.checkout.payment_timeout.total_seconds()
        if step_age_s is not None and step_age_s > window:
            reasons.append("payment_window_passed")
    else:
        deadline = settings.ops.step_deadlines_s.get(
            step or "", settings.ops.default_step_deadline_s
        )
        if step_age_s is not None and step_age_s > deadline:
            reasons.append("step_deadline_passed")
    if retrying:
        reasons.append("activity_retrying")
    return reasons


async def _attention(wired: Platform, row: OpsCheckout) -> AttentionOut | None:
    """What a checkout at needs_attention waits for (None at any other step)."""
    if row.step != StepName.NEEDS_ATTENTION.value:
        return None
    try:
        attention = await wired.checkouts.attention(row.checkout_id)
    except RPCError:
        return None  # it moved on meanwhile
    return AttentionOut.model_validate(attention.model_dump()) if attention else None


async def stuck(wired: Platform) -> StuckList:
    """Running checkouts past their step's deadline, past the payment window, or retrying.

    Visibility chooses the runs to look at; each one's step and its age are the checkout
    database's, the same the status API answers (visibility's copy of the step can lag it)."""
    settings = wired.settings
    listed = await _checkouts(
        wired, visibility_query(None, None, None, running=True), STUCK_SCAN_LIMIT
    )
    async with wired.databases["checkout"].begin() as session:
        recorded = await sessions.positions(session, [row.checkout_id for row in listed])
    running = [_as_recorded(row, recorded.get(row.checkout_id)) for row in listed]
    now = datetime.now(UTC)
    descriptions = await asyncio.gather(
        *(wired.checkouts.describe(row.checkout_id) for row in running)
    )
    found = []
    for row, description in zip(running, descriptions, strict=True):
        waiting = _retrying(await _pending(wired, description))
        retrying = [a for a in waiting if a.attempt >= settings.ops.stuck_attempt]
        position = recorded.get(row.checkout_id)
        step_age = (now - position[1]).total_seconds() if position else None
        reasons = stuck_reasons(settings, row.step, step_age, bool(retrying))
        if reasons:
            found.append(
                StuckCheckout(
                    **row.model_dump(),
                    reasons=reasons,
                    step_age_s=step_age,
                    retrying=retrying,
                    pending=waiting,
                    attention=await _attention(wired, row),
                )
            )
    return StuckList(data=found)


def _as_recorded(row: OpsCheckout, position: tuple[str, datetime] | None) -> OpsCheckout:
    """A listed checkout at the step its database records (visibility's when none is)."""
    return row if position is None else row.model_copy(update={"step": position[0]})


async def show(wired: Platform, checkout_id: uuid.UUID) -> OpsCheckoutDetail:
    """A checkout's status, recorded steps, pending activities with their last failure, links."""
    async with wired.databases["checkout"].begin() as session:
        row = await sessions.get_session(session, checkout_id, None)
        steps = await sessions.steps_of(session, checkout_id)
    run_status: str | None = None
    pending: list[PendingActivity] = []
    ran: list[str] = []
    try:
        description = await wired.checkouts.handle(checkout_id).describe()
        run_status = description.status.name.lower() if description.status else None
        pending = await _pending(wired, description)
        ran = await wired.checkouts.compensations(checkout_id)
    except RPCError:
        pass  # past Temporal's retention: the database still tells the story
    return OpsCheckoutDetail(
        checkout=CheckoutOut.of(await status_of(wired, row)),
        run_status=run_status,
        steps=[StepOut.model_validate(s, from_attributes=True) for s in steps],
        pending_activities=pending,
        compensations=ran,
        ui_url=ui_url(wired.settings, workflow_id(checkout_id)),
    )


async def force_cancel(
    wired: Platform, checkout_id: uuid.UUID, idempotency_key: str | None = None
) -> OperatorCancelOut:
    """End a running checkout: compensation runs, and a captured payment is refunded. Answered
    once the payment's compensation has run, with what happened to the money."""
    request = update_id("operator_cancel", checkout_id, idempotency_key)
    await running_session(wired, checkout_id, None)
    done = await asked(checkout_id, wired.checkouts.force_cancel(checkout_id, request))
    return OperatorCancelOut(checkout_id=checkout_id, status=done.status, money=done.money.value)


async def retry(
    wired: Platform, checkout_id: uuid.UUID, idempotency_key: str | None = None
) -> CheckoutAccepted:
    """Run again the compensations a checkout waiting at needs_attention failed (the operator
    has mended the cause); 409 when it does not wait for an operator. Without an
    Idempotency-Key the request answers the checkout's current wait: repeated, it is the same
    request, not a second retry."""
    row = await running_session(wired, checkout_id, None)
    wait = await asked(checkout_id, wired.checkouts.attention_round(checkout_id))
    request = update_id("retry_compensation", checkout_id, idempotency_key, wait)
    await asked(checkout_id, wired.checkouts.retry_compensation(checkout_id, request))
    return CheckoutAccepted(checkout_id=checkout_id, status=row.status)


async def resolve(
    wired: Platform, checkout_id: uuid.UUID, note: str, idempotency_key: str | None = None
) -> CheckoutAccepted:
    """Record that an operator settled by hand what a checkout waiting at needs_attention could
    not give back; the checkout then ends, the note kept with it."""
    request = update_id("resolve", checkout_id, idempotency_key)
    row = await running_session(wired, checkout_id, None)
    await asked(checkout_id, wired.checkouts.resolve(checkout_id, note, request))
    return CheckoutAccepted(checkout_id=checkout_id, status=row.status)
