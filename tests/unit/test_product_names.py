"""A product's Khmer name: optional, tidied like the English one, and really Khmer; and which name
a reader of each language sees."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from khqrpay.orders.model import OrderError
from khqrpay.services.products import MAX_NAME_LENGTH, clean_khmer_name
from khqrpay.web.i18n import local_name, reset_language, set_language


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        (None, None),
        ("", None),
        ("  \u3000 ", None),  # blank: no Khmer name
        (" កាហ្វេ  ទឹកកក ", "កាហ្វេ ទឹកកក"),
        ("ម្រេចកំពត 100 g", "ម្រេចកំពត 100 g"),  # Latin digits and units beside Khmer
        ("\u17e1\u17e0\u17e0", "\u17e1\u17e0\u17e0"),  # Khmer digits are Khmer script
        ("ក" * MAX_NAME_LENGTH, "ក" * MAX_NAME_LENGTH),
    ],
)
def test_a_khmer_name_is_tidied_or_none(typed: str | None, kept: str | None) -> None:
    assert clean_khmer_name(typed) == kept


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("Iced coffee", "must be written in Khmer script"),
        ("アイスコーヒー", "must be written in Khmer script"),
        ("\u19e0", "must be written in Khmer script"),  # Khmer Symbols block: not U+1780-U+17FF
        ("ក" * (MAX_NAME_LENGTH + 1), f"a Khmer name is 1 to {MAX_NAME_LENGTH} characters"),
        ("កាហ្វេ\x00", "control characters"),
        ("កាហ្វេ\ud800", "not valid UTF-8"),
    ],
)
def test_a_khmer_name_that_is_not_is_refused_clearly(typed: str, error: str) -> None:
    with pytest.raises(OrderError, match=error):
        clean_khmer_name(typed)


@dataclass(frozen=True)
class Item:
    name: str
    name_km: str | None


@pytest.mark.parametrize(
    ("language", "item", "shown"),
    [
        ("km", Item("Iced coffee", "កាហ្វេទឹកកក"), "កាហ្វេទឹកកក"),
        ("km", Item("Iced coffee", None), "Iced coffee"),
        ("en", Item("Iced coffee", "កាហ្វេទឹកកក"), "Iced coffee"),
    ],
)
def test_a_reader_sees_the_name_in_their_language_else_the_english(
    language: str, item: Item, shown: str
) -> None:
    token = set_language(language)
    try:
        assert local_name(item) == shown
    finally:
        reset_language(token)
