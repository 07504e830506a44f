"""Stripe-shaped API errors: `{"error": {"type", "code", "message", ...}}`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer other than success; raised before any effect, so it is never stored."""

    def __init__(
        self,
        status: int,
        type_: str,
        code: str | None,
        message: str,
        *,
        param: str | None = None,
        payment_intent: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.payment_intent = payment_intent

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        if self.payment_intent is not None:
            error["payment_intent"] = self.payment_intent
        return {"error": error}


def invalid_request(
    code: str, message: str, *, status: int = 400, param: str | None = None
) -> ApiError:
    """An `invalid_request_error` (bad parameters, unknown objects, wrong state)."""
    return ApiError(status, "invalid_request_error", code, message, param=param)


def resource_missing(kind: str, object_id: str, *, param: str | None = None) -> ApiError:
    """404 for an unknown object named in the path, 400 for one named in the body (as Stripe)."""
    return invalid_request(
        "resource_missing",
        f"No such {kind}: '{object_id}'",
        status=404 if param is None else 400,
        param=param,
    )


def unexpected_state(intent: dict[str, Any], action: str) -> ApiError:
    """The intent's status does not allow `action`; the intent travels with the error."""
    return ApiError(
        400,
        "invalid_request_error",
        "payment_intent_unexpected_state",
        f"You cannot {action} this PaymentIntent because it has a status of {intent['status']}.",
        payment_intent=intent,
    )
