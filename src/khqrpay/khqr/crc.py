"""The KHQR checksum: CRC-16/CCITT-FALSE over the UTF-8 bytes up to and including `6304`."""

from __future__ import annotations

import binascii

CRC_FIELD_HEADER = "6304"


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, unreflected): `binascii.crc_hqx` in C."""
    return binascii.crc_hqx(data, 0xFFFF)


def crc_hex(payload_through_header: str) -> str:
    """The four upper-case hex digits written after `6304` (the argument ends with `6304`)."""
    return f"{crc16_ccitt_false(payload_through_header.encode('utf-8')):04X}"
