"""The Bakong Open API adapter: an async client with typed results and typed errors.

The client (and httpx with it), the metrics (prometheus_client), the token (the settings and the
log set-up) and the resilience parts (tenacity, asyncio) are imported on first use, so that code
which only needs the answer and error types (the services, the views a command prints) starts fast.
"""

from typing import TYPE_CHECKING

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
from khqrpay.lazy import on_first_use

if TYPE_CHECKING:
    from khqrpay.bakong.client import MAX_LIST_KEYS, BakongClient, Endpoint
    from khqrpay.bakong.metrics import BakongMetrics
    from khqrpay.bakong.resilience import CircuitState
    from khqrpay.bakong.token import BakongToken, TokenFormatError

# The names imported on first use, and their module.
_LAZY = {
    "MAX_LIST_KEYS": "client",
    "BakongClient": "client",
    "Endpoint": "client",
    "BakongMetrics": "metrics",
    "CircuitState": "resilience",
    "BakongToken": "token",
    "TokenFormatError": "token",
}
__getattr__ = on_first_use(__name__, _LAZY)


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
