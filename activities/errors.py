"""How a failure leaves an activity: permanent failures are not retried, transient ones are.

- A DomainError is a business failure: non-retryable, its `type` the domain's stable code.
- A data error from PostgreSQL (SQLSTATE class 22: a NUL byte, a value out of range, text the
  database cannot store) fails the same way on every attempt: retrying it forever would hold the
  checkout and its stock; it is non-retryable `invalid_input`.
- A definite refusal by the payment provider that an activity did not handle itself (a 4xx on
  re-reading, refunding or cancelling an intent: the same request would be refused again) is
  non-retryable `provider_refused`: a compensation meeting it waits for an operator
  (needs_attention) instead of retrying forever.
- Anything else (a lost connection, a deadlock, a serialization failure, a provider timeout, a
  provider 5xx/409/429) propagates unchanged and Temporal retries the activity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from domains.payments.provider import ProviderRejected
from kit.errors import DomainError

INVALID_INPUT = "invalid_input"
PROVIDER_REFUSED = "provider_refused"
# SQLSTATE classes whose errors no retry can mend: data exceptions.
PERMANENT_SQLSTATE_CLASSES = frozenset({"22"})


def sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE of a database error, when the driver reports one."""
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return str(code) if code else None


@contextmanager
def business_failures() -> Iterator[None]:
    """Turn permanent failures into non-retryable ApplicationErrors with a stable `type`."""
    try:
        yield
    except DomainError as exc:
        raise ApplicationError(
            exc.message, {"code": exc.code, **exc.details}, type=exc.code, non_retryable=True
        ) from exc
    except ProviderRejected as exc:
        raise ApplicationError(
            f"the payment provider refused the request: {exc.reason}",
            {"code": PROVIDER_REFUSED, "provider_code": exc.reason, "status": exc.status},
            type=PROVIDER_REFUSED,
            non_retryable=True,
        ) from exc
    except DBAPIError as exc:
        code = sqlstate(exc)
        if code is None or code[:2] not in PERMANENT_SQLSTATE_CLASSES:
            raise
        raise ApplicationError(
            f"the database refused the data (SQLSTATE {code})",
            {"code": INVALID_INPUT, "sqlstate": code},
            type=INVALID_INPUT,
            non_retryable=True,
        ) from exc


class _Classify(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        with business_failures():
            return await super().execute_activity(input)


class PermanentFailures(Interceptor):
    """Applies `business_failures` to every activity of a worker: one rule, no activity can
    forget it (a compensation refused for good must reach an operator, never retry forever)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap the activity's inbound calls."""
        return _Classify(next)
