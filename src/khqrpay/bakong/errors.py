"""Errors of the Bakong client. None of them ever means "not paid": that is `NotFound`, a result.

Messages carry the endpoint, the HTTP status and the Bakong errorCode when known, never the token
or a response body (a body could echo anything back).
"""

from __future__ import annotations

from typing import ClassVar


class BakongInputError(ValueError):
    """An argument the client refuses before sending anything (a programming or input error)."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class BakongError(Exception):
    """The Bakong service could not give an answer; the question stays open."""

    kind: ClassVar[str] = "error"
    # Worth repeating the same request after a pause.
    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        http_status: int | None = None,
        error_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.http_status = http_status
        self.error_code = error_code

    def __str__(self) -> str:
        context = [
            part
            for part in (
                self.endpoint,
                None if self.http_status is None else f"HTTP {self.http_status}",
                None if self.error_code is None else f"errorCode {self.error_code}",
            )
            if part is not None
        ]
        return f"{self.message} ({', '.join(context)})" if context else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class Unauthorized(BakongError):
    """The token is missing, wrong, expired or revoked: HTTP 401, errorCode 6, or a 403 whose
    answer names the token (`http_status` tells which). Never retried."""

    kind = "unauthorized"


class Blocked(BakongError):
    """HTTP 403 from the firewall (non-Cambodian address, missing User-Agent, blocked path); a 403
    that names the token is `Unauthorized` instead."""

    kind = "blocked"


class RateLimited(BakongError):
    """HTTP 429; `retry_after_s` is the server's Retry-After in seconds when it sent one."""

    kind = "rate_limited"
    transient = True

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None,
        endpoint: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, http_status=http_status)
        self.retry_after_s = retry_after_s


class Unavailable(BakongError):
    """The service did not answer usefully: 5xx, a timeout, a reset, or "cannot connect"."""

    kind = "unavailable"
    transient = True


class CircuitOpen(Unavailable):
    """Refused locally: recent calls failed, so the client waits `retry_in_s` before trying."""

    kind = "circuit_open"
    # Retrying at once would only be refused again; the caller's schedule retries later.
    transient = False

    def __init__(self, message: str, *, retry_in_s: float, endpoint: str | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.retry_in_s = retry_in_s


class BadResponse(BakongError):
    """An answer that is not the documented envelope, or has fields of the wrong type or shape."""

    kind = "bad_response"


class MalformedTransaction(BadResponse):
    """The answer for one key carries a transaction that cannot be read (a field of the wrong
    type, no hash or amount). Bakong itself answered: this never counts against the service."""


class Rejected(BakongError):
    """A well-formed refusal (e.g. errorCode 5 missing fields, 10 e-mail not registered)."""

    kind = "rejected"


class OverBudget(BakongError):
    """Refused locally, nothing sent: the request budget shared by every process
    (`KHQRPAY_BAKONG_MAX_CALLS_PER_MIN`) has no call left for this caller this minute. The check
    is deferred, never dropped: the verifier asks again when the budget allows."""

    kind = "over_budget"
