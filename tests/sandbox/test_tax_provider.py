"""The platform's tax (domains/payments/stripe_tax.py and the payments.*_tax activities) against
the sandbox's Stripe Tax: money per line and for the shipping, a commit made once however often
it is asked for, reversals in part and in full, and a tax service that is down failing the
checkout closed, or opening it with zero tax when TAX_ON_FAILURE=open."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.payments.contract import (
    CalculateTaxInput,
    ReverseLineValue,
    ReverseTaxInput,
    TaxAddressValue,
    TaxLineValue,
)
from activities.payments.tax import FAIL_OPEN_METRIC, TaxActivities
from activities.shared import CheckoutRef, MoneyValue
from domains.payments.errors import ProviderUnavailable, TaxReversalTooLarge, TaxUnavailable
from domains.payments.models import TaxRecord, TaxReversal
from domains.payments.provider import ProviderMisuse
from domains.payments.stripe_tax import TAX_RESTRICTED_KEY_PERMISSIONS, StripeTaxProvider
from domains.payments.tax import (
    TaxableLine,
    TaxAddress,
    TaxStatus,
)
from kit.db import DomainDatabase
from kit.money import Money
from kit.settings import TaxSettings
from tests.sandbox.conftest import API_KEY, Psp, SandboxFactory

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")

CA = TaxAddress("US", "CA", "94080", "South San Francisco", "354 Oyster Point Blvd")
CODE = "txcd_99999999"


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


TAX_KEY = "rk_test_tax_only"
PAYMENTS_ONLY_KEY = "rk_test_payments_only"


@pytest.fixture(scope="module")
def tax_psp(start_sandbox: SandboxFactory) -> Psp:
    """A sandbox of its own (the fault switch), whose hang outlasts the client's timeout, with
    a restricted key holding the documented tax permission and one holding none of it."""
    keys = {TAX_KEY: list(TAX_RESTRICTED_KEY_PERMISSIONS), PAYMENTS_ONLY_KEY: ["refund_write"]}
    return start_sandbox(
        webhook_url="", SANDBOX_TAX_HANG_S="3", SANDBOX_RESTRICTED_KEYS=json.dumps(keys)
    )


@pytest.fixture
async def stripe_tax(tax_psp: Psp) -> AsyncIterator[StripeTaxProvider]:
    provider = StripeTaxProvider(
        api_key=API_KEY, api_base=tax_psp.url, timeout_s=1.0, tax_code=CODE
    )
    yield provider
    await provider.aclose()


@asynccontextmanager
async def fault(psp: Psp, mode: str) -> AsyncIterator[None]:
    """The sandbox's tax endpoints misbehave (`error`, `hang`) inside the block."""
    async with httpx.AsyncClient(base_url=psp.url, trust_env=False) as http:
        (await http.post("/v1/test_helpers/tax/fault", json={"mode": mode})).raise_for_status()
        try:
            yield
        finally:
            await http.post("/v1/test_helpers/tax/fault", json={"mode": "none"})


def _input(checkout_id: uuid.UUID) -> CalculateTaxInput:
    return CalculateTaxInput(
        checkout_id=checkout_id,
        currency="USD",
        lines=[
            TaxLineValue(reference="SKU-A", amount=MoneyValue.of(usd("19.99")), quantity=1),
            TaxLineValue(reference="SKU-B", amount=MoneyValue.of(usd("10.00")), quantity=2),
        ],
        shipping=MoneyValue.of(usd("7.00")),
        address=TaxAddressValue(country="US", state="CA", postal_code="94080"),
    )


def _env(attempt: int = 1, buffer: MetricBuffer | None = None) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    if buffer is not None:
        env.metric_meter = Runtime(telemetry=TelemetryConfig(metrics=buffer)).metric_meter
    return env


def _sandbox_rows(psp: Psp, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(psp.db_path) as conn:
        return list(conn.execute(sql, args).fetchall())


# --- the provider's mapping ---------------------------------------------------------------


async def test_calculate_reports_money_per_line_and_for_shipping(
    stripe_tax: StripeTaxProvider,
) -> None:
    lines = [TaxableLine("SKU-A", usd("19.99"), 1), TaxableLine("SKU-B", usd("10.00"), 2)]
    result = await stripe_tax.calculate("USD", lines, usd("7.00"), CA, key=uuid.uuid4().hex)
    assert result.id is not None
    assert result.id.startswith("taxcalc_")
    assert [(line.reference, line.tax) for line in result.lines] == [
        ("SKU-A", usd("1.45")),
        ("SKU-B", usd("0.73")),  # 72.5 cents, half-up
    ]
    assert (result.shipping, result.shipping_tax) == (usd("7.00"), usd("0.51"))
    assert result.total_tax == usd("2.69")


async def test_many_lines_are_read_past_the_first_page(stripe_tax: StripeTaxProvider) -> None:
    lines = [TaxableLine(f"L{i}", usd("1.00"), 1) for i in range(35)]
    result = await stripe_tax.calculate("USD", lines, usd("0"), CA, key=uuid.uuid4().hex)
    assert [line.reference for line in result.lines] == [f"L{i}" for i in range(35)]
    assert result.total_tax == usd("0.07") * 35


async def test_commit_and_reverse_in_part_then_the_rest(stripe_tax: StripeTaxProvider) -> None:
    lines = [TaxableLine("SKU-A", usd("19.99"), 1)]
    calc = await stripe_tax.calculate("USD", lines, usd("7.00"), CA, key=uuid.uuid4().hex)
    assert calc.id is not None
    reference = str(uuid.uuid4())
    committed = await stripe_tax.commit(calc.id, reference=reference, key=f"{reference}:c")
    assert committed.id is not None
    assert committed.id.startswith("tax_")
    [line] = committed.lines
    assert (line.tax, line.item_id is not None) == (usd("1.45"), True)
    full = await stripe_tax.reverse(
        committed.id, reference=f"{reference}:r", key=f"{reference}:r", lines=None
    )
    assert [(li.reference, li.amount, li.tax) for li in full.lines] == [
        ("SKU-A", usd("19.99"), usd("1.45"))
    ]
    assert (full.shipping, full.shipping_tax) == (usd("7.00"), usd("0.51"))


async def test_the_documented_permission_is_all_a_restricted_key_needs(tax_psp: Psp) -> None:
    lines = [TaxableLine("SKU-A", usd("1.00"), 1)]
    for key, allowed in ((TAX_KEY, True), (PAYMENTS_ONLY_KEY, False)):
        provider = StripeTaxProvider(api_key=key, api_base=tax_psp.url, timeout_s=5, tax_code=CODE)
        try:
            if not allowed:
                with pytest.raises(ProviderMisuse, match="rak_tax_calculations_and_transactions"):
                    await provider.calculate("USD", lines, usd("0"), CA, key=uuid.uuid4().hex)
                continue
            calc = await provider.calculate("USD", lines, usd("0"), CA, key=uuid.uuid4().hex)
            assert calc.id is not None
            reference = str(uuid.uuid4())
            done = await provider.commit(calc.id, reference=reference, key=reference)
            assert done.id is not None
            await provider.reverse(
                done.id, reference=f"{reference}:r", key=f"{reference}:r", lines=None
            )
        finally:
            await provider.aclose()


async def test_a_service_that_errors_or_hangs_is_unavailable(
    stripe_tax: StripeTaxProvider, tax_psp: Psp
) -> None:
    lines = [TaxableLine("SKU-A", usd("1.00"), 1)]
    for mode in ("error", "hang"):
        async with fault(tax_psp, mode):
            with pytest.raises(ProviderUnavailable):
                await stripe_tax.calculate("USD", lines, usd("0"), CA, key=uuid.uuid4().hex)


# --- the activities -------------------------------------------------------------------------


@pytest.fixture
def activities(
    databases: dict[str, DomainDatabase], stripe_tax: StripeTaxProvider
) -> TaxActivities:
    return TaxActivities(databases["payments"], stripe_tax, TaxSettings(provider="stripe"))


async def test_commit_twice_records_one_transaction(
    activities: TaxActivities, databases: dict[str, DomainDatabase], tax_psp: Psp
) -> None:
    checkout_id = uuid.uuid4()
    calculated = await _env().run(activities.calculate_tax, _input(checkout_id))
    assert (calculated.status, calculated.total_tax.money()) == (TaxStatus.CALCULATED, usd("2.69"))
    assert [line.tax.money() for line in calculated.lines] == [usd("1.45"), usd("0.73")]

    first = await _env().run(activities.commit_tax, CheckoutRef(checkout_id=checkout_id))
    again = await _env().run(activities.commit_tax, CheckoutRef(checkout_id=checkout_id))
    assert first == again
    assert first.status == TaxStatus.COMMITTED
    assert first.transaction_id is not None
    assert _sandbox_rows(
        tax_psp, "SELECT id FROM tax_transactions WHERE reference = ?", str(checkout_id)
    ) == [(first.transaction_id,)]
    async with databases["payments"].begin() as session:
        row = await session.scalar(select(TaxRecord).where(TaxRecord.checkout_id == checkout_id))
        assert row is not None
        assert row.tax_amount == Decimal("2.69")
        assert row.shipping_tax == Decimal("0.51")
        assert all(line["item_id"] for line in row.lines.values())
    # A calculation asked for again after the commit returns what was recorded.
    assert await _env().run(activities.calculate_tax, _input(checkout_id)) == first


async def test_reversals_in_part_then_in_full_each_once(
    activities: TaxActivities, databases: dict[str, DomainDatabase]
) -> None:
    checkout_id = uuid.uuid4()
    await _env().run(activities.calculate_tax, _input(checkout_id))
    await _env().run(activities.commit_tax, CheckoutRef(checkout_id=checkout_id))
    ret = ReverseTaxInput(
        checkout_id=checkout_id,
        reversal_key="return-1",
        lines=[ReverseLineValue(reference="SKU-B", amount=MoneyValue.of(usd("5.00")))],
    )
    part = await _env().run(activities.reverse_tax, ret)
    assert part == await _env().run(activities.reverse_tax, ret)  # once per key
    assert part.tax_reversed is not None
    assert part.tax_reversed.money() == usd("0.37")  # half of 0.73, half-up
    with pytest.raises(TaxReversalTooLarge) as too_much:
        await _env().run(
            activities.reverse_tax,
            ReverseTaxInput(
                checkout_id=checkout_id,
                reversal_key="return-2",
                lines=[ReverseLineValue(reference="SKU-B", amount=MoneyValue.of(usd("5.01")))],
            ),
        )
    assert too_much.value.details["reference"] == "SKU-B"
    rest = await _env().run(
        activities.reverse_tax, ReverseTaxInput(checkout_id=checkout_id, reversal_key="comp")
    )
    # What remained: SKU-A whole, SKU-B's other half, the shipping.
    assert rest.tax_reversed is not None
    assert rest.tax_reversed.money() == usd("1.45") + usd("0.36") + usd("0.51")
    async with databases["payments"].begin() as session:
        row = await session.scalar(select(TaxRecord).where(TaxRecord.checkout_id == checkout_id))
        assert row is not None
        assert row.status == TaxStatus.REVERSED
        assert row.reversed_tax == row.tax_amount
        count = await session.scalar(
            select(func.count())
            .select_from(TaxReversal)
            .where(TaxReversal.tax_transaction_id == row.id)
        )
    assert count == 2
    nothing = await _env().run(
        activities.reverse_tax, ReverseTaxInput(checkout_id=checkout_id, reversal_key="again")
    )
    assert nothing.action == "nothing"


async def test_a_down_service_is_retried_then_fails_the_checkout_closed(
    activities: TaxActivities, databases: dict[str, DomainDatabase], tax_psp: Psp
) -> None:
    checkout_id = uuid.uuid4()
    async with fault(tax_psp, "error"):
        with pytest.raises(ProviderUnavailable):  # a blip: Temporal retries this attempt
            await _env(attempt=1).run(activities.calculate_tax, _input(checkout_id))
        with pytest.raises(TaxUnavailable) as closed:
            await _env(attempt=3).run(activities.calculate_tax, _input(checkout_id))
    assert closed.value.code == "tax_unavailable"
    async with databases["payments"].begin() as session:
        assert (
            await session.scalar(select(TaxRecord).where(TaxRecord.checkout_id == checkout_id))
            is None
        )


async def test_open_on_failure_goes_on_with_zero_tax_logged_and_counted(
    databases: dict[str, DomainDatabase], stripe_tax: StripeTaxProvider, tax_psp: Psp
) -> None:
    opened = TaxActivities(
        databases["payments"], stripe_tax, TaxSettings(provider="stripe", on_failure="open")
    )
    checkout_id, buffer = uuid.uuid4(), MetricBuffer(100)
    async with fault(tax_psp, "error"):
        result = await _env(attempt=3, buffer=buffer).run(opened.calculate_tax, _input(checkout_id))
    assert (result.status, result.untaxed_reason) == (TaxStatus.UNTAXED, "tax_unavailable")
    assert result.total_tax.money() == usd("0")
    assert result.calculation_id is None
    counted = [u.value for u in buffer.retrieve_updates() if u.metric.name == FAIL_OPEN_METRIC]
    assert counted == [1]
    committed = await _env().run(opened.commit_tax, CheckoutRef(checkout_id=checkout_id))
    assert (committed.status, committed.transaction_id) == (TaxStatus.UNTAXED, None)


async def test_no_tax_provider_keeps_todays_totals(databases: dict[str, DomainDatabase]) -> None:
    none = TaxActivities(databases["payments"], None, TaxSettings())
    checkout_id = uuid.uuid4()
    result = await _env().run(none.calculate_tax, _input(checkout_id))
    assert (result.status, result.untaxed_reason) == (TaxStatus.UNTAXED, "tax_provider_none")
    assert [line.tax.money() for line in result.lines] == [usd("0"), usd("0")]
    reversed_ = await _env().run(
        none.reverse_tax, ReverseTaxInput(checkout_id=checkout_id, reversal_key="compensation")
    )
    assert reversed_.action == "nothing"
