"""Tokens the simulator issues are real HS256 JWTs that expire 90 days after issue."""

from __future__ import annotations

import base64
import json

from khqrpay.simulator.tokens import TOKEN_LIFETIME_MS, TokenIssuer

NOW_MS = 1_795_651_200_000


def _segment(text: str) -> dict[str, object]:
    decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    assert isinstance(decoded, dict)
    return decoded


def test_a_token_is_a_jwt_with_a_90_day_expiry() -> None:
    token, expires_ms = TokenIssuer().issue("merchant@example.com", NOW_MS)
    header, payload, signature = token.split(".")
    assert _segment(header) == {"alg": "HS256", "typ": "JWT"}
    claims = _segment(payload)
    assert claims["iat"] == NOW_MS // 1000
    assert claims["exp"] == (NOW_MS + 90 * 24 * 3600 * 1000) // 1000
    assert expires_ms == NOW_MS + TOKEN_LIFETIME_MS
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32
    assert "=" not in token


def test_every_token_is_new() -> None:
    issuer = TokenIssuer()
    first, _ = issuer.issue("merchant@example.com", NOW_MS)
    second, _ = issuer.issue("merchant@example.com", NOW_MS)
    assert first != second
