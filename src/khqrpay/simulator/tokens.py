"""JWT-shaped tokens like the ones Bakong issues: `header.payload.signature`, base64url JSON."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

TOKEN_LIFETIME_MS = 90 * 24 * 3600 * 1000


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """Signs tokens with a key made at start (HS256), so they are real, verifiable JWTs."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def issue(self, subject: str, now_ms: int) -> tuple[str, int]:
        """A new token for `subject` and its expiry (epoch ms), 90 days after `now_ms`."""
        expires_ms = now_ms + TOKEN_LIFETIME_MS
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "data": {"id": secrets.token_hex(8), "sub": subject},
            "iat": now_ms // 1000,
            "exp": expires_ms // 1000,
        }
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode("ascii")
        signature = _b64url(hmac.new(self._key, signing_input, hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}", expires_ms
