"""Running a transaction again when PostgreSQL picks it as a deadlock or serialization victim."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from khqrpay.logging import get_logger

# A victim transaction is run again; three tries is plenty for the short ones the engine runs.
TRANSACTION_ATTEMPTS = 3
# PostgreSQL's deadlock and serialization failures.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

_T = TypeVar("_T")
_log = get_logger(__name__)


def run_retried(step: Callable[[], _T], *, also: tuple[type[Exception], ...] = ()) -> _T:
    """`step()` (which opens and commits its own transaction), run again up to
    `TRANSACTION_ATTEMPTS` times when it lost a deadlock or a serialization race, or raised one of
    `also` (a caller's own "run me again" signal)."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            return step()
        except DBAPIError as exc:
            retryable = getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
            if not retryable or attempt == TRANSACTION_ATTEMPTS:
                raise
            reason = type(exc.orig).__name__
        except also as exc:
            if attempt == TRANSACTION_ATTEMPTS:
                raise
            reason = type(exc).__name__
        _log.warning("transaction retried", reason=reason, attempt=attempt)
    raise AssertionError("unreachable")  # pragma: no cover
