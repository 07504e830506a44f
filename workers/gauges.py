"""The checkout worker's view of the checkouts not ended, as Prometheus gauges.

Per step (`CheckoutStep`'s values): `checkouts_open{step}`, how many checkouts stand at it, and
`checkouts_oldest_age{step}`, the seconds since the one that moved least recently recorded
progress. `checkouts_open{step="needs_attention"}` counts the checkouts waiting for an operator;
an age beyond a step's deadline is a stuck checkout (deploy/monitoring/alerts.yml). Every step is
set on every pass, to 0 when none stands at it, so a resolved checkout clears its alert.

One grouped query on the checkout database per `INTERVAL_S`, in every checkout worker process
(each reports the same numbers: the alerts take the `max`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.common import MetricMeter

from domains.checkout import service as sessions
from domains.checkout.statuses import StepName
from kit.db import DomainDatabase

# How often the gauges are refreshed: well under the alerts' `for` durations.
INTERVAL_S = 30.0


class CheckoutGauges:
    """Sets the open-checkout gauges from the checkout database."""

    def __init__(self, db: DomainDatabase, meter: MetricMeter) -> None:
        self.db = db
        self._open = meter.create_gauge("checkouts_open", "checkouts not ended, by current step")
        self._age = meter.create_gauge_float(
            "checkouts_oldest_age",
            "time since the least recently moved checkout at a step recorded progress",
            "s",
        )

    async def observe(self) -> None:
        """Read the open checkouts per step and set both gauges for every step."""
        async with self.db.begin() as session:
            steps = await sessions.open_by_step(session)
        now = datetime.now(UTC)
        for step in StepName:
            count, oldest = steps.get(step.value, (0, now))
            attributes = {"step": step.value}
            self._open.set(count, attributes)
            self._age.set(max((now - oldest).total_seconds(), 0.0), attributes)
