"""Restricted API keys (`rk_test_...`): the sandbox refuses a call the key has no permission for.

A restricted key carries permissions per resource, each `<resource>_read` or `<resource>_write`
(Stripe's names, without the `rak_` prefix its errors add); write implies read. STRIPE_API_KEY,
the secret key, may do everything. Refused calls answer as Stripe does: 403
`invalid_request_error` naming the permission that would let the request through, which the
SDKs raise as PermissionError.

Which call needs what: creating, capturing and cancelling an intent `payment_intent_write`;
reading or searching intents `payment_intent_read`, and expanding an intent's `latest_charge`
`charge_read` as well; creating a refund `refund_write`; reading a dispute `dispute_read`,
answering or closing one `dispute_write`; calculating tax, recording and reversing tax
transactions `tax_calculations_and_transactions_write`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request

from sandbox.psp.auth import mask
from sandbox.psp.errors import ApiError

RESOURCES = frozenset(
    {"payment_intent", "charge", "refund", "dispute", "tax_calculations_and_transactions"}
)
ACCESSES = ("read", "write")
ACCOUNT = "acct_sandbox"
# What request.state holds for the key of the request: None is the secret key (everything).
STATE = "permissions"


def known(permission: str) -> bool:
    """Whether `permission` is one the sandbox checks (`payment_intent_write`, ...)."""
    resource, _, access = permission.rpartition("_")
    return resource in RESOURCES and access in ACCESSES


def allows(granted: frozenset[str] | None, permission: str) -> bool:
    """Whether a key holding `granted` (None: the secret key) may do `permission`."""
    if granted is None or permission in granted:
        return True
    resource, _, access = permission.rpartition("_")
    return access == "read" and f"{resource}_write" in granted


def refused(key: str, permission: str) -> ApiError:
    """Stripe's answer to a restricted key without `permission`."""
    return ApiError(
        403,
        "invalid_request_error",
        None,
        f"The provided key '{mask(key)}' does not have the required permissions for this "
        f"endpoint on account '{ACCOUNT}'. Having the 'rak_{permission}' permission would allow "
        "this request to continue.",
    )


def check(request: Request, *permissions: str) -> None:
    """Refuse the request (403) unless its key holds every one of `permissions`."""
    granted: frozenset[str] | None = getattr(request.state, STATE, None)
    for permission in permissions:
        if not allows(granted, permission):
            raise refused(str(getattr(request.state, "api_key", "")), permission)


def needs(*permissions: str) -> Any:
    """A route dependency refusing a key without `permissions` (after the API-key check)."""
    assert all(known(p) for p in permissions), permissions

    async def dependency(request: Request) -> None:
        check(request, *permissions)

    checked: Callable[[Request], Awaitable[None]] = dependency
    return Depends(checked)
