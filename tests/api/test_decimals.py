"""Every decimal in every answer is a plain decimal string: never an exponent ("1E+2"), money
at its currency's minor unit. Walks every response model of every route, so a new decimal field
declared without the responses' serializers fails here."""

from __future__ import annotations

import re
import types
import typing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

from api import schemas
from api.app import create_app
from api.routers.catalog import _coupon_out
from api.schemas import PLAIN_DECIMAL, CheckoutOut, OpsCheckout, money, plain, rounded_seconds
from domains.coupons.models import Coupon
from kit.money import minor_unit_exponent
from kit.settings import Settings
from tests.api.conftest import Caller
from workflows.checkout.models import CheckoutStatusBody

# Field names that carry a decimal (money or a percentage) in a response.
DECIMAL_NAMES = re.compile(r"(amount|price|total|subtotal|discount_value)$")
CURRENCIES = ["USD", "EUR", "JPY", "KWD", "GBP"]
ODD = ["1E+2", "0E-10", "1.000", "-0", "0.0000", "1E-3", "123456789012345.1234", "5E+14"]


def response_models() -> set[type[BaseModel]]:
    """The model of every successful answer's body in the OpenAPI document, and every model
    nested in one (errors are problem+json, with no decimals)."""
    document = create_app(Settings()).openapi()
    answers = [
        content["schema"]
        for operation in (op for path in document["paths"].values() for op in path.values())
        for status, response in operation["responses"].items()
        if status.startswith("2")
        for content in response.get("content", {}).values()
    ]
    names = {ref.rsplit("/", 1)[1] for ref in re.findall(r"'\$ref': '([^']+)'", str(answers))}
    assert names, "no response body refers to a model"
    found: set[type[BaseModel]] = set()
    for name in names:
        model = getattr(schemas, name, None)
        assert isinstance(model, type), f"{name} is not a model of api/schemas.py"
        found |= set(nested(model))
    return found


def models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from models_in(argument)


def nested(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> Iterator[type]:
    seen = seen if seen is not None else set()
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for inner in models_in(field.annotation):
            yield from nested(inner, seen)


def serializer(field: FieldInfo) -> str | None:
    """Which responses' serializer shows the field: "money", "plain" or None."""
    for item in field.metadata:
        function = getattr(getattr(item, "func", None), "__name__", "")
        if function == "_in_currency":
            return "money"
        if function == "_shown":
            return "plain"
    return None


def scalar_types(annotation: Any) -> set[Any]:
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, dict):
        return {t for a in arguments for t in scalar_types(a)}
    return {annotation}


DECIMAL_FIELDS = sorted(
    (model.__name__, name, serializer(field), field)
    for model in response_models()
    for name, field in model.model_fields.items()
    if serializer(field)
)


def test_every_response_model_is_found() -> None:
    names = {model.__name__ for model in response_models()}
    assert {"CartOut", "CheckoutOut", "OrderOut", "CouponOut", "ProductOut", "StuckList"} <= names


def test_no_response_field_is_a_raw_decimal_or_float() -> None:
    """Decimals are strings (above); a float is a duration shown to the millisecond."""
    for model in response_models():
        for name, field in model.model_fields.items():
            where = f"{model.__name__}.{name}"
            assert Decimal not in scalar_types(field.annotation), where
            if float in scalar_types(field.annotation):
                shown = [getattr(m, "func", None) for m in field.metadata]
                assert rounded_seconds in shown, f"{where} is a float not shown as `Seconds`"


@given(st.floats(min_value=0, max_value=10**9, allow_nan=False))
@example(1e-7)
@example(0.00012)
def test_durations_are_json_numbers_without_an_exponent(seconds: float) -> None:
    row = {
        "checkout_id": uuid.uuid4(),
        "workflow_id": "checkout-x",
        "run_status": "RUNNING",
        "status": None,
        "step": None,
        "customer_id": None,
        "order_number": None,
        "started_at": None,
        "age_s": seconds,
        "ui_url": "http://ui",
    }
    text = OpsCheckout.model_validate(row).model_dump_json()
    shown = re.search(r'"age_s":([^,}]+)', text)
    assert shown is not None
    assert re.fullmatch(r"[0-9]+\.[0-9]{1,3}", shown.group(1)), shown.group(1)
    assert abs(float(shown.group(1)) - seconds) <= 0.0005


def test_every_decimal_field_uses_the_responses_serializers() -> None:
    for model in response_models():
        for name, field in model.model_fields.items():
            if DECIMAL_NAMES.search(name) and str in scalar_types(field.annotation):
                assert serializer(field), f"{model.__name__}.{name} is shown without `money`"
    assert ("CouponOut", "discount_value", "plain") in {f[:3] for f in DECIMAL_FIELDS}
    assert len(DECIMAL_FIELDS) >= 10


def adapter(field: FieldInfo) -> TypeAdapter[Any]:
    shown: Any = Annotated[(field.annotation, *field.metadata)]
    return TypeAdapter(shown)


decimals = st.one_of(
    st.sampled_from(ODD).map(Decimal),
    st.decimals(min_value=0, max_value=Decimal("1E15"), allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**15).map(lambda n: Decimal(n).scaleb(3).normalize()),
)


@given(value=decimals, currency=st.sampled_from(CURRENCIES))
@example(value=Decimal("1E+2"), currency="JPY")
@example(value=Decimal("0E-8"), currency="USD")
def test_every_decimal_field_shows_odd_decimals_plainly(value: Decimal, currency: str) -> None:
    for model, name, kind, field in DECIMAL_FIELDS:
        where = f"{model}.{name} <- {value!r}"
        types_ = adapter(field)
        for given_as in (value, str(value)):
            shown = types_.validate_python(given_as)
            assert PLAIN_DECIMAL.fullmatch(shown), where
            assert Decimal(shown) == value, where
        if kind == "money":
            shown = types_.validate_python(value, context={"currency": currency})
            assert PLAIN_DECIMAL.fullmatch(shown), where
            digits = len(shown.partition(".")[2])
            assert digits == minor_unit_exponent(currency), f"{where} in {currency}: {shown}"


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("1E+2", "JPY", "100"),
        ("1E+2", "USD", "100.00"),
        ("0E-8", "EUR", "0.00"),
        ("1.000", "KWD", "1.000"),
        ("-0.001", "USD", "0.00"),
        ("19.995", "USD", "20.00"),
    ],
)
def test_money_is_plain_at_the_minor_unit(amount: str, currency: str, shown: str) -> None:
    assert money(Decimal(amount), currency) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [("1E+2", "100"), ("10.0000", "10"), ("12.50", "12.5"), ("0E-10", "0"), ("-0", "0")],
)
def test_other_decimals_are_plain_without_trailing_zeros(value: str, shown: str) -> None:
    assert plain(Decimal(value)) == shown


def test_plain_refuses_what_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="finite"):
        plain(Decimal("Infinity"))


@pytest.mark.parametrize(("stored", "shown"), [("10.0000", "10"), ("100.0000", "100")])
def test_a_round_percentage_coupon_answers_plainly(stored: str, shown: str) -> None:
    now = datetime.now(UTC)
    coupon = Coupon(
        id=uuid.uuid4(),
        code="ROUND",
        discount_type="percentage",
        discount_value=Decimal(stored),
        valid_from=now,
        valid_to=now + timedelta(days=1),
        currency="USD",
        min_subtotal=Decimal("1E+2"),
    )
    body = _coupon_out(coupon, redeemed=0).model_dump(mode="json")
    assert body["discount_value"] == shown
    assert body["min_subtotal"] == "100.00"


def test_a_checkout_total_answers_at_its_currency() -> None:
    body = CheckoutStatusBody.model_validate(
        {
            "checkout_id": uuid.uuid4(),
            "status": "completed",
            "step": "complete",
            "order": {
                "id": uuid.uuid4(),
                "order_number": "ORD-1",
                "total_amount": Decimal("1E+2"),
                "currency": "JPY",
            },
        }
    )
    assert CheckoutOut.of(body).model_dump(mode="json")["order"]["total_amount"] == "100"


@pytest.mark.parametrize(("given_as", "shown"), [("10", "10"), ("1E+2", "100"), ("12.50", "12.5")])
async def test_a_percentage_coupon_answers_plainly_over_http(
    http: httpx.AsyncClient, operator: Caller, given_as: str, shown: str
) -> None:
    body = {
        "code": f"ROUND{uuid.uuid4().hex[:8]}",
        "discount_type": "percentage",
        "discount_value": given_as,
        "currency": "JPY",
        "min_subtotal": "1E+3",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
    }
    created = await http.post("/v1/coupons", json=body, headers=operator.headers)
    assert created.status_code == 201, created.text
    read = await http.get(f"/v1/coupons/{body['code']}", headers=operator.headers)
    for answer in (created.json(), read.json()):
        assert answer["discount_value"] == shown
        assert answer["min_subtotal"] == "1000"
