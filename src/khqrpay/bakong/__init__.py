"""The Bakong Open API adapter: an async client with typed results and typed errors."""

from khqrpay.bakong.client import MAX_LIST_KEYS, BakongClient, Endpoint
from khqrpay.bakong.deeplink import DeeplinkSource
from khqrpay.bakong.errors import (
    BadResponse,
    BakongError,
    BakongInputError,
    Blocked,
    CircuitOpen,
    MalformedTransaction,
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
    "Paid",
    "RateLimited",
    "Rejected",
    "StaticQr",
    "TokenFormatError",
    "Transaction",
    "Unauthorized",
    "Unavailable",
]
