"""What API clients send: request bodies, validated field by field so that a refusal names the
field (422 `invalid_input`, `field`: `lines.0.quantity`, `customer.phone`, ...)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from khqrpay.money import Currency, Money, MoneyError
from khqrpay.orders.model import (
    MAX_QUANTITY,
    MAX_REFERENCE_LENGTH,
    LineRequest,
    OrderError,
    normalize_customer_name,
    normalize_phone,
    validate_reference,
    validate_sku,
)
from khqrpay.services.api_orders import OrderRequest
from khqrpay.services.checkout import Customer

MAX_LINES = 100


def _refused_as_value_error(check: object) -> object:
    """A domain check as a pydantic validator: its refusal becomes the field's error message."""

    def validate(value: str) -> str:
        try:
            return check(value)  # type: ignore[operator, no-any-return]
        except (OrderError, MoneyError) as exc:
            raise ValueError(str(exc)) from None

    return validate


Sku = Annotated[str, Field(max_length=64), AfterValidator(_refused_as_value_error(validate_sku))]
Reference = Annotated[
    str,
    Field(max_length=MAX_REFERENCE_LENGTH, examples=["INV-0042"]),
    AfterValidator(_refused_as_value_error(validate_reference)),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineIn(Body):
    sku: Sku = Field(examples=["TEA"])
    quantity: int = Field(ge=1, le=MAX_QUANTITY, strict=True, examples=[2])


def _name(name: str | None) -> str | None:
    return normalize_customer_name(name)


def _phone(phone: str | None) -> str | None:
    return normalize_phone(phone) if phone and phone.strip() else None


class CustomerIn(Body):
    name: Annotated[
        str | None,
        Field(max_length=200, examples=["Sokha"]),
        AfterValidator(_refused_as_value_error(_name)),
    ] = None
    phone: Annotated[
        str | None,
        Field(max_length=40, examples=["012 345 678"], description="A Cambodian number."),
        AfterValidator(_refused_as_value_error(_phone)),
    ] = None


class OrderIn(Body):
    """An order from `lines` of the shop's products, or an `amount` with its `currency` and your
    `reference` (your own stock); `customer` is optional either way."""

    lines: list[LineIn] | None = Field(default=None, min_length=1, max_length=MAX_LINES)
    # Before `amount`: the amount's decimals are checked against it.
    currency: Literal["KHR", "USD"] | None = None
    amount: str | None = Field(
        default=None,
        pattern=r"^\d{1,13}(\.\d{1,2})?$",
        description='A string with the currency\'s decimals: "1.50" (USD), "4000" (KHR).',
        examples=["1.50"],
    )
    reference: Reference | None = None
    customer: CustomerIn | None = None

    @model_validator(mode="after")
    def _lines_or_amount(self) -> OrderIn:
        if self.lines is None and self.amount is None:
            raise ValueError("give lines, or an amount with its currency and reference")
        if self.lines is not None and (self.amount, self.currency, self.reference) != (
            None,
            None,
            None,
        ):
            raise ValueError("an order has lines or an amount, not both")
        if self.amount is not None and (self.currency is None or self.reference is None):
            raise ValueError("an amount needs its currency and a reference")
        return self

    @field_validator("amount")
    @classmethod
    def _exact(cls, amount: str | None, info: ValidationInfo) -> str | None:
        currency = info.data.get("currency")
        if amount is not None and currency is not None:
            try:
                Money.parse(amount, Currency(currency))
            except MoneyError as exc:
                raise ValueError(str(exc)) from None
        return amount

    def request(self) -> OrderRequest:
        customer = Customer()
        if self.customer is not None:
            customer = Customer(self.customer.name, self.customer.phone)
        if self.amount is not None and self.currency is not None:
            return OrderRequest(
                amount=Money.parse(self.amount, Currency(self.currency)),
                reference=self.reference,
                customer=customer,
            )
        return OrderRequest(
            lines=tuple(LineRequest(line.sku, line.quantity) for line in self.lines or ()),
            customer=customer,
        )
