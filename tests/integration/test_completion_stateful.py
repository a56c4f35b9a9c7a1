"""A Hypothesis state machine drives checkout and every completion path against SQLite and checks
the engine's invariants after each step: an order is completed at most once, stock never goes
below zero and is taken exactly for the completed orders, and every transfer is recorded once."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections import Counter
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
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
    Evidence,
    EvidenceSource,
    LineRequest,
    OrderError,
    OrderStatus,
)
from khqrpay.services.checkout import create_order, new_qr_for_order
from khqrpay.services.completion import record_payment
from khqrpay.services.products import add_product
from khqrpay.settings import Settings

INITIAL_STOCK = {"A": 3, "B": 2}
PRICES = {"A": 150, "B": 275}


class CompletionMachine(RuleBasedStateMachine):
    template: Path

    orders = Bundle("orders")
    transfers = Bundle("transfers")

    def __init__(self) -> None:
        super().__init__()
        self._folder = tempfile.TemporaryDirectory()
        path = Path(self._folder.name) / "machine.sqlite3"
        with (
            closing(sqlite3.connect(self.template)) as template,
            closing(sqlite3.connect(path)) as copy,
        ):
            template.backup(copy)
        self.database = Database.from_url(f"sqlite:///{path}")
        self.clock = FakeClock()
        self.settings = Settings(_env_file=None, merchant_account="shop@devb")  # type: ignore[call-arg]
        self.restocked: Counter[str] = Counter()
        self.quantities: dict[int, tuple[str, int]] = {}
        # Every transfer a customer made: its hash and the order it paid.
        self.made: dict[str, int] = {}
        self.transfer_numbers = iter(range(1, 1_000_000))
        for sku, stock in INITIAL_STOCK.items():
            add_product(
                self.database,
                sku=sku,
                name=sku,
                price=Money.from_minor(PRICES[sku], Currency.USD),
                stock=stock,
                now_ms=self.clock.now_ms(),
            )

    def teardown(self) -> None:
        self.database.dispose()
        self._folder.cleanup()

    def _record(self, order_id: int, evidence: Evidence | None, source: EvidenceSource) -> Action:
        with self.database.write() as uow:
            return record_payment(
                uow,
                order_id=order_id,
                evidence=evidence,
                source=source,
                actor="staff:test" if source is EvidenceSource.MARK_PAID else "worker:test",
                reason="test" if source is EvidenceSource.MARK_PAID else None,
                now_ms=self.clock.now_ms(),
            ).action

    @rule(target=orders, sku=st.sampled_from(sorted(INITIAL_STOCK)), quantity=st.integers(1, 2))
    def checkout(self, sku: str, quantity: int) -> object:
        try:
            created = create_order(
                self.database,
                lines=[LineRequest(sku, quantity)],
                phone=None,
                settings=self.settings,
                clock=self.clock,
            )
        except OrderError:  # the courtesy stock check
            return multiple()
        self.quantities[created.order.id] = (sku, quantity)
        return created.order.id

    @rule(order_id=orders)
    def customer_asks_for_a_new_code(self, order_id: int) -> None:
        # Refused when the order is not pending any more, or has enough codes already.
        with contextlib.suppress(OrderError):
            new_qr_for_order(
                self.database, order_id=order_id, settings=self.settings, clock=self.clock
            )

    @rule(
        target=transfers,
        order_id=orders,
        exact=st.booleans(),
        late=st.booleans(),
        source=st.sampled_from([EvidenceSource.VERIFIER, EvidenceSource.VERIFY_INSTANTLY]),
    )
    def customer_pays_and_it_is_detected(
        self, order_id: int, exact: bool, late: bool, source: EvidenceSource
    ) -> tuple[int, Evidence]:
        sku, quantity = self.quantities[order_id]
        with self.database.read() as uow:
            window_end_ms = uow.orders.get(order_id).window_end_ms
        evidence = Evidence(
            bakong_hash=f"{next(self.transfer_numbers):064x}",
            from_account="payer@aba",
            to_account="shop@devb",
            amount=Money.from_minor(
                PRICES[sku] * quantity - (0 if exact else 1), Currency.USD
            ).amount,
            currency="USD",
            paid_ms=window_end_ms + 1 if late else self.clock.now_ms(),
        )
        self.made[evidence.bakong_hash] = order_id
        self._record(order_id, evidence, source)
        return order_id, evidence

    @rule(
        paid_for=orders,
        recorded_for=orders,
        source=st.sampled_from([EvidenceSource.VERIFIER, EvidenceSource.VERIFY_INSTANTLY]),
    )
    def staff_record_a_transfer_on_the_wrong_order_then_bakong_finds_it(
        self, paid_for: int, recorded_for: int, source: EvidenceSource
    ) -> None:
        assume(paid_for != recorded_for)
        sku, quantity = self.quantities[paid_for]
        evidence = Evidence(
            bakong_hash=f"{next(self.transfer_numbers):064x}",
            from_account="payer@aba",
            to_account="shop@devb",
            amount=Money.from_minor(PRICES[sku] * quantity, Currency.USD).amount,
            currency="USD",
            paid_ms=self.clock.now_ms(),
        )
        assert self._record(recorded_for, evidence, EvidenceSource.MARK_PAID) is not Action.REFUSED
        self.made[evidence.bakong_hash] = recorded_for
        # Bakong's word is never refused: both orders are flagged, the first time only.
        assert self._record(paid_for, evidence, source) is Action.CONFLICT
        assert self._record(paid_for, evidence, source) is Action.ALREADY_RECORDED

    @rule(transfer=transfers, source=st.sampled_from(EvidenceSource))
    def the_same_transfer_is_found_again(
        self, transfer: tuple[int, Evidence], source: EvidenceSource
    ) -> None:
        order_id, evidence = transfer
        assert self._record(order_id, evidence, source) in (
            Action.ALREADY_RECORDED,
            # Only staff re-submitting the recorded payment of an order in review completes it.
            Action.COMPLETE,
            Action.NEEDS_REVIEW,
        )

    @rule(order_id=orders)
    def staff_mark_paid_without_a_hash(self, order_id: int) -> None:
        self._record(order_id, None, EvidenceSource.MARK_PAID)

    @rule(order_id=consumes(orders))
    def the_window_ends_unpaid(self, order_id: int) -> None:
        with self.database.write() as uow:
            uow.orders.transition(
                order_id,
                expected=OrderStatus.PENDING,
                target=OrderStatus.EXPIRED,
                now_ms=self.clock.now_ms(),
            )

    @rule(sku=st.sampled_from(sorted(INITIAL_STOCK)))
    def restock(self, sku: str) -> None:
        with self.database.write() as uow:
            uow.connection.execute(
                t.products.update()
                .where(t.products.c.sku == sku)
                .values(stock=t.products.c.stock + 1)
            )
        self.restocked[sku] += 1

    @rule(seconds=st.integers(1, 3600))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    def _rows(self, query: sa.Select[tuple[object, ...]]) -> list[sa.Row[tuple[object, ...]]]:
        with self.database.read() as uow:
            return list(uow.connection.execute(query))

    @invariant()
    def every_order_is_completed_at_most_once(self) -> None:
        completions = Counter(
            row.order_id
            for row in self._rows(
                sa.select(t.audit_log.c.order_id).where(t.audit_log.c.action == "completed")
            )
        )
        assert all(n == 1 for n in completions.values()), completions
        completed = {
            row.id
            for row in self._rows(sa.select(t.orders.c.id).where(t.orders.c.status == "COMPLETED"))
        }
        assert completed == set(completions)

    @invariant()
    def stock_is_never_negative_and_taken_exactly_for_completed_orders(self) -> None:
        completed = {
            row.id
            for row in self._rows(sa.select(t.orders.c.id).where(t.orders.c.status == "COMPLETED"))
        }
        taken: Counter[str] = Counter()
        for order_id in completed:
            sku, quantity = self.quantities[order_id]
            taken[sku] += quantity
        for row in self._rows(sa.select(t.products.c.sku, t.products.c.stock)):
            assert row.stock >= 0
            assert row.stock == INITIAL_STOCK[row.sku] + self.restocked[row.sku] - taken[row.sku]

    @invariant()
    def every_transfer_is_recorded_once_for_its_order(self) -> None:
        recorded = {
            row.bakong_hash: row.order_id
            for row in self._rows(
                sa.select(t.payment_evidence.c.bakong_hash, t.payment_evidence.c.order_id)
            )
        }
        assert recorded == self.made

    @invariant()
    def orders_in_review_have_their_money_recorded(self) -> None:
        # Staff vouching for a payment without a hash is the record when no transfer is known
        # (e.g. marked paid, then short of stock); a transfer recorded for another order is
        # recorded there, and the conflict is in this order's audit trail.
        conflicts = {
            row.order_id
            for row in self._rows(
                sa.select(t.audit_log.c.order_id).where(t.audit_log.c.action == "payment_conflict")
            )
        }
        reviewed = self._rows(
            sa.select(
                t.orders.c.id,
                t.orders.c.paid_manually_without_hash,
                sa.func.count(t.payment_evidence.c.id).label("evidence"),
            )
            .outerjoin(t.payment_evidence, t.payment_evidence.c.order_id == t.orders.c.id)
            .where(t.orders.c.status == "NEEDS_REVIEW")
            .group_by(t.orders.c.id, t.orders.c.paid_manually_without_hash)
        )
        assert all(
            row.evidence >= 1 or row.paid_manually_without_hash or row.id in conflicts
            for row in reviewed
        )


def test_the_engine_keeps_its_invariants(sqlite_template: Path) -> None:
    CompletionMachine.template = sqlite_template
    run_state_machine_as_test(
        CompletionMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
