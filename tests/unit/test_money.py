from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khqrpay.money import Currency, Money, MoneyError


@pytest.mark.parametrize(
    ("text", "currency", "written"),
    [
        ("1.5", Currency.USD, "1.50"),
        ("1.50", Currency.USD, "1.50"),
        ("1", Currency.USD, "1"),
        ("1.00", Currency.USD, "1"),
        ("0.01", Currency.USD, "0.01"),
        ("4000", Currency.KHR, "4000"),
        ("100.00", Currency.KHR, "100"),
    ],
)
def test_amount_is_written_as_the_sdk_writes_it(
    text: str, currency: Currency, written: str
) -> None:
    assert Money.parse(text, currency).khqr_text() == written


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("1.005", Currency.USD),
        ("100.5", Currency.KHR),
        ("-1", Currency.USD),
        ("1e3", Currency.USD),
        ("abc", Currency.KHR),
        ("", Currency.KHR),
        ("0.300000000000004", Currency.USD),
    ],
)
def test_amounts_that_need_rounding_or_are_not_numbers_are_refused(
    text: str, currency: Currency
) -> None:
    with pytest.raises(MoneyError):
        Money.parse(text, currency)


def test_float_is_refused() -> None:
    with pytest.raises(MoneyError, match="never float"):
        Money(1.5, Currency.USD)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(list(Currency)))
def test_minor_units_round_trip_exactly(minor: int, currency: Currency) -> None:
    money = Money.from_minor(minor, currency)
    assert money.minor == minor
    assert Money.parse(money.khqr_text(), currency).same_value(money)


def test_arithmetic_stays_exact_and_in_one_currency() -> None:
    price = Money.parse("0.10", Currency.USD)
    assert (price * 3).amount == Decimal("0.30")
    assert (price + Money.parse("0.20", Currency.USD)).minor == 30
    with pytest.raises(MoneyError):
        price + Money.parse("100", Currency.KHR)


def test_currency_parses_codes_and_names() -> None:
    assert Currency.parse("usd") is Currency.USD
    assert Currency.parse("116") is Currency.KHR
    assert Currency.KHR.numeric == "116"
    with pytest.raises(MoneyError, match="unsupported currency"):
        Currency.parse("978")


def test_display_for_people() -> None:
    assert Money.parse("4000", Currency.KHR).display() == "4,000 ៛"
    assert Money.parse("1234.5", Currency.USD).display() == "$1,234.50"


def test_records_show_every_decimal_of_the_currency() -> None:
    assert str(Money.parse("25", Currency.USD)) == "25.00 USD"
    assert str(Money.parse("0.5", Currency.USD)) == "0.50 USD"
    assert str(Money.parse("12000", Currency.KHR)) == "12000 KHR"


def test_an_amount_too_long_for_exact_arithmetic_is_refused_not_crashed() -> None:
    with pytest.raises(MoneyError):
        Money(Decimal("1234567890123456789012345678.123"), Currency.USD)
