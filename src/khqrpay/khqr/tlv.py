"""Tag-length-value fields: the writer and a bounded parser.

Lengths count UTF-16 code units, as the official JavaScript SDK does (`String.length`). Khmer is in
the Basic Multilingual Plane, so for it a Python `len` agrees; a character outside it (an emoji)
counts two. The parser works on a "code-unit string" in which such characters are split into their
surrogate pairs, so that every slice is by code units, and turns each value back into normal text.
"""

from __future__ import annotations

import re

from khqrpay.khqr.errors import KHQRDecodeError, shown

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of every KHQR length field."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def has_astral(text: str) -> bool:
    """Whether `text` holds a character outside the BMP, which counts two code units."""
    return not text.isascii() and _ASTRAL.search(text) is not None


def _surrogate_pair(match: re.Match[str]) -> str:
    offset = ord(match.group()) - 0x10000
    return chr(0xD800 + (offset >> 10)) + chr(0xDC00 + (offset & 0x3FF))


def to_code_units(text: str) -> str:
    """`text` with every non-BMP character split into its two surrogates (one per code unit)."""
    return _ASTRAL.sub(_surrogate_pair, text)


def from_code_units(units: str) -> str:
    """Undo `to_code_units` on one parsed value.

    A length cannot split a surrogate pair here: the half left over would have to be read as a
    tag or length digit, and the parser has already refused that.
    """
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


def tlv(tag: str, value: str) -> str:
    """One field: tag, two-digit length in code units, value (the caller keeps it within 99)."""
    return f"{tag}{utf16_length(value):02d}{value}"


def field_name(parent: str, tag: str) -> str:
    """`tag 59` for a top-level field, `tag 62/01` for a sub-field of template 62."""
    return f"tag {parent}/{tag}" if parent else f"tag {tag}"


# Every valid field header ("5910") and its (tag, length): one dictionary look-up validates and
# converts a header, which is what keeps the parser fast.
_TWO_DIGITS = [f"{number:02d}" for number in range(100)]
_HEADERS = {tag + length: (tag, int(length)) for tag in _TWO_DIGITS for length in _TWO_DIGITS}


def parse_fields(units: str, parent: str = "") -> dict[str, str]:
    """Split a payload (or a template's value) into its fields: tag -> value, in order.

    Bounded: each step consumes at least the four header characters, and every tag and length
    must be two ASCII digits with the value inside the data, so no input can loop or overrun.
    A tag may appear once.
    """
    fields: dict[str, str] = {}
    count = 0
    position = 0
    end = len(units)
    while position < end:
        start = position + 4
        header = _HEADERS.get(units[position:start])
        if header is None or start + header[1] > end:
            raise _header_error(units, position, parent)
        tag, length = header
        position = start + length
        fields[tag] = units[start:position]
        count += 1
    if count != len(fields):
        raise _repeated_tag_error(units, parent)
    return fields


def _repeated_tag_error(units: str, parent: str) -> KHQRDecodeError:
    """Name the first tag that appears twice in `units`, which parsed; one does, so this ends."""
    seen: set[str] = set()
    position = 0
    while True:
        tag, length = _HEADERS[units[position : position + 4]]
        if tag in seen:
            return KHQRDecodeError(field_name(parent, tag), "appears twice; a tag may appear once")
        seen.add(tag)
        position += 4 + length


def _header_error(units: str, position: int, parent: str) -> KHQRDecodeError:
    """Why the field starting at `position` cannot be read."""
    where = f"tag {parent}" if parent else "payload"
    header = units[position : position + 4]
    if len(header) < 4:
        return KHQRDecodeError(
            where, f"{shown(header)} at position {position} is too short for a tag and a length"
        )
    tag, length_text = header[:2], header[2:]
    if not (tag.isascii() and tag.isdigit()):
        return KHQRDecodeError(where, f"tag {shown(tag)} at position {position} is not 2 digits")
    name = field_name(parent, tag)
    if not (length_text.isascii() and length_text.isdigit()):
        return KHQRDecodeError(name, f"length {shown(length_text)} is not 2 digits")
    return KHQRDecodeError(
        name,
        f"length {length_text} runs past the end of the data "
        f"({len(units) - position - 4} character(s) left)",
    )
