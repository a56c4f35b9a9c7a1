"""The payer's side: what a banking app does when a customer pays a KHQR."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from decimal import Decimal

from khqrpay.clock import Clock
from khqrpay.khqr import DecodedKHQR, KHQRError, verify
from khqrpay.money import Currency, Money, MoneyError
from khqrpay.simulator.profiles import OFTEN_ABSENT_KEYS, WireShape
from khqrpay.simulator.state import SimulatedTransaction, SimulatorState

MAX_DELAY_S = 365 * 24 * 3600


class PaymentRefused(Exception):
    """The banking app would not make this payment; `reason` says why, for the payer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    """A customer's payment of `qr`. `amount`/`currency` override the QR's (a static QR has no
    amount, so the payer types one); `delay_s` is how long Bakong takes before the transaction can
    be found; `fail` makes the transfer fail (it is still recorded, and checks answer errorCode 3).
    """

    qr: str
    amount: Decimal | None = None
    currency: Currency | None = None
    delay_s: float = 0.0
    fail: bool = False
    description: str | None = None
    from_account_id: str | None = None
    external_ref: str | None = None
    instruction_ref: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= MAX_DELAY_S:
            raise ValueError("delay_s must be between 0 and a year")


class Payer:
    """Checks a QR like a banking app and records the resulting transfer in the state, shaped
    as the profile's service records transfers (`shape`)."""

    def __init__(
        self, state: SimulatorState, clock: Clock, rng: random.Random, shape: WireShape
    ) -> None:
        self._state = state
        self._clock = clock
        self._rng = rng
        self._shape = shape
        self._lock = threading.Lock()

    def inspect(self, qr: str) -> DecodedKHQR:
        """What the payer sees before pressing Pay; refuses what a banking app would not pay."""
        try:
            decoded = verify(qr.strip(), now_ms=self._clock.now_ms())
        except KHQRError as exc:
            raise PaymentRefused(f"this KHQR cannot be paid: {exc}") from exc
        self._state.learn_qr(
            decoded.md5, static=not decoded.dynamic, account_id=decoded.bakong_account_id
        )
        return decoded

    def quote(self, order: PaymentOrder) -> tuple[DecodedKHQR, Money]:
        """The QR checked and the amount that would be paid, or PaymentRefused."""
        decoded = self.inspect(order.qr)
        currency = order.currency or decoded.currency
        amount = order.amount if order.amount is not None else decoded.amount
        if amount is None:
            raise PaymentRefused("this is a static KHQR with no amount: enter the amount")
        try:
            money = Money(amount, currency)
        except MoneyError as exc:
            raise PaymentRefused(f"amount {amount} {currency.value}: {exc}") from exc
        if money.minor == 0:
            raise PaymentRefused("the amount must be more than zero")
        return decoded, money

    def pay(self, order: PaymentOrder) -> SimulatedTransaction:
        decoded, money = self.quote(order)
        now_ms = self._clock.now_ms()
        shape = self._shape
        # Production records whole seconds; the payment is still findable at once.
        created_ms = now_ms - now_ms % 1000 if shape.whole_second_times else now_ms
        with self._lock:
            low, high = shape.ack_delay_ms
            ack_ms = (
                self._rng.randint(low // 1000, high // 1000) * 1000
                if shape.whole_second_times
                else self._rng.randint(low, high)
            )
            instruction_ref = order.instruction_ref or (
                f"{self._rng.randrange(10**16):016d}" if shape.instruction_refs else None
            )
            omitted = self._rng.random() < shape.absent_keys_share
            transaction = SimulatedTransaction(
                hash=f"{self._rng.getrandbits(256):064x}",
                md5=decoded.md5,
                qr=decoded.qr,
                from_account_id=order.from_account_id or self._rng.choice(shape.payer_accounts),
                to_account_id=decoded.bakong_account_id,
                money=money,
                description=order.description,
                external_ref=order.external_ref or f"100FT{self._rng.randrange(10**11):011d}",
                instruction_ref=instruction_ref,
                created_ms=created_ms,
                acknowledged_ms=created_ms + ack_ms,
                visible_from_ms=now_ms + round(order.delay_s * 1000),
                failed=order.fail,
                omitted_keys=OFTEN_ABSENT_KEYS if omitted else frozenset(),
            )
        self._state.record(transaction)
        return transaction
