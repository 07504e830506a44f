"""The checkout's whole price: a chosen shipping rate charged, tax calculated, recorded, reversed.

Taken behind patch `whole-price`, and only by checkouts whose input names a shipping rate or asks
for tax: the others run the commands they always ran (no marker in their history either). The
price itself (`price.Price`) is computed in `price.py`; this module runs its steps. Workflow code:
deterministic, no I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.cart import contract as cart
    from activities.orders import contract as orders
    from activities.payments import contract as payments
    from activities.shared import CheckoutRef, MoneyValue, OrderRef
    from kit.money import Money
    from workflows.checkout.contract import CheckoutStatus, FailureCode
    from workflows.checkout.models import CheckoutInput
    from workflows.checkout.payment import StepRunner
    from workflows.checkout.price import Price, tax_request
    from workflows.checkout.steps import CheckoutStopped
    from workflows.saga import Saga

WHOLE_PRICE = "whole-price"


class PricingSteps(StepRunner):
    """Shipping and tax in the order's price, and the tax transaction's record and undo."""

    _saga: Saga
    # The whole price (a chosen shipping rate, tax): decided once, at the start of the run.
    _whole_price: bool
    _price: Price | None

    def _decide_whole_price(self, input: CheckoutInput) -> None:
        """Checkouts with neither a chosen rate nor tax run the commands they always ran (no
        marker in their history either); the others charge shipping and tax."""
        priced = input.shipping is not None or input.tax
        self._whole_price = priced and workflow.patched(WHOLE_PRICE)

    async def _whole(
        self, input: CheckoutInput, snapshot: cart.CartSnapshot, discount: Money
    ) -> Price:
        """The order's price: the chosen rate's shipping and, when taxed, the tax service's
        calculation (before anything is authorized: a failure holds no money)."""
        subtotal, currency = snapshot.subtotal(), snapshot.currency
        shipping = Money.zero(currency)
        if self._whole_price and input.shipping is not None:
            if input.shipping.currency != currency:
                raise CheckoutStopped(
                    CheckoutStatus.FAILED,
                    FailureCode.SHIPPING_RATE_EXPIRED,
                    f"the shipping rate is in {input.shipping.currency}, the cart in {currency}",
                )
            shipping = input.shipping.money()
        price = Price(subtotal=subtotal, discount=discount, shipping=shipping)
        if not (self._whole_price and input.tax):
            return price
        request = tax_request(input.checkout_id, snapshot, price, input.shipping_address)
        tax = await self._step_call(payments.CALCULATE_TAX, request)
        return Price(subtotal=subtotal, discount=discount, shipping=shipping, tax=tax)

    def _order_input(
        self, input: CheckoutInput, snapshot: cart.CartSnapshot, price: Price
    ) -> orders.CreateOrderInput:
        """The order at its price: shipping and tax only for a checkout with the whole price."""
        whole = self._whole_price
        return orders.CreateOrderInput(
            checkout_id=input.checkout_id,
            user_id=input.user_id,
            currency=snapshot.currency,
            lines=snapshot.lines,
            subtotal=MoneyValue.of(price.subtotal),
            discount=MoneyValue.of(price.discount),
            total=MoneyValue.of(price.total),
            coupon_code=input.coupon_code.strip().upper() if input.coupon_code else None,
            shipping_address=input.shipping_address,
            billing_address=input.billing_address,
            shipping=MoneyValue.of(price.shipping) if whole else None,
            tax=MoneyValue.of(price.tax_total) if whole else None,
            line_taxes=price.line_taxes(snapshot.lines),
        )

    def _commit_tax(self, order_ref: OrderRef) -> list[Awaitable[payments.TaxResultValue]]:
        """Record the calculated tax as a transaction, once the money is decided; its undo
        (registered first) reverses all of it. Nothing for an untaxed checkout."""
        tax = self._price.tax if self._price else None
        if tax is None or tax.calculation_id is None:
            return []
        checkout = order_ref.checkout_id
        self._saga.add(
            "reverse_tax",
            lambda: self._call(
                payments.REVERSE_TAX,
                payments.ReverseTaxInput(checkout_id=checkout, reversal_key="compensation"),
            ),
        )
        return [self._step_call(payments.COMMIT_TAX, CheckoutRef(checkout_id=checkout))]
