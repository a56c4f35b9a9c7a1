"""The client's side of the request budget: every payment-check call passes a gate first.

The gate (`CallGate`) is the budget shared by all processes; the services implement it on the
database (`khqrpay.services.budget`) and the composition root hands it to the client. Who is asking
(staff, the verifier, a customer) rides along in a context variable set by the service that asks
(`calling_as`), so the port's methods keep their signatures. A caller that already took its calls
from the budget (the verifier, in the transaction of its claim) says so with `prepaid`: the client
spends those first and asks the gate only for more (a retry, a fallback to single checks).
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


class _Allowance:
    """Calls already taken from the budget, shared by the tasks started in its context."""

    def __init__(self, calls: int) -> None:
        self.left = calls

    def take(self, calls: int) -> int:
        granted = min(calls, self.left)
        self.left -= granted
        return granted


_ALLOWANCE: ContextVar[_Allowance | None] = ContextVar("bakong_calls_prepaid", default=None)


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


@contextmanager
def prepaid(calls: int) -> Iterator[None]:
    """Calls made inside spend these `calls`, already taken from the budget, before the gate's."""
    token = _ALLOWANCE.set(_Allowance(calls))
    try:
        yield
    finally:
        _ALLOWANCE.reset(token)


def take_prepaid(calls: int) -> int:
    """Take up to `calls` of the calls prepaid in this context; how many it had."""
    allowance = _ALLOWANCE.get()
    return 0 if allowance is None else allowance.take(calls)
