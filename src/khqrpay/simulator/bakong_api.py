"""The Bakong Open API's business behaviour: each endpoint from a parsed body to a `Reply`.

HTTP, faults and body parsing live in `app.py`; this module knows the codes and the lookups.
Validation follows one rule: a body that is not the endpoint's shape (a field missing, of the wrong
type, too long, a list of more than 50) answers HTTP 200 with errorCode 5, the only validation code
the service has.
"""

from __future__ import annotations

import enum
import hmac
import random
import re
import string
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from khqrpay.clock import Clock
from khqrpay.hashes import SHORT_HASH_LENGTH
from khqrpay.khqr import KHQRError, decode
from khqrpay.money import Currency, Money, MoneyError
from khqrpay.simulator.profiles import WireShape
from khqrpay.simulator.protocol import (
    ACCOUNT_EXISTS,
    DEEPLINK_MADE,
    ERROR_MESSAGES,
    LIST_LIMIT,
    TOKEN_ISSUED,
    ErrorCode,
    ItemStatus,
    Reply,
    failure,
    success,
)
from khqrpay.simulator.state import Lookup, SimulatorState
from khqrpay.simulator.tokens import TokenIssuer

MAX_KEY_LENGTH = 255  # the Open API document's limit on md5, hash and reference fields
MAX_EMAIL_LENGTH = 30
MAX_ACCOUNT_LENGTH = 32
# Bakong account ids as banks issue them: `john_smith@devb`, `abaakhppxxx@abaa`.
ACCOUNT_ID = re.compile(r"^[a-z0-9_.]+@[a-z0-9]+$")
SOURCE_INFO_FIELDS = ("appIconUrl", "appName", "appDeepLinkCallback")
SHORT_LINK_BASE = "https://bakong.page.link/"
DEEPLINK_PATH = "/v1/generate_deeplink_by_qr"

Handler = Callable[[Any], Reply]


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler
    needs_token: bool


def _text(payload: Any, key: str, max_length: int = MAX_KEY_LENGTH) -> str | None:
    """`payload[key]` when it is a non-empty string within `max_length`, else None."""
    if not isinstance(payload, Mapping):
        return None
    value = payload.get(key)
    if isinstance(value, str) and 0 < len(value.strip()) <= max_length:
        return value.strip()
    return None


def _decimal(value: Any) -> Decimal | None:
    """A JSON number (parsed as int or Decimal) or a numeric string; never a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


class TokenVerdict(enum.Enum):
    """What the service makes of a request's bearer token."""

    ACCEPTED = "accepted"
    EXPIRED = "expired"  # one it issued whose time is up: production says so with a 403
    REFUSED = "refused"  # none, or one it never issued


class BakongApi:
    def __init__(
        self,
        state: SimulatorState,
        clock: Clock,
        *,
        token: str,
        registered_emails: frozenset[str],
        frozen_accounts: frozenset[str],
        issuer: TokenIssuer,
        rng: random.Random,
        shape: WireShape,
    ) -> None:
        self._state = state
        self._clock = clock
        self._shape = shape
        self._frozen_accounts = frozen_accounts
        self._token = token
        self._registered_emails = frozenset(email.lower() for email in registered_emails)
        self._issuer = issuer
        self._rng = rng
        self._rng_lock = threading.Lock()

    def endpoints(self) -> dict[str, Endpoint]:
        return {
            "/v1/check_transaction_by_md5": Endpoint(self.check_md5, needs_token=True),
            "/v1/check_transaction_by_hash": Endpoint(self.check_hash, needs_token=True),
            "/v1/check_transaction_by_short_hash": Endpoint(
                self.check_short_hash, needs_token=True
            ),
            "/v1/check_transaction_by_instruction_ref": Endpoint(
                self.check_instruction_ref, needs_token=True
            ),
            "/v1/check_transaction_by_external_ref": Endpoint(
                self.check_external_ref, needs_token=True
            ),
            "/v1/check_transaction_by_md5_list": Endpoint(self.check_md5_list, needs_token=True),
            "/v1/check_transaction_by_hash_list": Endpoint(self.check_hash_list, needs_token=True),
            # The reference says the account check "may work without" a token: we do not ask.
            "/v1/check_bakong_account": Endpoint(self.check_account, needs_token=False),
            DEEPLINK_PATH: Endpoint(self.generate_deeplink, needs_token=False),
            "/v1/renew_token": Endpoint(self.renew_token, needs_token=False),
        }

    def judge_token(self, authorization: str | None) -> TokenVerdict:
        """The configured token, or one this simulator issued that has not expired, is accepted."""
        if authorization is None:
            return TokenVerdict.REFUSED
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return TokenVerdict.REFUSED
        if hmac.compare_digest(token.encode(), self._token.encode()):
            return TokenVerdict.ACCEPTED
        expires_ms = self._state.issued_token_expiry(token)
        if expires_ms is None:
            return TokenVerdict.REFUSED
        return TokenVerdict.ACCEPTED if self._clock.now_ms() < expires_ms else TokenVerdict.EXPIRED

    def token_refusal(self, verdict: TokenVerdict) -> Reply:
        """errorCode 6; HTTP 401, or the profile's status for an expired token."""
        expired = verdict is TokenVerdict.EXPIRED
        status = self._shape.expired_token_status if expired else 401
        return failure(ErrorCode.UNAUTHORIZED, status=status)

    def _lookup_reply(self, found: Lookup) -> Reply:
        code = found.status.error_code
        if code is None:
            assert found.transaction is not None
            return success(found.transaction.to_bakong(self._shape), self._shape.success_message)
        return failure(code)

    def check_md5(self, payload: Any) -> Reply:
        return self._check_one(payload, "md5", self._state.find_by_md5)

    def check_hash(self, payload: Any) -> Reply:
        return self._check_one(payload, "hash", self._state.find_by_hash)

    def check_short_hash(self, payload: Any) -> Reply:
        short_hash = _text(payload, "hash", SHORT_HASH_LENGTH)
        currency_text = _text(payload, "currency", 3)
        amount = _decimal(payload.get("amount")) if isinstance(payload, Mapping) else None
        if (
            short_hash is None
            or len(short_hash) != SHORT_HASH_LENGTH
            or amount is None
            or currency_text is None
            or currency_text.upper() not in Currency.__members__
        ):
            return failure(ErrorCode.MISSING_FIELDS)
        try:
            money = Money(amount, Currency[currency_text.upper()])
        except MoneyError:
            # No transaction can carry an amount that is not valid money (1.234 USD, -1 KHR).
            return failure(ErrorCode.NOT_FOUND)
        found = self._state.find_by_short_hash(short_hash, money, self._clock.now_ms())
        return self._lookup_reply(found)

    def check_instruction_ref(self, payload: Any) -> Reply:
        return self._check_one(payload, "instructionRef", self._state.find_by_instruction_ref)

    def check_external_ref(self, payload: Any) -> Reply:
        return self._check_one(payload, "externalRef", self._state.find_by_external_ref)

    def _check_one(self, payload: Any, key_name: str, find: Callable[[str, int], Lookup]) -> Reply:
        """The body is a JSON object whose `key_name` is the text to look up."""
        key = _text(payload, key_name)
        if key is None:
            return failure(ErrorCode.MISSING_FIELDS)
        return self._lookup_reply(find(key, self._clock.now_ms()))

    def check_md5_list(self, payload: Any) -> Reply:
        return self._check_list(payload, "md5", self._state.find_by_md5)

    def check_hash_list(self, payload: Any) -> Reply:
        return self._check_list(payload, "hash", self._state.find_by_hash)

    def _check_list(self, payload: Any, key_name: str, find: Callable[[str, int], Lookup]) -> Reply:
        """The body is a bare JSON array of 1 to 50 keys; one item per key, in order."""
        if (
            not isinstance(payload, list)
            or not 0 < len(payload) <= LIST_LIMIT
            or not all(
                isinstance(key, str) and 0 < len(key.strip()) <= MAX_KEY_LENGTH for key in payload
            )
        ):
            return failure(ErrorCode.MISSING_FIELDS)
        now_ms = self._clock.now_ms()
        items = []
        for key in payload:
            found = find(key.strip(), now_ms)
            status = found.status
            if status is ItemStatus.FAILED and not self._shape.list_shows_failed:
                status = ItemStatus.NOT_FOUND  # production lists a failed transfer as not found
            paid = found.transaction if status is ItemStatus.SUCCESS else None
            items.append(
                {
                    key_name: key,
                    "status": status.value,
                    "message": self._message(status),
                    "data": None if paid is None else paid.to_bakong(self._shape),
                }
            )
        return success(items, self._shape.success_message)

    def _message(self, status: ItemStatus) -> str:
        code = status.error_code
        return self._shape.success_message if code is None else ERROR_MESSAGES[code]

    def check_account(self, payload: Any) -> Reply:
        account_id = _text(payload, "accountId", MAX_KEY_LENGTH)
        if account_id is None:
            return failure(ErrorCode.MISSING_FIELDS)
        if len(account_id) > MAX_ACCOUNT_LENGTH or not ACCOUNT_ID.match(account_id):
            return failure(ErrorCode.ACCOUNT_INVALID)
        if not self._state.account_exists(account_id):
            return failure(ErrorCode.ACCOUNT_NOT_FOUND)
        if not self._shape.account_details:
            return success(None, ACCOUNT_EXISTS)
        frozen = account_id in self._frozen_accounts
        details = {
            "accountId": account_id,
            "accountStatus": "FROZEN" if frozen else "ACTIVE",
            "canReceive": not frozen,
            "frozen": frozen,
            "kycStatus": "FULL",
        }
        return success(details, ACCOUNT_EXISTS)

    def generate_deeplink(self, payload: Any, *, app_page: str | None = None) -> Reply:
        """Bakong's short link for a QR; with `app_page`, a link to that banking-app page
        opened on the QR instead."""
        qr = _text(payload, "qr", 1000)
        source_info = payload.get("sourceInfo") if isinstance(payload, Mapping) else None
        if qr is None or (
            source_info is not None
            and not all(_text(source_info, field, 1000) for field in SOURCE_INFO_FIELDS)
        ):
            return failure(ErrorCode.MISSING_FIELDS)
        try:
            decode(qr)
        except KHQRError:
            return failure(ErrorCode.MISSING_FIELDS)
        if app_page is not None:
            return success({"shortLink": f"{app_page}?qr={quote(qr, safe='')}"}, DEEPLINK_MADE)
        alphabet = string.ascii_letters + string.digits
        with self._rng_lock:
            suffix = "".join(self._rng.choice(alphabet) for _ in range(17))
        return success({"shortLink": SHORT_LINK_BASE + suffix}, DEEPLINK_MADE)

    def renew_token(self, payload: Any) -> Reply:
        email = _text(payload, "email", MAX_EMAIL_LENGTH)
        if email is None:
            return failure(ErrorCode.MISSING_FIELDS)
        if email.lower() not in self._registered_emails:
            return failure(ErrorCode.NOT_REGISTERED)
        token, expires_ms = self._issuer.issue(email.lower(), self._clock.now_ms())
        self._state.remember_token(token, expires_ms)
        return success({"token": token}, TOKEN_ISSUED)
