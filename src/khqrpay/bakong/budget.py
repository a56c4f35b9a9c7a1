"""The client's side of the request budget: every payment-check call passes a gate first.

The gate (`CallGate`) is the budget shared by all processes; the services implement it on the
database (`khqrpay.services.budget`) and the composition root hands it to the client. Who is asking
(staff, the verifier, a customer) rides along in a context variable set by the service that asks
(`calling_as`), so the port's methods keep their signatures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from khqrpay.orders.budget import CallPriority

_PRIORITY: ContextVar[CallPriority] = ContextVar(
    "bakong_call_priority", default=CallPriority.VERIFIER
)


class CallGate(Protocol):
    async def acquire(self, calls: int, *, priority: CallPriority) -> int:
        """Take up to `calls` calls from the budget; how many were granted (0 to `calls`)."""
        ...

    async def list_refused(self, *, until_ms: int) -> None:
        """Bakong refused the md5 list: tell every process single checks are in use until then."""
        ...


@contextmanager
def calling_as(priority: CallPriority) -> Iterator[None]:
    """Bakong calls made inside (and in tasks started inside) are `priority`'s."""
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def current_priority() -> CallPriority:
    return _PRIORITY.get()
