"""The invariants (docs/reference/invariants.md), checked from the databases and the ledger.

Meant for moments when nothing is in flight: after a test, after the benchmark, by an operator.
Returns human-readable violations; an empty list means every invariant holds.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text

from kit.db import DomainDatabase
from kit.money import Money

ENDED = ("completed", "failed", "cancelled", "expired")
# A row as a query returned it.
Row = Mapping[str, Any]


@dataclass
class LedgerEntry:
    """The provider's view of one intent."""

    status: str
    currency: str
    authorized: int
    captured: int
    refunded: int


@dataclass
class Report:
    """What was checked and what was wrong."""

    checkouts: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Record one violation."""
        self.violations.append(message)


async def _rows(db: DomainDatabase, sql: str, **params: Any) -> list[Row]:
    async with db.begin() as session:
        result = await session.execute(text(sql), params)
        return [dict(row._mapping) for row in result]


async def fetch_ledger(psp_url: str) -> dict[str, list[LedgerEntry]]:
    """The provider's ledger, grouped by `metadata.checkout_id`."""
    async with httpx.AsyncClient(base_url=psp_url, timeout=30) as client:
        response = await client.get("/v1/ledger")
        response.raise_for_status()
    grouped: dict[str, list[LedgerEntry]] = defaultdict(list)
    for item in response.json()["data"]:
        checkout_id = (item.get("metadata") or {}).get("checkout_id")
        if checkout_id:
            grouped[checkout_id].append(
                LedgerEntry(
                    status=item["status"],
                    currency=str(item["currency"]).upper(),
                    authorized=int(item["authorized"]),
                    captured=int(item["captured"]),
                    refunded=int(item["refunded"]),
                )
            )
    return grouped


# Statuses of a completed checkout's order that say it was never paid (or gave it all back).
NOT_PAID = ("pending_payment", "cancelled", "refunded", "partially_refunded")
# A completed checkout's payment: captured, then perhaps disputed or refunded after the sale.
AFTER_CAPTURE = ("captured", "disputed", "refunded")


async def check_invariants(
    databases: Mapping[str, DomainDatabase],
    psp_url: str,
    checkout_ids: Iterable[uuid.UUID] | None = None,
) -> Report:
    """Check every invariant; per-checkout ones for `checkout_ids` (default: every ended one)."""
    report = Report()
    await _check_stock(databases["inventory"], report)
    await _check_coupon_limits(databases["coupons"], report)
    await _check_returns(databases["orders"], databases["inventory"], report)

    wanted = [str(c) for c in checkout_ids] if checkout_ids is not None else None
    sessions = await _rows(
        databases["checkout"],
        "SELECT id::text AS id, status, cart_id, total_amount, currency FROM checkout_sessions "
        "WHERE status = ANY(:ended)",
        ended=list(ENDED),
    )
    by_id = {row["id"]: row for row in sessions}
    if wanted is not None:
        missing = [c for c in wanted if c not in by_id]
        for checkout_id in missing:
            report.fail(f"checkout {checkout_id} has not ended")
        sessions = [by_id[c] for c in wanted if c in by_id]
    ledger = await fetch_ledger(psp_url)
    for row in sessions:
        report.checkouts += 1
        await _check_checkout(databases, ledger.get(row["id"], []), row, report)
    return report


async def _check_stock(db: DomainDatabase, report: Report) -> None:
    rows = await _rows(
        db,
        """
        SELECT i.variant_id::text AS variant_id, i.total_stock, i.reserved,
               COALESCE(SUM(r.quantity) FILTER (WHERE r.status = 'active'), 0) AS active
        FROM inventory_items i
        LEFT JOIN inventory_reservations r ON r.variant_id = i.variant_id
        GROUP BY i.variant_id, i.total_stock, i.reserved
        """,
    )
    for row in rows:
        if not 0 <= row["active"] <= row["total_stock"]:
            report.fail(f"oversold {row['variant_id']}: {row['active']} > {row['total_stock']}")
        if row["active"] != row["reserved"]:
            report.fail(
                f"variant {row['variant_id']}: reserved={row['reserved']}, active={row['active']}"
            )


# A return whose received units were recorded: its restock must have happened by now.
RECEIVED_RETURNS = ("received", "refunded", "needs_attention")


async def _check_returns(orders: DomainDatabase, inventory: DomainDatabase, report: Report) -> None:
    """Invariant 12: a returned unit goes back to stock at most once, only when received for
    restocking, and no order line is returned beyond what was bought."""
    lines = await _rows(
        orders,
        """
        SELECT l.return_id::text AS return_id, l.order_item_id::text AS item, r.status,
               l.quantity, l.received_quantity AS received, l.restocked_quantity AS restocked
        FROM order_return_lines l JOIN order_returns r ON r.id = l.return_id
        """,
    )
    restocks = await _rows(
        inventory,
        "SELECT return_id::text AS return_id, order_item_id::text AS item, "
        "count(*) AS rows, sum(quantity) AS quantity FROM inventory_restocks "
        "GROUP BY return_id, order_item_id",
    )
    restocked = {(r["return_id"], r["item"]): r for r in restocks}
    for line in lines:
        key = (line["return_id"], line["item"])
        where = f"return {key[0]} line {key[1]}"
        if not 0 <= line["restocked"] <= line["received"] <= line["quantity"]:
            report.fail(f"{where}: restocked {line['restocked']} > received {line['received']}")
        found = restocked.pop(key, None)
        rows, quantity = (found["rows"], found["quantity"]) if found else (0, 0)
        if rows > 1:
            report.fail(f"{where}: restocked {rows} times")
        # One waiting for an operator may not have restocked yet, never more than its line says.
        owed = line["status"] == "needs_attention" and quantity < line["restocked"]
        if line["status"] in RECEIVED_RETURNS and quantity != line["restocked"] and not owed:
            report.fail(f"{where}: inventory restocked {quantity}, not {line['restocked']}")
        if line["status"] not in RECEIVED_RETURNS and quantity:
            report.fail(f"{where}: restocked {quantity} before it was received")
    for return_id, item in restocked:
        report.fail(f"return {return_id} line {item}: restocked, but no such return line")
    await _check_returned_at_most_bought(orders, report)


async def _check_returned_at_most_bought(orders: DomainDatabase, report: Report) -> None:
    rows = await _rows(
        orders,
        """
        SELECT i.id::text AS item, i.quantity AS bought, sum(l.quantity) AS returned
        FROM order_return_lines l
        JOIN order_returns r ON r.id = l.return_id AND r.status <> 'rejected'
        JOIN order_items i ON i.id = l.order_item_id
        GROUP BY i.id, i.quantity
        HAVING sum(l.quantity) > i.quantity
        """,
    )
    for row in rows:
        report.fail(f"order line {row['item']}: {row['returned']} returned of {row['bought']}")


async def _check_coupon_limits(db: DomainDatabase, report: Report) -> None:
    rows = await _rows(
        db,
        """
        SELECT c.code, c.max_redemptions, c.max_per_user, r.user_id::text AS user_id,
               COUNT(*) OVER (PARTITION BY c.id) AS total,
               COUNT(*) OVER (PARTITION BY c.id, r.user_id) AS mine
        FROM coupons c JOIN coupon_redemptions r ON r.coupon_id = c.id
        WHERE r.status IN ('held', 'confirmed')
        """,
    )
    for row in rows:
        if row["max_redemptions"] is not None and row["total"] > row["max_redemptions"]:
            report.fail(f"coupon {row['code']}: {row['total']} > {row['max_redemptions']}")
        if row["max_per_user"] is not None and row["mine"] > row["max_per_user"]:
            report.fail(f"coupon {row['code']}: user {row['user_id']} used it {row['mine']} times")


@dataclass
class _Ended:
    """One ended checkout as the domain databases and the provider's ledger hold it."""

    id: str
    status: str
    intents: list[LedgerEntry]
    active: list[Row]  # its reservations still active
    orders: list[Row]
    payments: list[Row]
    refunds: list[Row]
    # Refunds asked for after the sale (an operator's, a return's), with whether the provider's
    # refund of a sent one is recorded.
    requests: list[Row]
    redemptions: list[Row]
    carts: list[Row]

    @property
    def tag(self) -> str:
        """How a violation names the checkout."""
        return f"checkout {self.id} ({self.status})"

    @property
    def captured(self) -> int:
        """Minor units the provider captured, over every intent."""
        return sum(i.captured for i in self.intents)

    @property
    def refunded(self) -> int:
        """Minor units the provider refunded, over every intent."""
        return sum(i.refunded for i in self.intents)

    @property
    def owed(self) -> int:
        """Minor units of refunds that failed at the card network: money still owed, waiting
        visibly for an operator (`/v1/ops/refunds/failed`) or settled by hand (11). A retried
        one is not counted: its retry is a refund of its own. Failed refunds may ask for the same
        money twice (an operator's refund after a cancellation's failed), so what is owed may
        exceed what is left; the provider never gives back more than was captured."""
        return sum(
            Money.of(Decimal(r["amount"]), r["currency"]).to_minor_units()
            for r in self.refunds
            if r["status"] == "failed" and r["resolution"] != "retried"
        )


async def _read_ended(
    databases: Mapping[str, DomainDatabase], intents: list[LedgerEntry], session: Row
) -> _Ended:
    checkout_id = session["id"]

    async def of_checkout(domain: str, sql: str) -> list[Row]:
        return await _rows(databases[domain], sql, c=checkout_id)

    return _Ended(
        id=checkout_id,
        status=session["status"],
        intents=intents,
        active=await of_checkout(
            "inventory",
            "SELECT variant_id FROM inventory_reservations "
            "WHERE checkout_id = :c AND status = 'active'",
        ),
        orders=await of_checkout(
            "orders",
            "SELECT id::text AS id, status, subtotal_amount, discount_amount, shipping_amount, "
            "tax_amount, total_amount, refunded_amount, currency FROM orders "
            "WHERE checkout_id = :c",
        ),
        payments=await of_checkout(
            "payments",
            "SELECT status, captured_amount, refunded_amount, currency FROM payments "
            "WHERE checkout_id = :c",
        ),
        refunds=await of_checkout(
            "payments",
            "SELECT r.amount, r.currency, r.status, r.resolution FROM payment_refunds r "
            "JOIN payments p ON p.id = r.payment_id WHERE p.checkout_id = :c",
        ),
        requests=await of_checkout(
            "payments",
            "SELECT q.id::text AS id, q.status, EXISTS (SELECT 1 FROM payment_refunds r "
            "WHERE r.provider_refund_id = q.provider_refund_id) AS recorded "
            "FROM payment_refund_requests q JOIN payments p ON p.id = q.payment_id "
            "WHERE p.checkout_id = :c",
        ),
        redemptions=await of_checkout(
            "coupons", "SELECT status FROM coupon_redemptions WHERE checkout_id = :c"
        ),
        carts=await _rows(
            databases["cart"],
            "SELECT status, checkout_id::text AS checkout_id FROM carts WHERE id = :cart",
            cart=session["cart_id"],
        ),
    )


async def _check_checkout(
    databases: Mapping[str, DomainDatabase],
    intents: list[LedgerEntry],
    session: Row,
    report: Report,
) -> None:
    checkout = await _read_ended(databases, intents, session)
    if checkout.active:
        report.fail(f"{checkout.tag}: {len(checkout.active)} reservations still active")
    _check_charged_once(checkout, report)
    _check_after_the_sale(checkout, report)
    if checkout.status == "completed":
        _check_totals(checkout, report)
    if checkout.status == "completed" and _cancelled_after_sale(checkout):
        await _check_cancelled_after_sale(databases, checkout, report)
    elif checkout.status == "completed":
        await _check_completed(databases, checkout, report)
    else:
        _check_given_back(checkout, report)


def _check_charged_once(checkout: _Ended, report: Report) -> None:
    """3. Nobody charged twice, and the payments database agrees with the ledger."""
    tag, orders, intents = checkout.tag, checkout.orders, checkout.intents
    captured, refunded = checkout.captured, checkout.refunded
    if len(orders) > 1:
        report.fail(f"{tag}: {len(orders)} orders")
    if orders:
        total = Money.of(orders[0]["total_amount"], orders[0]["currency"]).to_minor_units()
        if captured > total:
            report.fail(f"{tag}: captured {captured} > order total {total}")
    if sum(1 for i in intents if i.captured) > 1:
        report.fail(f"{tag}: captured on {sum(1 for i in intents if i.captured)} intents")
    if checkout.payments:
        payment = checkout.payments[0]
        mine = (
            Money.of(Decimal(payment["captured_amount"]), payment["currency"]).to_minor_units(),
            Money.of(Decimal(payment["refunded_amount"]), payment["currency"]).to_minor_units(),
        )
        if mine != (captured, refunded):
            report.fail(f"{tag}: payments db says {mine}, ledger says {(captured, refunded)}")
    elif intents:
        report.fail(f"{tag}: the ledger has intents the payments db does not know")


def _check_totals(checkout: _Ended, report: Report) -> None:
    """13. A completed checkout's order total is subtotal - discount + shipping + tax, and the
    provider captured exactly that total (refunds after the sale do not change what was
    captured; a zero total captured nothing)."""
    if len(checkout.orders) != 1:
        return  # invariants 3 and 4 report it
    order = checkout.orders[0]
    currency = order["currency"]

    def money(column: str) -> Money:
        return Money.of(Decimal(order[column]), currency)

    whole = (
        money("subtotal_amount")
        - money("discount_amount")
        + money("shipping_amount")
        + money("tax_amount")
    )
    total = money("total_amount")
    if whole != total:
        report.fail(
            f"{checkout.tag}: order total {total} != subtotal - discount + shipping + tax ({whole})"
        )
    if checkout.captured != total.to_minor_units():
        report.fail(
            f"{checkout.tag}: captured {checkout.captured} minor units, order total {total}"
        )


async def _check_completed(
    databases: Mapping[str, DomainDatabase], checkout: _Ended, report: Report
) -> None:
    """4. Exactly one order, paid or later, one capture, one shipment, coupon used, cart done."""
    tag, orders, payments = checkout.tag, checkout.orders, checkout.payments
    captured, refunded = checkout.captured, checkout.refunded
    # Refunds after the sale (money after the sale, 11) may leave the order (partially) refunded.
    unpaid = ("pending_payment", "cancelled") if refunded else NOT_PAID
    if len(orders) != 1 or orders[0]["status"] in unpaid:
        report.fail(f"{tag}: order {[o['status'] for o in orders]}")
    if orders and Decimal(orders[0]["total_amount"]) == 0:
        # A zero total is completed with no payment at all (payment `not_required`).
        if payments or checkout.intents:
            report.fail(f"{tag}: a zero total took a payment ({captured=}, {refunded=})")
    elif not payments or payments[0]["status"] not in AFTER_CAPTURE or captured == 0:
        report.fail(f"{tag}: payment not captured exactly ({captured=}, {refunded=})")
    if orders:
        shipments = await _rows(
            databases["shipping"],
            "SELECT status FROM shipments WHERE order_id = :o",
            o=orders[0]["id"],
        )
        if len(shipments) != 1:
            report.fail(f"{tag}: {len(shipments)} shipments")
    if any(r["status"] != "confirmed" for r in checkout.redemptions):
        report.fail(f"{tag}: redemption {[r['status'] for r in checkout.redemptions]}")
    if not checkout.carts or checkout.carts[0]["status"] != "converted":
        report.fail(f"{tag}: cart {[c['status'] for c in checkout.carts]}")


def _check_after_the_sale(checkout: _Ended, report: Report) -> None:
    """11. Money after the sale: refunded <= captured, the payments database's refunds add up to
    the ledger's, every refund request sent has its refund recorded (with its status), and the
    order shows what its succeeded refunds gave back."""
    tag, captured, refunded = checkout.tag, checkout.captured, checkout.refunded
    if refunded > captured:
        report.fail(f"{tag}: refunded {refunded} > captured {captured}")
    # The provider counts a refund from its creation until it fails or is canceled.
    counted = [r for r in checkout.refunds if r["status"] not in ("failed", "canceled")]
    units = sum(Money.of(Decimal(r["amount"]), r["currency"]).to_minor_units() for r in counted)
    if checkout.refunds and units != refunded:
        report.fail(f"{tag}: payments db refunds add up to {units}, ledger says {refunded}")
    for request in checkout.requests:
        if request["status"] == "sent" and not request["recorded"]:
            report.fail(f"{tag}: refund request {request['id']} sent, its refund not recorded")
    succeeded = sum(
        (Decimal(r["amount"]) for r in checkout.refunds if r["status"] == "succeeded"), Decimal(0)
    )
    if checkout.status != "completed":
        return  # a compensation's refund reaches its cancelled order through an event, later
    for order in checkout.orders:
        # A cancelled order's refunds reach it through an event, later (as a compensation's).
        if checkout.refunds and order["status"] != "cancelled":
            shown = min(succeeded, Decimal(order["total_amount"]))
            if Decimal(order["refunded_amount"]) != shown:
                report.fail(f"{tag}: order refunded {order['refunded_amount']}, refunds {shown}")


def _cancelled_after_sale(checkout: _Ended) -> bool:
    """Whether the completed checkout's order was cancelled afterwards (before pickup)."""
    return len(checkout.orders) == 1 and checkout.orders[0]["status"] == "cancelled"


async def _check_cancelled_after_sale(
    databases: Mapping[str, DomainDatabase], checkout: _Ended, report: Report
) -> None:
    """4b. An order cancelled after its checkout gave everything back: the payment refunded in
    full, no stock still taken, the redemption released, the shipment cancelled."""
    tag = checkout.tag
    # As for a checkout that gave back (5): a refund that failed at the card network is owed,
    # waiting for an operator, not a violation.
    if checkout.captured > checkout.refunded + checkout.owed:
        report.fail(
            f"{tag}: cancelled order, captured {checkout.captured} but refunded {checkout.refunded}"
        )
    taken = await _rows(
        databases["inventory"],
        "SELECT variant_id FROM inventory_reservations WHERE checkout_id = :c AND status = "
        "'committed'",
        c=checkout.id,
    )
    if taken:
        report.fail(f"{tag}: cancelled order, {len(taken)} reservations still committed")
    if any(r["status"] != "released" for r in checkout.redemptions):
        report.fail(
            f"{tag}: cancelled order, redemption {[r['status'] for r in checkout.redemptions]}"
        )
    shipments = await _rows(
        databases["shipping"],
        "SELECT status FROM shipments WHERE order_id = :o",
        o=checkout.orders[0]["id"],
    )
    if any(s["status"] != "cancelled" for s in shipments):
        report.fail(f"{tag}: cancelled order, shipment {[s['status'] for s in shipments]}")


def _check_given_back(checkout: _Ended, report: Report) -> None:
    """5. Nothing held, nobody paying, order cancelled, cart editable again."""
    tag, intents, carts = checkout.tag, checkout.intents, checkout.carts
    if checkout.captured > checkout.refunded + checkout.owed:
        report.fail(f"{tag}: captured {checkout.captured} but refunded {checkout.refunded}")
    if any(i.status in ("requires_capture", "requires_action", "processing") for i in intents):
        report.fail(f"{tag}: an authorization is still live: {[i.status for i in intents]}")
    if any(r["status"] == "held" for r in checkout.redemptions):
        report.fail(f"{tag}: a coupon redemption is still held")
    if any(o["status"] not in ("cancelled", "refunded") for o in checkout.orders):
        report.fail(f"{tag}: order {[o['status'] for o in checkout.orders]}")
    # The cart may be held by another checkout (that is why this one failed), never by this one.
    if carts and carts[0]["checkout_id"] == checkout.id and carts[0]["status"] != "active":
        report.fail(f"{tag}: cart is still {carts[0]['status']}")
