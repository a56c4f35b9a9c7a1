"""Pay-later customers: each scheduled QR is paid after a delay drawn from the reported pattern.

A drawn delay of D seconds happens after D / acceleration real seconds, so a demo can replay a
month in minutes. One background task (`run`) sleeps until the next customer is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from khqrpay.clock import Clock
from khqrpay.money import Currency
from khqrpay.simulator.paylater import PayLaterDistribution
from khqrpay.simulator.payments import Payer, PaymentOrder, PaymentRefused


class CustomerState(enum.Enum):
    WAITING = "waiting"
    PAID = "paid"
    NEVER = "never"  # drew "never pays"
    REFUSED = "refused"  # came back, but the banking app refused (e.g. the QR had expired)


@dataclass(frozen=True, slots=True)
class Customer:
    """One scheduled customer; replaced, never mutated, as its state changes."""

    id: int
    order: PaymentOrder
    md5: str
    scheduled_ms: int
    delay_s: float | None
    state: CustomerState
    transaction_hash: str | None = None
    refusal: str | None = None


class CustomerScheduler:
    def __init__(
        self,
        payer: Payer,
        clock: Clock,
        *,
        rng: random.Random,
        acceleration: float,
        distribution: PayLaterDistribution | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not acceleration > 0:
            raise ValueError("acceleration must be positive")
        self._payer = payer
        self._clock = clock
        self._rng = rng
        self._acceleration = acceleration
        self._distribution = distribution or PayLaterDistribution()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._customers: dict[int, Customer] = {}
        self._due: list[tuple[float, int]] = []  # heap of (monotonic due time, customer id)
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()

    def schedule(
        self, qr: str, *, amount: Decimal | None = None, currency: Currency | None = None
    ) -> Customer:
        """Check the QR now (PaymentRefused if it cannot be paid) and draw when it will be.

        Call it on the event loop that runs `run` (the control API does): it wakes that loop.
        """
        order = PaymentOrder(qr=qr, amount=amount, currency=currency)
        decoded, _ = self._payer.quote(order)
        with self._lock:
            delay_s = self._distribution.sample_delay_s(self._rng)
            customer = Customer(
                id=next(self._ids),
                order=order,
                md5=decoded.md5,
                scheduled_ms=self._clock.now_ms(),
                delay_s=delay_s,
                state=CustomerState.NEVER if delay_s is None else CustomerState.WAITING,
            )
            self._customers[customer.id] = customer
            if delay_s is not None:
                due = self._monotonic() + delay_s / self._acceleration
                heapq.heappush(self._due, (due, customer.id))
        self._wake.set()
        return customer

    def customers(self) -> list[Customer]:
        with self._lock:
            return list(self._customers.values())

    async def run(self) -> None:
        """Pay customers as they fall due, forever (cancel to stop)."""
        while True:
            for customer in self._pop_due():
                self._settle(customer)
            with self._lock:
                wait_s = self._due[0][0] - self._monotonic() if self._due else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    def _pop_due(self) -> list[Customer]:
        now = self._monotonic()
        due: list[Customer] = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                _, customer_id = heapq.heappop(self._due)
                due.append(self._customers[customer_id])
        return due

    def _settle(self, customer: Customer) -> None:
        try:
            transaction = self._payer.pay(customer.order)
        except PaymentRefused as exc:
            settled = replace(customer, state=CustomerState.REFUSED, refusal=exc.reason)
        else:
            settled = replace(customer, state=CustomerState.PAID, transaction_hash=transaction.hash)
        with self._lock:
            self._customers[customer.id] = settled
