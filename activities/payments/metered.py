"""Every payment provider call counted by operation and outcome, for the error-rate alert.

`payment_provider_calls{provider,operation,outcome}`: `ok`; `rejected` (a definite refusal: a
declined card is the customer's doing, not an error of the platform); `unavailable` (timeouts,
5xx, rate limits: retried under the same idempotency key); `misuse` (the provider says the
platform is wrong: a bug or a bad key); `error` (anything else raised).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from temporalio.common import MetricMeter

from domains.payments.errors import ProviderUnavailable
from domains.payments.provider import Intent, PaymentProvider, ProviderMisuse, ProviderRejected
from kit.money import Money

T = TypeVar("T")


def outcome_of(error: Exception) -> str:
    """The `outcome` label of a call that raised `error`."""
    if isinstance(error, ProviderRejected):
        return "rejected"
    if isinstance(error, ProviderUnavailable):
        return "unavailable"
    if isinstance(error, ProviderMisuse):
        return "misuse"
    return "error"


class MeteredProvider:
    """A `PaymentProvider` that counts the calls of the one it wraps."""

    def __init__(self, provider: PaymentProvider, meter: MetricMeter) -> None:
        self.provider, self.name = provider, provider.name
        self._calls = meter.create_counter(
            "payment_provider_calls", "payment provider calls by operation and outcome"
        ).with_additional_attributes({"provider": provider.name})

    async def _counted(self, operation: str, call: Awaitable[T]) -> T:
        try:
            result = await call
        except Exception as exc:
            self._calls.add(1, {"operation": operation, "outcome": outcome_of(exc)})
            raise
        self._calls.add(1, {"operation": operation, "outcome": "ok"})
        return result

    async def authorize(
        self, amount: Money, *, payment_method: str, metadata: dict[str, str], key: str
    ) -> Intent:
        return await self._counted(
            "authorize",
            self.provider.authorize(
                amount, payment_method=payment_method, metadata=metadata, key=key
            ),
        )

    async def confirm(self, intent_id: str, *, payment_method: str, key: str) -> Intent:
        return await self._counted(
            "confirm", self.provider.confirm(intent_id, payment_method=payment_method, key=key)
        )

    async def retrieve(self, intent_id: str) -> Intent:
        return await self._counted("retrieve", self.provider.retrieve(intent_id))

    async def find_intent(self, checkout_id: str) -> Intent | None:
        return await self._counted("find_intent", self.provider.find_intent(checkout_id))

    async def capture(self, intent_id: str, *, key: str) -> Intent:
        return await self._counted("capture", self.provider.capture(intent_id, key=key))

    async def cancel(self, intent_id: str, *, key: str) -> Intent:
        return await self._counted("cancel", self.provider.cancel(intent_id, key=key))

    async def refund(self, intent_id: str, *, amount: Money | None, key: str) -> None:
        await self._counted("refund", self.provider.refund(intent_id, amount=amount, key=key))

    async def aclose(self) -> None:
        await self.provider.aclose()
