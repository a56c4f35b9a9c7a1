"""The software of other shops calling the JSON API: clients, their keys, idempotent requests. Pure.

A client is a name (`pos-1`); it holds at most one active key at a time and sees only the orders
it created. A key is shown once when it is made and stored only as its SHA-256: it is 32 random
bytes, so a fast hash is as safe as a slow one (nothing to brute-force) and lets a request's key
be found with one indexed lookup. Revoking a key and making a new one under the same name keeps
the client's orders reachable with the new key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from khqrpay.orders.model import OrderError

KEY_PREFIX = "khqr_"
# What `apikey list` shows of a key: enough to tell two apart, nothing to use.
SHOWN_KEY_CHARACTERS = 12
MAX_CLIENT_NAME_LENGTH = 48
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_CLIENT_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_CLIENT_NAME_LENGTH - 1}}}$")
_IDEMPOTENCY_KEY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}$")


class ApiKeyRefused(OrderError):
    """A key that cannot be made or revoked (a name in use, no active key); nothing changed."""


class IdempotencyConflict(OrderError):
    """An Idempotency-Key already used with another request body."""


def validate_client_name(name: str) -> str:
    if not _CLIENT_NAME.match(name):
        raise OrderError(
            f"an API client name is 1-{MAX_CLIENT_NAME_LENGTH} characters: letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def validate_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY_KEY.match(key):
        raise OrderError(
            f"an Idempotency-Key is 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters "
            "without spaces"
        )
    return key


def hash_api_key(key: str) -> str:
    """What is stored of a key (and looked up when a request presents one)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def shown_part(key: str) -> str:
    return key[:SHOWN_KEY_CHARACTERS]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    client: str
    # The key's first characters, to tell keys apart in a listing.
    shown: str
    created_ms: int
    revoked_ms: int | None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None

    @property
    def actor(self) -> str:
        """Who acts in the audit trail when a request carries this key."""
        return f"api:{self.client}"


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A request the client sent with an Idempotency-Key: its body's fingerprint and the order it
    made."""

    client: str
    key: str
    fingerprint: str
    order_id: int | None
    created_ms: int
