"""Stripe-shaped API errors: `{"error": {"type", "code", "message", ...}}`.

The HTTP status and `type` together decide which exception Stripe's SDKs raise (stripe-python:
`_APIRequestor.specific_v1_api_error`): 400/404 `invalid_request_error` -> InvalidRequestError,
400 `idempotency_error` -> IdempotencyError, 401 -> AuthenticationError, 402 -> CardError,
409 and 5xx -> APIError (retried by the SDK's own retries, when it has any).
"""

from __future__ import annotations

from collections.abc import Mapping
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
        decline_code: str | None = None,
        payment_intent: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.decline_code = decline_code
        self.payment_intent = payment_intent
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        if self.decline_code is not None:
            error["decline_code"] = self.decline_code
        if self.payment_intent is not None:
            error["payment_intent"] = self.payment_intent
        return {"error": error}


def invalid_request(
    code: str, message: str, *, status: int = 400, param: str | None = None
) -> ApiError:
    """An `invalid_request_error` (bad parameters, unknown objects, wrong state)."""
    return ApiError(status, "invalid_request_error", code, message, param=param)


def invalid_value(message: str, *, param: str | None = None) -> ApiError:
    """A parameter (or body) Stripe cannot read or will not take: as at Stripe, an
    `invalid_request_error` with its message and parameter and no `code` (Stripe's codes name
    specific failures; a generic "invalid value" has none)."""
    return ApiError(400, "invalid_request_error", None, message, param=param)


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


def card_error(
    code: str, decline_code: str | None, message: str, intent: dict[str, Any]
) -> ApiError:
    """402 `card_error`: the card (or its issuer) refused; the failed intent travels with it.

    Unlike the other errors this one is the answer of an executed request (the intent exists,
    an event was sent), so it is stored under the Idempotency-Key and replayed as it is.
    """
    return ApiError(
        402, "card_error", code, message, decline_code=decline_code, payment_intent=intent
    )


INTEGER_ERRORS = frozenset({"int_type", "int_parsing", "int_from_float"})
# An integer out of its range is `parameter_invalid_integer` at Stripe too.
BOUND_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def parameter_error(error: Mapping[str, Any]) -> ApiError:
    """One of pydantic's validation errors as Stripe words it, the parameter in bracket notation."""
    loc = [str(part) for part in error.get("loc", ())]
    param = loc[0] + "".join(f"[{part}]" for part in loc[1:]) if loc else None
    kind = error.get("type")
    if kind == "extra_forbidden":
        return invalid_request(
            "parameter_unknown", f"Received unknown parameter: {param}", param=param
        )
    if kind == "missing":
        return invalid_request(
            "parameter_missing", f"Missing required param: {param}.", param=param
        )
    if kind in INTEGER_ERRORS:
        return invalid_request(
            "parameter_invalid_integer", f"Invalid integer: {error.get('input')}", param=param
        )
    message = str(error.get("msg", "Invalid parameter."))
    if kind in BOUND_ERRORS and isinstance(error.get("input"), int):
        return invalid_request("parameter_invalid_integer", f"{param}: {message}", param=param)
    if error.get("input") == "":
        return invalid_request(
            "parameter_invalid_empty", f"You passed an empty string for '{param}'.", param=param
        )
    return invalid_value(message if param is None else f"{param}: {message}", param=param)
