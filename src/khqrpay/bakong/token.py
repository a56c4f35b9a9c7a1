"""The Bakong API token: a holder that never shows its value, and its expiry read from the JWT."""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal

from khqrpay.logging import register_secret
from khqrpay.settings import bakong_token_problem


class TokenFormatError(ValueError):
    """The token is not a JWT whose payload carries a numeric `exp`; the message never quotes it."""


class BakongToken:
    """A bearer token: `repr`/`str` are redacted; `reveal()` gives the value for the header."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        cleaned = value.strip()
        if not cleaned:
            raise ValueError("a Bakong token must not be empty")
        problem = bakong_token_problem(cleaned)
        if problem is not None:
            raise ValueError(problem)
        self._value = cleaned
        # Whatever happens later, this value is scrubbed from log output.
        register_secret(cleaned)

    def reveal(self) -> str:
        return self._value

    def expires_at_ms(self) -> int:
        """The JWT `exp` claim in epoch milliseconds (the signature is not checked: Bakong does)."""
        return read_jwt_expiry_ms(self._value)

    def __repr__(self) -> str:
        return "BakongToken('**********')"

    __str__ = __repr__


def read_jwt_expiry_ms(token: str) -> int:
    """`exp` (seconds, per RFC 7519) of a JWT, as epoch milliseconds."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        raise TokenFormatError("the token is not a JWT (three dot-separated parts)")
    payload_b64 = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        payload = json.loads(
            base64.urlsafe_b64decode(payload_b64.encode("ascii")), parse_float=Decimal
        )
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise TokenFormatError("the token's JWT payload is not base64url JSON") from exc
    if not isinstance(payload, dict):
        raise TokenFormatError("the token's JWT payload is not a JSON object")
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | Decimal) or not Decimal(exp).is_finite():
        raise TokenFormatError("the token's JWT payload has no numeric exp claim")
    return int(Decimal(exp) * 1000)
