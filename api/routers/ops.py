"""Operators: find checkouts through Temporal visibility, see why they are stuck, end them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from api.deps import Operator, PlatformDep
from api.errors import ApiError
from api.routers.checkouts import checkout_out, current_status
from api.schemas import CheckoutAccepted, CheckoutOut
from domains.checkout import service as checkouts
from domains.checkout.models import CheckoutStatus, StepName
from tools.checkouts import workflow_id
from workflows.checkout import (
    CHECKOUT_STATUS,
    CHECKOUT_STEP,
    CUSTOMER_ID,
    ORDER_NUMBER,
    CheckoutWorkflow,
)

router = APIRouter(tags=["operations"])


class OpsCheckout(BaseModel):
    """A checkout as operators see it in visibility."""

    checkout_id: uuid.UUID
    workflow_id: str
    run_status: str
    status: str | None
    step: str | None
    customer_id: str | None
    order_number: str | None
    started_at: datetime | None
    age_s: float
    ui_url: str


class RetryingActivity(BaseModel):
    """An activity retrying right now, with its last failure."""

    activity_type: str
    attempt: int
    last_failure: str | None


class StuckCheckout(OpsCheckout):
    """A running checkout that needs a look, and why: `retrying` are the activities at or past
    the retry threshold, `pending` every activity Temporal is waiting on (a stopped worker shows
    as a pending activity that never starts)."""

    reasons: list[str]
    step_age_s: float | None
    retrying: list[RetryingActivity]
    pending: list[RetryingActivity]


class OpsCheckoutList(BaseModel):
    """A page of checkouts, newest first."""

    data: list[OpsCheckout]


class StuckList(BaseModel):
    """Stuck checkouts."""

    data: list[StuckCheckout]


def _ui(wired: PlatformDep, workflow: str) -> str:
    base = wired.settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{wired.settings.temporal_namespace}/workflows/{workflow}"


def _row(wired: PlatformDep, execution: WorkflowExecution) -> OpsCheckout:
    attributes = execution.typed_search_attributes
    started = execution.start_time
    return OpsCheckout(
        checkout_id=uuid.UUID(execution.id.removeprefix("checkout-")),
        workflow_id=execution.id,
        run_status=execution.status.name.lower() if execution.status else "unknown",
        status=attributes.get(CHECKOUT_STATUS),
        step=attributes.get(CHECKOUT_STEP),
        customer_id=attributes.get(CUSTOMER_ID),
        order_number=attributes.get(ORDER_NUMBER),
        started_at=started,
        age_s=(datetime.now(UTC) - started).total_seconds() if started else 0.0,
        ui_url=_ui(wired, execution.id),
    )


def visibility_query(
    status: str | None, step: str | None, older_than_s: float | None, *, running: bool = False
) -> str:
    """The Temporal visibility query an operator can paste into the web UI."""
    clauses = ["WorkflowType = 'CheckoutWorkflow'"]
    if running:
        clauses.append("ExecutionStatus = 'Running'")
    if status:
        clauses.append(f"CheckoutStatus = '{status}'")  # values are validated enum members
    if step:
        clauses.append(f"CheckoutStep = '{step}'")
    if older_than_s:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        clauses.append(f"StartTime < '{cutoff.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'")
    return " AND ".join(clauses)


@router.get("/v1/ops/checkouts", response_model=OpsCheckoutList)
async def list_checkouts(
    wired: PlatformDep,
    _: Operator,
    status: Annotated[CheckoutStatus | None, Query()] = None,
    step: Annotated[StepName | None, Query()] = None,
    older_than_s: Annotated[float | None, Query(ge=0, le=315_360_000)] = None,  # ten years
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> OpsCheckoutList:
    """Checkouts from Temporal visibility (search attributes), each with its web-UI link."""
    query = visibility_query(
        status.value if status else None, step.value if step else None, older_than_s
    )
    rows = [
        _row(wired, execution)
        async for execution in wired.temporal.list_workflows(query, limit=limit)
    ]
    return OpsCheckoutList(data=rows)


async def _pending(wired: PlatformDep, workflow: str) -> list[RetryingActivity]:
    description = await wired.temporal.get_workflow_handle(workflow).describe()
    return [
        RetryingActivity(
            activity_type=pending.activity_type.name,
            attempt=pending.attempt,
            last_failure=pending.last_failure.message if pending.HasField("last_failure") else None,
        )
        for pending in description.raw_description.pending_activities
    ]


@router.get("/v1/ops/checkouts/stuck", response_model=StuckList)
async def stuck_checkouts(wired: PlatformDep, _: Operator) -> StuckList:
    """Running checkouts past their step's deadline, past the payment window, or retrying."""
    settings = wired.settings
    running = [
        _row(wired, execution)
        async for execution in wired.temporal.list_workflows(
            visibility_query(None, None, None, running=True), limit=1000
        )
    ]
    ids = [row.checkout_id for row in running]
    async with wired.databases["checkout"].begin() as session:
        moved = await checkouts.last_moved(session, ids)
    now = datetime.now(UTC)
    pending = await asyncio.gather(*(_pending(wired, row.workflow_id) for row in running))
    stuck = []
    for row, waiting in zip(running, pending, strict=True):
        activities = [a for a in waiting if a.attempt >= settings.ops_stuck_attempt]
        reasons = []
        last = moved.get(row.checkout_id)
        step_age = (now - last).total_seconds() if last else None
        if row.step == StepName.AWAITING_PAYMENT.value:
            window = settings.checkout_payment_timeout.total_seconds()
            if step_age is not None and step_age > window:
                reasons.append("payment_window_passed")
        else:
            deadline = settings.ops_step_deadlines_s.get(
                row.step or "", settings.ops_default_step_deadline_s
            )
            if step_age is not None and step_age > deadline:
                reasons.append("step_deadline_passed")
        if activities:
            reasons.append("activity_retrying")
        if reasons:
            stuck.append(
                StuckCheckout(
                    **row.model_dump(),
                    reasons=reasons,
                    step_age_s=step_age,
                    retrying=activities,
                    pending=waiting,
                )
            )
    return StuckList(data=stuck)


@router.post(
    "/v1/ops/checkouts/{checkout_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutAccepted,
)
async def force_cancel(checkout_id: uuid.UUID, wired: PlatformDep, _: Operator) -> CheckoutAccepted:
    """End a running checkout: compensation runs, and a captured payment is refunded."""
    async with wired.databases["checkout"].begin() as session:
        row = await checkouts.get_session(session, checkout_id, None)
    if CheckoutStatus(row.status) in checkouts.FINAL:
        raise ApiError(409, "checkout_ended", f"the checkout has ended ({row.status})")
    handle = wired.temporal.get_workflow_handle(workflow_id(checkout_id))
    try:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            raise ApiError(409, "checkout_ended", "the checkout's workflow is not running")
        # Before the capture a cancel signal is the customer's path; after it, a Temporal
        # cancellation makes the workflow compensate with a refund.
        captured: bool = await handle.query(CheckoutWorkflow.captured)
        if captured:
            await handle.cancel()
        else:
            await handle.signal(CheckoutWorkflow.cancel)
    except RPCError as exc:
        raise ApiError(503, "temporal_unavailable", "try again") from exc
    return CheckoutAccepted(checkout_id=checkout_id, status=row.status)


class StepOut(BaseModel):
    """One step of a checkout as recorded."""

    step: str
    status: str
    started_at: datetime
    updated_at: datetime
    error_code: str | None


class PendingActivity(BaseModel):
    """An activity Temporal has scheduled and not finished."""

    activity_type: str
    state: str
    attempt: int
    last_failure: str | None


class OpsCheckoutDetail(BaseModel):
    """Everything an operator needs about one checkout."""

    checkout: CheckoutOut
    run_status: str | None
    steps: list[StepOut]
    pending_activities: list[PendingActivity]
    compensations: list[str]
    ui_url: str


@router.get("/v1/ops/checkouts/{checkout_id}", response_model=OpsCheckoutDetail)
async def show_checkout(
    checkout_id: uuid.UUID, wired: PlatformDep, _: Operator
) -> OpsCheckoutDetail:
    """A checkout's status, recorded steps, pending activities with their last failure, links."""
    async with wired.databases["checkout"].begin() as session:
        row = await checkouts.get_session(session, checkout_id, None)
        steps = await checkouts.steps_of(session, checkout_id)
    workflow = workflow_id(checkout_id)
    handle = wired.temporal.get_workflow_handle(workflow)
    run_status: str | None = None
    pending: list[PendingActivity] = []
    ran: list[str] = []
    try:
        description = await handle.describe()
        run_status = description.status.name.lower() if description.status else None
        for activity in description.raw_description.pending_activities:
            pending.append(
                PendingActivity(
                    activity_type=activity.activity_type.name,
                    state=PendingActivityState.Name(activity.state)
                    .removeprefix("PENDING_ACTIVITY_STATE_")
                    .lower(),
                    attempt=activity.attempt,
                    last_failure=(
                        activity.last_failure.message if activity.HasField("last_failure") else None
                    ),
                )
            )
        ran = await handle.query(CheckoutWorkflow.compensations)
    except RPCError:
        pass  # past Temporal's retention: the database still tells the story
    return OpsCheckoutDetail(
        checkout=checkout_out(await current_status(wired, row)),
        run_status=run_status,
        steps=[
            StepOut(
                step=s.step_name,
                status=s.status,
                started_at=s.started_at,
                updated_at=s.updated_at,
                error_code=s.error_code,
            )
            for s in steps
        ],
        pending_activities=pending,
        compensations=ran,
        ui_url=_ui(wired, workflow),
    )
