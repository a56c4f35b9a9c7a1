"""The Bakong Open API adapter: an async client with typed results and typed errors.

The client (and httpx with it) is imported on first use, so that code which only needs the answer
and error types (the services, commands that make no Bakong call) starts fast.
"""

from typing import TYPE_CHECKING, Any

from khqrpay.bakong.deeplink import DeeplinkSource
from khqrpay.bakong.errors import (
    BadResponse,
    BakongError,
    BakongInputError,
    Blocked,
    CircuitOpen,
    MalformedTransaction,
    OverBudget,
    RateLimited,
    Rejected,
    Unauthorized,
    Unavailable,
)
from khqrpay.bakong.metrics import BakongMetrics
from khqrpay.bakong.outcomes import (
    AccountState,
    AccountStatus,
    CheckResult,
    Failed,
    NotFound,
    Paid,
    StaticQr,
    Transaction,
)
from khqrpay.bakong.resilience import CircuitState
from khqrpay.bakong.token import BakongToken, TokenFormatError

if TYPE_CHECKING:
    from khqrpay.bakong.client import MAX_LIST_KEYS, BakongClient, Endpoint

_CLIENT_NAMES = frozenset({"MAX_LIST_KEYS", "BakongClient", "Endpoint"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from khqrpay.bakong import client

        return getattr(client, name)
    raise AttributeError(f"module 'khqrpay.bakong' has no attribute {name!r}")


__all__ = [
    "MAX_LIST_KEYS",
    "AccountState",
    "AccountStatus",
    "BadResponse",
    "BakongClient",
    "BakongError",
    "BakongInputError",
    "BakongMetrics",
    "BakongToken",
    "Blocked",
    "CheckResult",
    "CircuitOpen",
    "CircuitState",
    "DeeplinkSource",
    "Endpoint",
    "Failed",
    "MalformedTransaction",
    "NotFound",
    "OverBudget",
    "Paid",
    "RateLimited",
    "Rejected",
    "StaticQr",
    "TokenFormatError",
    "Transaction",
    "Unauthorized",
    "Unavailable",
]
