"""The one cancel path of a checkout: who asked to stop it, and whether that is still honoured.

Four doors lead here (the buyer's `cancel` signal and `request_cancel` update, an operator's
`operator_cancel` update, a cancellation of the run from the web UI) and all of them only
`ask`; the workflow honours the request at its next step boundary, or interrupts the step in
flight, and unwinds once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Canceller(StrEnum):
    """Who asked: a buyer only before the capture, an operator (or the web UI) at any point."""

    BUYER = "buyer"
    OPERATOR = "operator"


@dataclass
class CancelState:
    """The cancel request of one run and the pivot it depends on."""

    by: Canceller | None = None
    # The capture is decided (scheduled, or no payment is needed): a buyer's cancel is refused.
    pivot: bool = False
    # Money was captured: undoing the checkout refunds it.
    captured: bool = False

    def ask(self, by: Canceller) -> bool:
        """Record a request to stop; False when it will not be honoured (a buyer's, past the
        pivot). An operator's request is never replaced by a buyer's."""
        if by is Canceller.BUYER and self.pivot:
            return False
        if self.by is not Canceller.OPERATOR:
            self.by = by
        return True

    @property
    def honoured(self) -> bool:
        """Whether the checkout must stop now: an operator's request, or a buyer's before the
        pivot."""
        if self.by is Canceller.OPERATOR:
            return True
        return self.by is Canceller.BUYER and not self.pivot
