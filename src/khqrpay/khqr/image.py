"""Draw a KHQR: the bare QR code, or a payment card in the style banks use. Bytes out, no files.

The card: a red header band with "KHQR", the merchant name, the amount and currency, a dashed
separator and the code. SVG text is laid out by the viewer (the web app serves it the same Noto
fonts). For PNG, Pillow draws with Noto Sans and Noto Sans Khmer, installed with khqrpay as Python
packages (never a font the machine may lack), and shapes Khmer with libraqm (bundled in Pillow's
wheels). A name in a script neither font has falls back to the first name that can be drawn (tag
59, the alternate-language name, the account id).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import fontpkg_noto_sans
import fontpkg_noto_sans_khmer
import segno
from PIL import Image, ImageDraw, ImageFont, features

from khqrpay.khqr.decode import decode
from khqrpay.khqr.model import DecodedKHQR

KHQR_RED = "#E1232E"
_INK = "#000000"
_MUTED = "#5B5B5B"
_RULE = "#BDBDBD"
_QUIET_ZONE = 4  # modules of white around a bare code, as ISO 18004 asks
_CARD_QUIET_ZONE = 2  # the card's white margin adds to it

# The card, in SVG user units (CSS pixels); PNG multiplies by its scale.
_CARD_WIDTH = 320
_CARD_HEIGHT = 464
_CORNER = 16
_TEXT_LEFT = 24
_HEADER_HEIGHT = 56
_NOTCH = 22
_NAME_BASELINE = 92
_AMOUNT_BASELINE = 134
_SEPARATOR_Y = 158
_CODE_TOP = 178
_CODE_SIZE = 264
_NAME_SIZE = 15
_AMOUNT_SIZE = 30
_CURRENCY_SIZE = 14
_TITLE_SIZE = 24
_SVG_FONTS = "'Noto Sans Khmer', 'Khmer OS', 'DejaVu Sans', Arial, sans-serif"

# Variable fonts (weight and width axes), from the fontpkg packages.
LATIN_FONT_FILE = fontpkg_noto_sans.ROOT / "files" / "NotoSans[wdth,wght].ttf"
KHMER_FONT_FILE = fontpkg_noto_sans_khmer.ROOT / "files" / "NotoSansKhmer[wdth,wght].ttf"


def qr_svg(qr: str, *, scale: int = 8) -> bytes:
    """The bare QR code of a KHQR string as an SVG document; `KHQRDecodeError` if not a KHQR."""
    decode(qr)  # draw only what is a KHQR
    buffer = io.BytesIO()
    _symbol(qr).save(buffer, kind="svg", scale=scale, border=_QUIET_ZONE, xmldecl=True)
    return buffer.getvalue()


def qr_png(qr: str, *, scale: int = 8) -> bytes:
    """The bare QR code of a KHQR string as a PNG image (`scale` pixels a module)."""
    decode(qr)
    buffer = io.BytesIO()
    _symbol(qr).save(buffer, kind="png", scale=scale, border=_QUIET_ZONE)
    return buffer.getvalue()


def card_svg(qr: str) -> bytes:
    """The KHQR payment card as an SVG document (320 x 464 CSS pixels, scales freely)."""
    decoded = decode(qr)
    symbol = _symbol(qr)
    modules = symbol.symbol_size(scale=1, border=_CARD_QUIET_ZONE)[0]
    module = _CODE_SIZE / modules
    code_left = (_CARD_WIDTH - _CODE_SIZE) / 2
    amount, currency = _amount_lines(decoded)
    middle = _CARD_WIDTH / 2
    amount_text = (
        f'<text x="{_TEXT_LEFT}" y="{_AMOUNT_BASELINE}" font-size="{_AMOUNT_SIZE}" '
        f'font-weight="bold">{_xml(amount)}'
        f'<tspan font-size="{_CURRENCY_SIZE}" font-weight="normal" dx="6">{currency}</tspan>'
        "</text>"
        if amount
        else f'<text x="{_TEXT_LEFT}" y="{_AMOUNT_BASELINE}" font-size="{_AMOUNT_SIZE}" '
        f'font-weight="bold">{currency}</text>'
    )
    svg = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_CARD_WIDTH}" height="{_CARD_HEIGHT}" '
        f'viewBox="0 0 {_CARD_WIDTH} {_CARD_HEIGHT}" font-family="{_SVG_FONTS}">'
        f"<title>KHQR: {_xml(decoded.merchant_name)}</title>"
        f'<rect width="{_CARD_WIDTH}" height="{_CARD_HEIGHT}" rx="{_CORNER}" fill="#FFFFFF" '
        f'stroke="{_RULE}"/>'
        f'<path d="{_header_path()}" fill="{KHQR_RED}"/>'
        f'<text x="{middle}" y="{_HEADER_HEIGHT / 2 + _TITLE_SIZE * 0.35:.1f}" '
        f'font-size="{_TITLE_SIZE}" font-weight="bold" fill="#FFFFFF" text-anchor="middle" '
        f'letter-spacing="2">KHQR</text>'
        f'<text x="{_TEXT_LEFT}" y="{_NAME_BASELINE}" font-size="{_NAME_SIZE}" '
        f'fill="{_MUTED}">{_xml(decoded.merchant_name)}</text>'
        f"{amount_text}"
        f'<line x1="0" y1="{_SEPARATOR_Y}" x2="{_CARD_WIDTH}" y2="{_SEPARATOR_Y}" '
        f'stroke="{_RULE}" stroke-width="1.5" stroke-dasharray="6 5"/>'
        f'<path transform="translate({code_left} {_CODE_TOP}) scale({module:.4f})" '
        f'fill="{_INK}" d="{_module_path(symbol)}"/>'
        "</svg>"
    )
    return svg.encode("utf-8")


def card_png(qr: str, *, scale: int = 2) -> bytes:
    """The KHQR payment card as a PNG: `scale` 2 for screens, 4 or more for print."""
    if not 1 <= scale <= 16:
        raise ValueError("scale must be between 1 and 16")
    decoded = decode(qr)
    symbol = _symbol(qr)
    width, height = _CARD_WIDTH * scale, _CARD_HEIGHT * scale
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle(
        (0, 0, width - 1, height - 1), radius=_CORNER * scale, fill="#FFFFFF", outline=_RULE
    )
    draw.rounded_rectangle(
        (0, 0, width - 1, _HEADER_HEIGHT * scale),
        radius=_CORNER * scale,
        fill=KHQR_RED,
        corners=(True, True, False, False),
    )
    draw.polygon(
        [
            (width - _NOTCH * scale, _HEADER_HEIGHT * scale),
            (width - 1, _HEADER_HEIGHT * scale),
            (width - 1, (_HEADER_HEIGHT + _NOTCH) * scale),
        ],
        fill=KHQR_RED,
    )
    title = _font(bold=True, size=_TITLE_SIZE * scale)
    draw.text(
        (width // 2, _HEADER_HEIGHT * scale // 2), "KHQR", font=title, fill="#FFFFFF", anchor="mm"
    )

    name, name_font = _drawable_name(decoded, _NAME_SIZE * scale)
    draw.text(
        (_TEXT_LEFT * scale, _NAME_BASELINE * scale),
        name,
        font=name_font,
        fill=_MUTED,
        anchor="ls",
    )
    amount, currency = _amount_lines(decoded)
    _draw_amount(draw, amount, currency, scale)
    for x in range(0, width, 11 * scale):
        draw.line(
            (x, _SEPARATOR_Y * scale, x + 6 * scale, _SEPARATOR_Y * scale),
            fill=_RULE,
            width=max(1, scale),
        )
    _draw_modules(draw, symbol, scale)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _symbol(qr: str) -> segno.QRCode:
    """The QR symbol: byte mode, UTF-8 and no ECI header, as banking apps read KHQR."""
    return segno.make_qr(qr, error="m", mode="byte", encoding="utf-8", eci=False)


def _amount_lines(decoded: DecodedKHQR) -> tuple[str, str]:
    """The amount with thousands separators (`4,000`, `1,234.50`), or "" if static; currency."""
    if decoded.money is None:
        return "", decoded.currency.value
    exponent = decoded.currency.exponent
    return f"{Decimal(decoded.money.minor).scaleb(-exponent):,}", decoded.currency.value


def _dark_runs(symbol: segno.QRCode) -> Iterator[tuple[int, int, int]]:
    """(row, first column, length) of every horizontal run of dark modules, quiet zone included."""
    rows = symbol.matrix_iter(scale=1, border=_CARD_QUIET_ZONE)
    for y, row in enumerate(rows):
        x = 0
        for dark, run in itertools.groupby(row, key=bool):
            length = len(list(run))
            if dark:
                yield y, x, length
            x += length


def _module_path(symbol: segno.QRCode) -> str:
    return "".join(f"M{x} {y}h{length}v1h-{length}z" for y, x, length in _dark_runs(symbol))


def _draw_modules(draw: ImageDraw.ImageDraw, symbol: segno.QRCode, scale: int) -> None:
    """Whole-pixel modules, centred in the code area, so the PNG scans crisply."""
    modules = symbol.symbol_size(scale=1, border=_CARD_QUIET_ZONE)[0]
    module = _CODE_SIZE * scale // modules
    left = (_CARD_WIDTH * scale - module * modules) // 2
    top = _CODE_TOP * scale + (_CODE_SIZE * scale - module * modules) // 2
    for y, x, length in _dark_runs(symbol):
        draw.rectangle(
            (
                left + x * module,
                top + y * module,
                left + (x + length) * module - 1,
                top + (y + 1) * module - 1,
            ),
            fill=_INK,
        )


def _draw_amount(draw: ImageDraw.ImageDraw, amount: str, currency: str, scale: int) -> None:
    """The amount, bold and large, then the currency code; shrunk until it fits the card."""
    available = (_CARD_WIDTH - 2 * _TEXT_LEFT) * scale
    gap = 6 * scale
    size = _AMOUNT_SIZE * scale
    while True:
        big = _font(bold=True, size=size)
        small = _font(bold=not amount, size=_CURRENCY_SIZE * scale if amount else size)
        amount_width = draw.textlength(amount, font=big) if amount else 0.0
        total = amount_width + (gap if amount else 0) + draw.textlength(currency, font=small)
        if total <= available or size <= _CURRENCY_SIZE * scale:
            break
        size -= scale
    x = float(_TEXT_LEFT * scale)
    baseline = _AMOUNT_BASELINE * scale
    if amount:
        draw.text((x, baseline), amount, font=big, fill=_INK, anchor="ls")
        x += amount_width + gap
    draw.text((x, baseline), currency, font=small, fill=_INK, anchor="ls")


def _drawable_name(
    decoded: DecodedKHQR, size: int
) -> tuple[str, ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    """The first of the names that a font on this machine can draw, with that font."""
    candidates = [decoded.merchant_name, decoded.merchant_name_alt, decoded.bakong_account_id]
    for name in candidates:
        if not name:
            continue
        for font in (_font(bold=False, size=size), _khmer_font(size)):
            if _can_draw(font, name):
                return name, font
    return decoded.bakong_account_id, _font(bold=False, size=size)


def _can_draw(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> bool:
    """Whether every character renders as a real glyph, not the font's missing-glyph box."""
    if text.isascii():
        return True
    if not isinstance(font, ImageFont.FreeTypeFont):
        return False
    needs_shaping = any("\u1780" <= c <= "\u17ff" or "\u19e0" <= c <= "\u19ff" for c in text)
    if needs_shaping and not features.check("raqm"):
        return False  # unshaped Khmer is wrong, not merely ugly
    missing = _glyph_image(font, "\U0010fffd")
    return all(_glyph_image(font, c) != missing for c in set(text) if not c.isspace())


def _glyph_image(font: ImageFont.FreeTypeFont, character: str) -> bytes:
    size = int(font.size) * 2
    canvas = Image.new("L", (size, size))
    ImageDraw.Draw(canvas).text((size // 4, size // 4), character, font=font, fill=255)
    return canvas.tobytes()


@lru_cache(maxsize=32)
def _font(*, bold: bool, size: int) -> ImageFont.FreeTypeFont:
    return _packaged_font(LATIN_FONT_FILE, size, bold=bold)


@lru_cache(maxsize=32)
def _khmer_font(size: int) -> ImageFont.FreeTypeFont:
    return _packaged_font(KHMER_FONT_FILE, size, bold=False)


def _packaged_font(path: Path, size: int, *, bold: bool) -> ImageFont.FreeTypeFont:
    layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    font = ImageFont.truetype(str(path), size, layout_engine=layout)
    font.set_variation_by_name("Bold" if bold else "Regular")
    return font


def _header_path() -> str:
    """The red band: rounded top corners, square bottom, and the KHQR notch at the right."""
    w, h, r, n = _CARD_WIDTH, _HEADER_HEIGHT, _CORNER, _NOTCH
    return f"M0 {r}A{r} {r} 0 0 1 {r} 0H{w - r}A{r} {r} 0 0 1 {w} {r}V{h + n}L{w - n} {h}H0Z"


def _xml(text: str) -> str:
    """Text safe inside an SVG element: markup escaped, characters XML 1.0 forbids dropped."""
    allowed = "".join(c for c in text if c >= " " or c in "\t\n\r")
    return escape(allowed)
