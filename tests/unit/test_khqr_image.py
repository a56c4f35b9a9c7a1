"""Drawing: SVG and PNG of the bare code and of the payment card, bytes out."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree
from decimal import Decimal
from pathlib import Path

import pytest
import segno
from PIL import Image, ImageFont, features

from khqrpay.khqr import KHQRDecodeError, KHQRInput, decode, encode
from khqrpay.khqr import image as khqr_image
from khqrpay.khqr.image import KHQR_RED, card_png, card_svg, qr_png, qr_svg
from khqrpay.money import Currency

NOW_MS = 1_795_651_200_000
SVG = "{http://www.w3.org/2000/svg}"

DYNAMIC_USD = encode(
    KHQRInput(
        "coffee_klaing@devb",
        "Coffee Klaing",
        merchant_id="CK0001",
        acquiring_bank="DEVBKHPPXXX",
        currency=Currency.USD,
        amount=Decimal("1234.5"),
        expires_ms=NOW_MS + 600_000,
    ),
    now_ms=NOW_MS,
).qr
STATIC_KHMER = encode(
    KHQRInput("jonhsmith@nbcq", "ហាងកាហ្វេ ភ្នំពេញ", merchant_city="ភ្នំពេញ"), now_ms=NOW_MS
).qr


def symbol(qr: str) -> segno.QRCode:
    return segno.make_qr(qr, error="m", mode="byte", encoding="utf-8", eci=False)


def dark_modules_in(picture: Image.Image, top: int, symbol_size: int) -> list[list[bool]]:
    """Read the code back from a picture: find its dark square, sample each module's centre."""
    on_white = Image.alpha_composite(Image.new("RGBA", picture.size, "white"), picture)
    gray = on_white.convert("L").crop((0, top, picture.width, picture.height))
    dark_box = gray.point(lambda value: 255 if value < 128 else 0).getbbox()
    assert dark_box is not None
    left, upper, right, _ = dark_box
    module = (right - left) / symbol_size
    return [
        [
            gray.getpixel((int(left + (x + 0.5) * module), int(upper + (y + 0.5) * module))) < 128
            for x in range(symbol_size)
        ]
        for y in range(symbol_size)
    ]


def test_the_bare_code_is_an_svg_document() -> None:
    root = ElementTree.fromstring(qr_svg(DYNAMIC_USD, scale=4))
    assert root.tag == f"{SVG}svg"
    modules = len(list(symbol(DYNAMIC_USD).matrix_iter(scale=1, border=4)))
    assert root.get("width") == str(modules * 4)


def test_the_bare_code_png_has_the_quiet_zone_and_scale() -> None:
    picture = Image.open(io.BytesIO(qr_png(DYNAMIC_USD, scale=3)))
    modules = len(list(symbol(DYNAMIC_USD).matrix_iter(scale=1, border=4)))
    assert picture.size == (modules * 3, modules * 3)


def test_only_a_khqr_is_drawn() -> None:
    for draw in (qr_svg, qr_png, card_svg, card_png):
        with pytest.raises(KHQRDecodeError):
            draw("hello world")


def test_the_card_png_carries_the_exact_code_under_a_red_header() -> None:
    picture = Image.open(io.BytesIO(card_png(DYNAMIC_USD, scale=2)))
    assert picture.size == (640, 928)
    assert picture.mode == "RGBA"
    red = tuple(int(KHQR_RED[i : i + 2], 16) for i in (1, 3, 5))
    assert picture.getpixel((60, 20))[:3] == red
    assert picture.getpixel((320, 700))[:3] in ((0, 0, 0), (255, 255, 255))
    expected = [list(map(bool, row)) for row in symbol(DYNAMIC_USD).matrix_iter(border=0)]
    assert dark_modules_in(picture, picture.height * 2 // 5, len(expected)) == expected


def test_the_card_png_scales_for_print() -> None:
    picture = Image.open(io.BytesIO(card_png(DYNAMIC_USD, scale=4)))
    assert picture.size == (1280, 1856)
    with pytest.raises(ValueError, match="scale"):
        card_png(DYNAMIC_USD, scale=0)


def test_the_card_svg_names_the_merchant_amount_and_currency() -> None:
    root = ElementTree.fromstring(card_svg(DYNAMIC_USD))
    texts = ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]
    assert "KHQR" in texts
    assert "Coffee Klaing" in texts
    assert "1,234.50USD" in texts
    assert root.find(f"{SVG}title") is not None
    dashed = [node for node in root.iter(f"{SVG}line") if node.get("stroke-dasharray")]
    assert len(dashed) == 1


def test_the_card_svg_shows_khmer_and_escapes_markup() -> None:
    khmer = ElementTree.fromstring(card_svg(STATIC_KHMER))
    assert "ហាងកាហ្វេ ភ្នំពេញ" in ["".join(t.itertext()) for t in khmer.iter(f"{SVG}text")]
    tricky = encode(KHQRInput("a@b", "<b>&Co</b>"), now_ms=NOW_MS).qr
    root = ElementTree.fromstring(card_svg(tricky))  # would not parse if unescaped
    assert "<b>&Co</b>" in ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert not list(root.iter(f"{SVG}b"))


def test_a_static_card_shows_the_currency_without_an_amount() -> None:
    root = ElementTree.fromstring(card_svg(STATIC_KHMER))
    assert "KHR" in ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_a_khmer_name_is_drawn_with_the_packaged_khmer_font_and_shaped() -> None:
    name, font = khqr_image._drawable_name(decode(STATIC_KHMER), 30)
    assert name == "ហាងកាហ្វេ ភ្នំពេញ"
    assert isinstance(font, ImageFont.FreeTypeFont)
    assert Path(str(font.path)) == khqr_image.KHMER_FONT_FILE
    # Shaped: the subscript consonant (្ព) is placed under its base, so the shaped run is
    # narrower than its characters drawn one by one.
    assert features.check("raqm")
    one_by_one = sum(font.getlength(character) for character in "ភ្នំ")
    assert font.getlength("ភ្នំ") < one_by_one
    picture = Image.open(io.BytesIO(card_png(STATIC_KHMER)))
    assert picture.size == (640, 928)


def test_a_name_in_a_script_without_a_font_falls_back_to_one_that_can_be_drawn() -> None:
    latin_alternative = encode(
        KHQRInput("coffee@devb", "咖啡店", language_preference="en", merchant_name_alt="Coffee"),
        now_ms=NOW_MS,
    ).qr
    assert khqr_image._drawable_name(decode(latin_alternative), 30)[0] == "Coffee"
    no_alternative = encode(KHQRInput("coffee@devb", "咖啡店"), now_ms=NOW_MS).qr
    assert khqr_image._drawable_name(decode(no_alternative), 30)[0] == "coffee@devb"
