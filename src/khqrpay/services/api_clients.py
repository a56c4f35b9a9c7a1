"""The JSON API's clients: making, listing and revoking their keys, and knowing a request's
client by the key it presents. Every change is audited (no order: `order_id` NULL)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from khqrpay.clock import Clock
from khqrpay.db import ActiveKeyExists, Database, UnitOfWork
from khqrpay.orders.api_clients import (
    KEY_PREFIX,
    ApiKey,
    ApiKeyRefused,
    hash_api_key,
    shown_part,
    validate_client_name,
)
from khqrpay.orders.model import validate_actor

# 32 random bytes: 43 URL-safe characters after the prefix.
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: `secret` is shown to the person who made it, once, and never stored."""

    key: ApiKey
    secret: str


def create_api_key(database: Database, client: str, *, clock: Clock, actor: str) -> IssuedKey:
    """A key for `client`; refused while the client holds an active key (revoke it first)."""
    validate_client_name(client)
    validate_actor(actor)
    secret = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    now_ms = clock.now_ms()
    with database.write() as uow:
        try:
            key = uow.api_keys.add(
                client=client,
                key_hash=hash_api_key(secret),
                shown=shown_part(secret),
                now_ms=now_ms,
            )
        except ActiveKeyExists:
            raise ApiKeyRefused(
                f"API client {client} already has an active key: revoke it first"
            ) from None
        _audit(uow, key, action="api_key_created", actor=actor, now_ms=now_ms)
    return IssuedKey(key, secret)


def list_api_keys(database: Database) -> list[ApiKey]:
    with database.read() as uow:
        return uow.api_keys.list_all()


def revoke_api_key(database: Database, client: str, *, clock: Clock, actor: str) -> ApiKey:
    """Revoke the client's active key: requests with it get 401 from now on. Its orders stay
    the client's (a new key under the same name reaches them)."""
    validate_client_name(client)
    validate_actor(actor)
    now_ms = clock.now_ms()
    with database.write() as uow:
        active = uow.api_keys.active_of(client)
        revoked = None if active is None else uow.api_keys.revoke(active.id, now_ms=now_ms)
        if revoked is None:
            raise ApiKeyRefused(f"API client {client} has no active key")
        _audit(uow, revoked, action="api_key_revoked", actor=actor, now_ms=now_ms)
    return revoked


def _audit(uow: UnitOfWork, key: ApiKey, *, action: str, actor: str, now_ms: int) -> None:
    """A key made or revoked, in the audit trail (its first characters, never the key)."""
    uow.audit.append(
        order_id=None,
        at_ms=now_ms,
        actor=actor,
        action=action,
        details={"client": key.client, "key": key.shown},
    )


def authenticate(database: Database, presented: str) -> ApiKey | None:
    """The active key a request presents, or None (unknown, revoked, or not a key at all)."""
    if not presented.startswith(KEY_PREFIX) or len(presented) > 128:
        return None
    with database.read() as uow:
        return uow.api_keys.active_by_hash(hash_api_key(presented))
