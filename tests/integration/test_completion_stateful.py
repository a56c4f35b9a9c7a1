"""A Hypothesis state machine drives checkout, new codes, customers paying QRs (some twice, some
the wrong amount or late), Bakong finding the payments (the verifier and Verify Instantly, on the
QR paid), staff marking orders paid (with the customer's transfer or without) or cancelling them,
transfers recorded on the wrong order, final checks and expiry, on SQLite and PostgreSQL, and
checks the engine's invariants after each step: an order is completed at most once, stock never
goes below zero and is taken exactly for the completed orders, every transfer is recorded once, a
QR is PAID exactly when Bakong's payment of it was recorded, a paid QR's order is never left
PENDING, CANCELLED or EXPIRED (the money moved it on), and no order expires while one of its QRs
is still pending.

Each run of the machine keeps to its own products, orders and transfers, so the runs share one
database per backend (creating a PostgreSQL database per run would take seconds).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.model import (
    Action,
    AttemptOutcome,
    Evidence,
    EvidenceSource,
    LineRequest,
    OrderError,
    OrderStatus,
    PaymentStatus,
    TransitionRefused,
)
from khqrpay.orders.schedule import NextCheck
from khqrpay.services.checkout import create_order, new_qr_for_order
from khqrpay.services.completion import record_payment
from khqrpay.services.expiry import expire_order_if_unpaid
from khqrpay.services.products import add_product
from khqrpay.services.staff import cancel_order
from khqrpay.settings import Settings

INITIAL_STOCK = {"A": 3, "B": 2}
PRICES = {"A": 150, "B": 275}
UNPAID_STATUSES = {
    s.value for s in (OrderStatus.PENDING, OrderStatus.CANCELLED, OrderStatus.EXPIRED)
}
AUTOMATIC = st.sampled_from([EvidenceSource.VERIFIER, EvidenceSource.VERIFY_INSTANTLY])
_machine_numbers = itertools.count(1)
_transfer_numbers = itertools.count(1)


@dataclass(frozen=True)
class Transfer:
    """A customer's Bakong transfer: the order it paid, what Bakong shows, the QR (if detected
    through one)."""

    order_id: int
    evidence: Evidence
    payment_id: int | None


class CompletionMachine(RuleBasedStateMachine):
    database: Database

    orders = Bundle("orders")
    transfers = Bundle("transfers")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.settings = Settings(_env_file=None, merchant_account="shop@devb")  # type: ignore[call-arg]
        machine = next(_machine_numbers)
        self.skus = {name: f"M{machine}-{name}" for name in INITIAL_STOCK}
        self.restocked: Counter[str] = Counter()
        self.quantities: dict[int, tuple[str, int]] = {}
        self.qrs: dict[int, list[int]] = {}
        # Every transfer a customer made: its hash and the order it is recorded for.
        self.made: dict[str, int] = {}
        # The QRs whose payment Bakong showed and the engine recorded.
        self.paid_qrs: set[int] = set()
        for name, stock in INITIAL_STOCK.items():
            add_product(
                self.database,
                sku=self.skus[name],
                name=name,
                price=Money.from_minor(PRICES[name], Currency.USD),
                stock=stock,
                now_ms=self.clock.now_ms(),
            )

    def _record(
        self, order_id: int, evidence: Evidence | None, source: EvidenceSource, qr: int | None
    ) -> Action:
        staff = source is EvidenceSource.MARK_PAID
        with self.database.write() as uow:
            action = record_payment(
                uow,
                order_id=order_id,
                evidence=evidence,
                source=source,
                actor="staff:test" if staff else "worker:test",
                reason="test" if staff else None,
                now_ms=self.clock.now_ms(),
                payment_id=qr,
            ).action
        if qr is not None and action is not Action.REFUSED:
            self.paid_qrs.add(qr)
        return action

    def _pending_qrs(self, order_id: int) -> list[int]:
        with self.database.read() as uow:
            payments = uow.payments.for_order(order_id)
        return [p.id for p in payments if p.status is PaymentStatus.PENDING]

    def _transfer(self, order_id: int, *, exact: bool = True, late: bool = False) -> Evidence:
        name, quantity = self.quantities[order_id]
        with self.database.read() as uow:
            window_end_ms = uow.orders.get(order_id).window_end_ms
        return Evidence(
            bakong_hash=f"{next(_transfer_numbers):064x}",
            from_account="payer@aba",
            to_account="shop@devb",
            amount=Money.from_minor(
                PRICES[name] * quantity - (0 if exact else 1), Currency.USD
            ).amount,
            currency="USD",
            paid_ms=window_end_ms + 1 if late else self.clock.now_ms(),
        )

    # -- customers ---------------------------------------------------------------------------

    @rule(target=orders, name=st.sampled_from(sorted(INITIAL_STOCK)), quantity=st.integers(1, 2))
    def checkout(self, name: str, quantity: int) -> object:
        try:
            created = create_order(
                self.database,
                lines=[LineRequest(self.skus[name], quantity)],
                phone=None,
                settings=self.settings,
                clock=self.clock,
            )
        except OrderError:  # the courtesy stock check
            return multiple()
        self.quantities[created.order.id] = (name, quantity)
        self.qrs[created.order.id] = [created.payment.id]
        return created.order.id

    @rule(order_id=orders)
    def customer_asks_for_a_new_code(self, order_id: int) -> None:
        try:
            payment = new_qr_for_order(
                self.database, order_id=order_id, settings=self.settings, clock=self.clock
            )
        except OrderError:
            return  # not pending any more, the window has ended, or enough codes already
        self.qrs[order_id].append(payment.id)

    @rule(
        target=transfers,
        order_id=orders,
        which=st.integers(0, 9),
        mistake=st.sampled_from([None, None, "amount", "late"]),
        source=AUTOMATIC,
    )
    def customer_pays_a_qr_and_bakong_shows_it(
        self, order_id: int, which: int, mistake: str | None, source: EvidenceSource
    ) -> object:
        """Paying one of the order's pending QRs (a second one too: two QRs paid); the verifier
        or Verify Instantly finds it on that QR."""
        pending = self._pending_qrs(order_id)
        if not pending:
            return multiple()  # every code expired or paid: nothing checks them any more
        qr = pending[which % len(pending)]
        evidence = self._transfer(order_id, exact=mistake != "amount", late=mistake == "late")
        self.made[evidence.bakong_hash] = order_id
        self._record(order_id, evidence, source, qr)
        return Transfer(order_id, evidence, qr)

    # -- staff -------------------------------------------------------------------------------

    @rule(target=transfers, order_id=orders)
    def staff_mark_paid_with_the_customers_transfer(self, order_id: int) -> Transfer:
        """The customer shows a receipt of a transfer Bakong has not been asked about yet."""
        evidence = self._transfer(order_id)
        assert (
            self._record(order_id, evidence, EvidenceSource.MARK_PAID, None) is not Action.REFUSED
        )
        self.made[evidence.bakong_hash] = order_id
        return Transfer(order_id, evidence, None)

    @rule(order_id=orders)
    def staff_mark_paid_without_a_hash(self, order_id: int) -> None:
        self._record(order_id, None, EvidenceSource.MARK_PAID, None)

    @rule(order_id=orders)
    def staff_cancel(self, order_id: int) -> None:
        """Its QRs keep being checked: a payment found later sends it to review."""
        with contextlib.suppress(TransitionRefused):  # only a PENDING order is cancelled
            cancel_order(
                self.database,
                order_id,
                actor="staff:test",
                reason="the customer asked",
                clock=self.clock,
            )

    @rule(transfer=transfers, source=st.sampled_from(EvidenceSource))
    def the_same_transfer_is_found_again(self, transfer: Transfer, source: EvidenceSource) -> None:
        """Bakong shows it again (on the QR paid, or on a pending QR if staff recorded it), or
        staff submit it again."""
        qr = transfer.payment_id
        if source is EvidenceSource.MARK_PAID:
            qr = None
        elif qr is None:
            pending = self._pending_qrs(transfer.order_id)
            qr = pending[0] if pending else None
        assert self._record(transfer.order_id, transfer.evidence, source, qr) in (
            Action.ALREADY_RECORDED,
            # Only staff re-submitting the recorded payment of an order in review completes it.
            Action.COMPLETE,
            Action.NEEDS_REVIEW,
        )

    @rule(paid_for=orders, recorded_for=orders, source=AUTOMATIC)
    def staff_record_a_transfer_on_the_wrong_order_then_bakong_finds_it(
        self, paid_for: int, recorded_for: int, source: EvidenceSource
    ) -> None:
        assume(paid_for != recorded_for)
        pending = self._pending_qrs(paid_for)
        assume(pending)
        evidence = self._transfer(paid_for)
        recorded = self._record(recorded_for, evidence, EvidenceSource.MARK_PAID, None)
        assert recorded is not Action.REFUSED
        self.made[evidence.bakong_hash] = recorded_for
        # Bakong's word is never refused: both orders are flagged, the first time only.
        assert self._record(paid_for, evidence, source, pending[0]) is Action.CONFLICT
        assert self._record(paid_for, evidence, source, pending[0]) is Action.ALREADY_RECORDED

    # -- the worker's final checks and expiry ---------------------------------------------------

    @rule(order_id=orders, which=st.integers(0, 9))
    def a_qrs_final_check_finds_nothing(self, order_id: int, which: int) -> None:
        """One pending QR had its final check, not paid; then the worker's expiry, which must
        leave the order alone while another of its QRs is pending."""
        pending = self._pending_qrs(order_id)
        if not pending:
            return
        with self.database.write() as uow:
            assert uow.payments.record_check(
                pending[which % len(pending)],
                checked_ms=self.clock.now_ms(),
                outcome=AttemptOutcome.NOT_FOUND,
                next_check=NextCheck(None, None, 0),
                lease_owner=None,
            )
        with self.database.write() as uow:
            expire_order_if_unpaid(uow, order_id, actor="worker:test", now_ms=self.clock.now_ms())

    @rule(name=st.sampled_from(sorted(INITIAL_STOCK)))
    def restock(self, name: str) -> None:
        with self.database.write() as uow:
            uow.connection.execute(
                t.products.update()
                .where(t.products.c.sku == self.skus[name])
                .values(stock=t.products.c.stock + 1)
            )
        self.restocked[name] += 1

    @rule(seconds=st.integers(1, 3600))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def the_engine_keeps_its_invariants(self) -> None:
        rows = _rows_of(self.database, list(self.quantities), list(self.skus.values()))
        statuses = {row.id: row.status for row in rows.orders}
        completed = {order_id for order_id, status in statuses.items() if status == "COMPLETED"}

        # Completed at most once, and exactly the COMPLETED orders.
        completions = Counter(row.order_id for row in rows.audit if row.action == "completed")
        assert all(n == 1 for n in completions.values()), completions
        assert completed == set(completions)

        # Stock never below zero, and taken exactly for the completed orders.
        taken: Counter[str] = Counter()
        for order_id in completed:
            name, quantity = self.quantities[order_id]
            taken[name] += quantity
        for row in rows.products:
            assert row.stock >= 0
            assert row.stock == INITIAL_STOCK[row.name] + self.restocked[row.name] - taken[row.name]

        # Every transfer recorded once, for the order it was recorded for.
        recorded = {row.bakong_hash: row.order_id for row in rows.evidence}
        assert recorded == self.made

        # A QR is PAID exactly when Bakong's payment of it was recorded, and its order has moved
        # on; no order expired while one of its QRs is still pending.
        assert {row.id for row in rows.qrs if row.status == "PAID"} == self.paid_qrs
        for row in rows.qrs:
            if row.status == PaymentStatus.PAID.value:
                assert statuses[row.order_id] not in UNPAID_STATUSES, row
            if row.status == PaymentStatus.PENDING.value:
                assert statuses[row.order_id] != OrderStatus.EXPIRED.value, row

        # Orders in review have their money recorded: a transfer, staff's word without a hash,
        # or a conflict (the transfer is recorded for another order; this order's audit says so).
        conflicts = {row.order_id for row in rows.audit if row.action == "payment_conflict"}
        for row in rows.orders:
            if row.status == OrderStatus.NEEDS_REVIEW.value:
                money = row.id in recorded.values() or row.paid_manually_without_hash
                assert money or row.id in conflicts, row


@dataclass(frozen=True)
class _Rows:
    orders: list[sa.Row[tuple[int, str, bool]]]
    audit: list[sa.Row[tuple[int, str]]]
    products: list[sa.Row[tuple[str, int]]]
    evidence: list[sa.Row[tuple[str, int]]]
    qrs: list[sa.Row[tuple[int, int, str]]]


def _rows_of(database: Database, order_ids: list[int], skus: list[str]) -> _Rows:
    """One machine's rows, read in one transaction."""
    orders, audit, products = t.orders.c, t.audit_log.c, t.products.c
    evidence, payments = t.payment_evidence.c, t.khqr_payments.c
    with database.read() as uow:
        run = uow.connection.execute
        return _Rows(
            orders=list(
                run(
                    sa.select(orders.id, orders.status, orders.paid_manually_without_hash).where(
                        orders.id.in_(order_ids)
                    )
                )
            ),
            audit=list(
                run(sa.select(audit.order_id, audit.action).where(audit.order_id.in_(order_ids)))
            ),
            products=list(
                run(sa.select(products.name, products.stock).where(products.sku.in_(skus)))
            ),
            evidence=list(
                run(
                    sa.select(evidence.bakong_hash, evidence.order_id).where(
                        evidence.order_id.in_(order_ids)
                    )
                )
            ),
            qrs=list(
                run(
                    sa.select(payments.id, payments.order_id, payments.status).where(
                        payments.order_id.in_(order_ids)
                    )
                )
            ),
        )


def test_the_engine_keeps_its_invariants(database: Database) -> None:
    CompletionMachine.database = database
    run_state_machine_as_test(
        CompletionMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
