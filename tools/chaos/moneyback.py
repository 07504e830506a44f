"""Money going back after the sale through the platform's own API: an operator's partial refund
and a buyer's return, each checked against what the platform promises.

An operator refunds part of a completed order (`POST /v1/ops/orders/{id}/refunds`), sometimes
sending the same request several times at once (one Idempotency-Key: the money moves once),
sometimes asking afterwards for more than is left (422 `refund_exceeds_captured`, nothing moves)
or for all that is left (the order is then `refunded`). On `pm_card_refundFail` the refund fails
at the provider: it must wait in `GET /v1/ops/refunds/failed`, where the operator retries it
(it fails again) or settles it by hand and resolves it.

A buyer returns part of one line of a delivered order (discounted, with a paid shipping rate):
the return's `refund_amount` must be the line's share, computed here from the order alone
(`return_share`); a second return beyond what is left is 422 `return_quantity_exceeded`. The
operator then rejects it, approves it and receives the parcel (restocked or not), approves it
and lets the carrier's delivery of the return label receive it (restocked), or, now and then,
leaves it waiting on purpose (it must stay visible in `GET /v1/ops/returns`). A received return
must end `refunded`, its units restocked as received, the order's `refunded_amount` equal to it.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tools.chaos.aftersale import CENT, REFUNDED_STATUSES, SHOW_WITHIN_S, AfterSale, until
from tools.chaos.client import Answer
from tools.chaos.journey import Record
from workflows.returns.models import workflow_id

Body = dict[str, Any]
# How many copies of the operator's refund are sent at once when it is replayed.
REPLAYS = 3
# Shares of the operator refunds replayed at once, and followed by an over-refund (the others
# are followed by a refund of all that is left).
REPLAY_SHARE, OVER_SHARE = 0.5, 0.6
# Shares of the returns left waiting on purpose and rejected; of the approved ones, how many
# the operator receives by hand (the rest the carrier's delivery receives).
ABANDON_SHARE, REJECT_SHARE, BY_HAND_SHARE = 0.1, 0.25, 0.5
# A delivered order waits this long for its parcel (three carrier steps, 4 s each, and faults).
DELIVERED_WITHIN_S = 180.0
# The carrier's delivery of a return label: three more steps, and the refund after it.
RETURN_ENDS_WITHIN_S = 240.0


def _money(value: str) -> Decimal:
    return Decimal(value)


def return_share(order: Body, item_id: str, quantity: int) -> Decimal:
    """What a first return of `quantity` units of line `item_id` gives back: the line's value
    (total less its share of the discount plus its tax) pro rata to the units, half up, the
    whole line's value when all its units come back, plus the shipping and its tax when the
    return brings back every unit of the order."""
    line = next(item for item in order["items"] if item["id"] == item_id)
    value = (
        _money(line["total_price"]) - _money(line["discount_amount"]) + _money(line["tax_amount"])
    )
    units = int(line["quantity"])
    share = value if quantity == units else (value * quantity / units).quantize(CENT, ROUND_HALF_UP)
    everything = quantity == units and len(order["items"]) == 1
    if everything:
        lines_tax = sum((_money(item["tax_amount"]) for item in order["items"]), Decimal(0))
        share += _money(order["shipping_amount"]) + _money(order["tax_amount"]) - lines_tax
    return share


def abandoned_workflows(records: list[Record]) -> frozenset[str]:
    """The workflows of the returns the journeys left waiting on purpose (they never end)."""
    return frozenset(
        workflow_id(uuid.UUID(r.abandoned_return)) for r in records if r.abandoned_return
    )


class MoneyBack(AfterSale):
    """The after-sale steps of the load, with the operator's refunds and the buyers' returns."""

    async def run(self, record: Record) -> None:
        """The step for this record, if its checkout ended where the step applies."""
        after = record.plan.scenario.after
        completed = record.status == "completed" and record.order_id is not None
        if after == "ops_refund" and completed:
            assert record.order_id is not None
            record.aftersale = await self.operator_refund(record, record.order_id)
        elif after == "return" and completed:
            assert record.order_id is not None
            record.aftersale = await self.buyer_return(record, record.order_id)
        else:
            await super().run(record)

    async def _order(self, order_id: str) -> Body:
        answer = await self.api.send("GET", f"/v1/orders/{order_id}", headers=self.operator)
        body: Body = answer.response.json() if answer.response.status_code == 200 else {}
        return body

    async def _order_shows(self, order_id: str, refunded: Decimal, total: Decimal) -> str | None:
        """None once the order shows `refunded` given back (and its status), else what it shows."""
        want = REFUNDED_STATUSES[refunded == total]
        seen: list[Body] = [{}]

        async def probe() -> bool:
            seen[0] = await self._order(order_id)
            shown = seen[0].get("status") == want
            return shown and _money(seen[0]["refunded_amount"]) == refunded

        if await until(probe, SHOW_WITHIN_S):
            return None
        return (
            f"the order shows {seen[0].get('status')} {seen[0].get('refunded_amount')}, "
            f"expected {want} {refunded}"
        )

    async def _refund(self, order_id: str, amount: Decimal, key: str) -> Answer:
        return await self.api.send(
            "POST",
            f"/v1/ops/orders/{order_id}/refunds",
            json={"amount": str(amount), "currency": "USD", "reason": "chaos: goodwill"},
            headers={**self.operator, "Idempotency-Key": key},
        )

    async def operator_refund(self, record: Record, order_id: str) -> str:
        """A third of the order refunded by an operator (maybe several times at once), then
        more than is left (refused) or all that is left; a failing one resolved by hand."""
        assert record.total is not None
        total = _money(record.total)
        amount = (total / 3).quantize(CENT)
        if amount <= 0:
            return "ok"
        copies = REPLAYS if self.rng.random() < REPLAY_SHARE else 1
        if copies > 1:
            record.paths.append("ops_refund_replayed")
        key = f"{record.key}-ops-refund"
        answers = await asyncio.gather(
            *(self._refund(order_id, amount, key) for _ in range(copies))
        )
        if any(a.response.status_code != 202 for a in answers):
            return f"the refund answered {[a.response.text[:200] for a in answers]}"
        ids = {a.response.json()["refund_id"] for a in answers}
        if len(ids) != 1:
            return f"one Idempotency-Key made {len(ids)} refunds"
        failing = record.plan.scenario.method == "pm_card_refundFail"
        if failing:
            trouble = await self._settle_failed(record)
            refunded = Decimal(0)
        else:
            trouble = await self._refund_succeeds(ids.pop())
            refunded = amount
        if trouble:
            return trouble
        if failing or self.rng.random() < OVER_SHARE:
            over = await self._refund(order_id, total - refunded + CENT, f"{key}-over")
            code = over.response.json().get("code")
            if (over.response.status_code, code) != (422, "refund_exceeds_captured"):
                return f"an over-refund answered {over.response.status_code} {code}"
            record.paths.append("ops_refund_over_refused")
        else:
            rest = await self._refund(order_id, total - refunded, f"{key}-rest")
            if rest.response.status_code != 202:
                return f"the refund of the rest answered {rest.response.status_code}"
            record.paths.append("ops_refund_rest")
            refunded = total
        if not failing:
            return await self._order_shows(order_id, refunded, total) or "ok"
        return "ok"

    async def _refund_succeeds(self, refund_id: str) -> str | None:
        async def probe() -> bool:
            answer = await self.api.send(
                "GET", f"/v1/ops/refunds/{refund_id}", headers=self.operator
            )
            return answer.response.status_code == 200 and (
                answer.response.json()["status"] == "succeeded"
            )

        if await until(probe, SHOW_WITHIN_S):
            return None
        return f"refund {refund_id} did not succeed within {SHOW_WITHIN_S:.0f}s"

    async def _failed(self, record: Record, not_ids: set[str]) -> Body | None:
        async def probe() -> Body | None:
            waiting = await self._ops("/v1/ops/refunds/failed?limit=500")
            return next(
                (
                    r
                    for r in waiting
                    if r["checkout_id"] == record.checkout_id and r["id"] not in not_ids
                ),
                None,
            )

        found: Body | None = await until(probe, SHOW_WITHIN_S)
        return found

    async def _settle_failed(self, record: Record) -> str | None:
        """The refund failed at the provider: it waits for the operator, who retries it once
        (this card fails it again) or not, then resolves it (settled by bank transfer)."""
        failed = await self._failed(record, set())
        if failed is None:
            return "the failed refund is not in /v1/ops/refunds/failed"
        if self.rng.random() < 0.5:
            retried = await self.api.send(
                "POST",
                f"/v1/ops/refunds/{failed['id']}/retry",
                headers=self.operator,
                json={"note": "chaos: the card was mended"},
            )
            if retried.response.status_code != 200:
                return f"the retry answered {retried.response.status_code}"
            record.paths.append("ops_refund_retried")
            failed = await self._failed(record, {failed["id"]})
            if failed is None:
                return "the retried refund failed again but does not wait for an operator"
        resolved = await self._resolve_refund(failed["id"])
        if resolved.status_code != 200:
            return f"resolve answered {resolved.status_code}"
        record.paths.append("ops_refund_failed_resolved")
        return None

    async def _delivered(self, order_id: str) -> Body | None:
        async def probe() -> Body | None:
            order = await self._order(order_id)
            return order if order.get("status") == "delivered" else None

        found: Body | None = await until(probe, DELIVERED_WITHIN_S)
        return found

    async def _ask_return(
        self, record: Record, order_id: str, item: str, units: int, key: str
    ) -> Answer:
        assert record.plan.buyer is not None
        return await self.api.send(
            "POST",
            f"/v1/orders/{order_id}/returns",
            json={"lines": [{"order_item_id": item, "quantity": units}], "reason": "chaos"},
            headers={**record.plan.buyer.headers, "Idempotency-Key": key},
        )

    async def buyer_return(self, record: Record, order_id: str) -> str:
        """Part of one line of the delivered order returned, refunded its share (or rejected,
        or left waiting on purpose); asking for more than is left is refused."""
        order = await self._delivered(order_id)
        if order is None:
            return f"the order was not delivered within {DELIVERED_WITHIN_S:.0f}s"
        line = self.rng.choice(order["items"])
        units = int(line["quantity"])
        asked = self.rng.randint(1, units)
        share = return_share(order, line["id"], asked)
        answer = await self._ask_return(record, order_id, line["id"], asked, f"{record.key}-ret")
        if answer.response.status_code != 201:
            return f"the return answered {answer.response.status_code} {answer.response.text[:200]}"
        made: Body = answer.response.json()
        if _money(made["refund_amount"]) != share:
            return f"the return's refund_amount is {made['refund_amount']}, its share is {share}"
        beyond = await self._ask_return(
            record, order_id, line["id"], units - asked + 1, f"{record.key}-ret-beyond"
        )
        code = beyond.response.json().get("code")
        if (beyond.response.status_code, code) != (422, "return_quantity_exceeded"):
            return f"a return beyond what is left answered {beyond.response.status_code} {code}"
        draw = self.rng.random()
        if draw < ABANDON_SHARE:
            record.abandoned_return = made["id"]
            record.paths.append("return_left_requested")
            return "ok"
        if draw < ABANDON_SHARE + REJECT_SHARE:
            return await self._decide(record, made["id"], "reject") or "ok"
        trouble = await self._decide(record, made["id"], "approve")
        if trouble:
            return trouble
        trouble = await self._receive(record, made["id"], line["id"], asked)
        if trouble:
            return trouble
        return await self._order_shows(order_id, share, _money(order["total_amount"])) or "ok"

    async def _decide(self, record: Record, return_id: str, decision: str) -> str | None:
        body = {"note": "chaos: worn"} if decision == "reject" else None
        answer = await self.api.send(
            "POST", f"/v1/ops/returns/{return_id}/{decision}", headers=self.operator, json=body
        )
        want = {"reject": "rejected", "approve": "approved"}[decision]
        shown = answer.response.json().get("status")
        if answer.response.status_code != 200 or shown != want:
            return f"{decision} answered {answer.response.status_code} {shown}"
        record.paths.append(f"return_{want}")
        return None

    async def _return(self, return_id: str) -> Body:
        answer = await self.api.send("GET", f"/v1/returns/{return_id}", headers=self.operator)
        body: Body = answer.response.json() if answer.response.status_code == 200 else {}
        return body

    async def _receive(self, record: Record, return_id: str, item: str, units: int) -> str | None:
        """The operator receives the parcel once its label is bought (restocked or not), or
        the carrier's delivery of the label receives it (restocked); the return then ends
        `refunded` with its units restocked as received."""
        restock = True
        if self.rng.random() < BY_HAND_SHARE:
            labelled = await until(lambda: self._labelled(return_id), SHOW_WITHIN_S)
            if labelled is None:
                return f"return {return_id} has no label after {SHOW_WITHIN_S:.0f}s"
            restock = self.rng.random() < 0.5
            receipt = {"lines": [{"order_item_id": item, "quantity": units, "restock": restock}]}
            answer = await self.api.send(
                "POST", f"/v1/ops/returns/{return_id}/receive", headers=self.operator, json=receipt
            )
            code = answer.response.json().get("code")
            if answer.response.status_code == 200:
                record.paths.append(f"return_received_restock_{str(restock).lower()}")
            elif code == "return_not_awaiting":  # the carrier's delivery came first
                restock = True
                record.paths.append("return_received_by_carrier_first")
            else:
                return f"receive answered {answer.response.status_code} {code}"
        else:
            record.paths.append("return_received_by_carrier")
        seen: list[Body] = [{}]

        async def refunded() -> bool:
            seen[0] = await self._return(return_id)
            return seen[0].get("status") == "refunded"

        if not await until(refunded, RETURN_ENDS_WITHIN_S):
            return f"return {return_id} is {seen[0].get('status')}, not refunded"
        lines = [(x["received_quantity"], x["restocked_quantity"]) for x in seen[0]["lines"]]
        if lines != [(units, units if restock else 0)]:
            return f"return {return_id} received/restocked {lines}, restock was {restock}"
        return None

    async def _labelled(self, return_id: str) -> bool:
        return bool((await self._return(return_id)).get("label"))
