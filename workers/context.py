"""Every log line an activity writes carries its checkout, workflow, activity and attempt."""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from workflows.checkout.contract import checkout_id_of


class _BindActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        workflow_id = info.workflow_id or ""
        context = {
            "workflow_id": workflow_id,
            "activity": info.activity_type,
            "attempt": info.attempt,
        }
        checkout_id = checkout_id_of(workflow_id)
        if checkout_id is not None:
            context["checkout_id"] = str(checkout_id)
        with structlog.contextvars.bound_contextvars(**context):
            return await super().execute_activity(input)


class LogContextInterceptor(Interceptor):
    """Binds structlog context around each activity execution."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap the activity's inbound calls."""
        return _BindActivityContext(next)
