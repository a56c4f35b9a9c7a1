"""Why an order is in review, on SQLite and PostgreSQL: a payment dated before its QR existed never
completes the order, every review reason is kept (the order row shows the latest, the audit trail
keeps them all), and the same payment seen again is never called another one."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.orders.model import (
    Action,
    EvidenceSource,
    Order,
    OrderStatus,
    ReviewNote,
)
from khqrpay.services.checkout import CreatedOrder
from khqrpay.services.completion import CompletionResult
from khqrpay.services.orders import order_details

if TYPE_CHECKING:
    from conftest import Shop

STAFF = EvidenceSource.MARK_PAID
YEAR_2001_MS = int(datetime(2001, 9, 9, tzinfo=UTC).timestamp() * 1000)


def details(database: Database, order_id: int) -> tuple[Order, tuple[ReviewNote, ...]]:
    found = order_details(database, order_id)
    return found.order, found.review_history


def sold_out_order(shop: Shop) -> CreatedOrder:
    """An order of one unit of a product whose last unit went meanwhile."""
    product = shop.product(stock=1)
    created = shop.order((product, 1))
    with shop.database.write() as uow:
        uow.products.take_all_stock(Counter({product.id: 1}), now_ms=shop.clock.now_ms())
    return created


def stock_reason(result: CompletionResult) -> str:
    """The review reason of a completion that found too little stock."""
    assert (result.action, result.status) == (Action.NEEDS_REVIEW, OrderStatus.NEEDS_REVIEW)
    assert result.reason is not None
    assert result.reason.startswith("insufficient stock")
    return result.reason


def test_a_payment_dated_before_its_qr_was_created_goes_to_review_not_completed(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=3)
    created = shop.order((product, 1))
    clock.advance(seconds=20)
    backdated = shop.evidence(created.payment, paid_ms=YEAR_2001_MS)

    result = shop.record(created.order.id, backdated, payment_id=created.payment.id)

    assert (result.action, result.status) == (Action.NEEDS_REVIEW, OrderStatus.NEEDS_REVIEW)
    assert result.reason is not None
    assert "paid at 2001-09-09 00:00:00 UTC, before its QR was created" in result.reason
    order, history = details(database, created.order.id)
    assert (order.status, order.review_reason, order.completed_ms) == (
        OrderStatus.NEEDS_REVIEW,
        result.reason,
        None,
    )
    assert [note.reason for note in history] == [result.reason]
    with database.read() as uow:
        (evidence,) = uow.evidence.for_order(created.order.id)
        untouched = uow.products.get(product.id)
    assert (evidence.matched, evidence.mismatch_reason) == (False, result.reason)
    assert untouched is not None
    assert untouched.stock == 3


def test_a_payment_stamped_a_little_before_its_qr_by_clock_skew_completes(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    skewed = shop.evidence(created.payment, paid_ms=created.payment.created_ms - 60_000)
    result = shop.record(created.order.id, skewed, payment_id=created.payment.id)
    assert result.completed


def test_the_same_payment_seen_again_keeps_the_stock_reason_and_one_history_entry(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = sold_out_order(shop)
    payment = shop.evidence(created.payment)
    reason = stock_reason(shop.record(created.order.id, payment, payment_id=created.payment.id))

    clock.advance(seconds=30)
    for payment_id in (created.payment.id, None):
        again = shop.record(created.order.id, payment, payment_id=payment_id)
        assert again.action is Action.ALREADY_RECORDED

    order, history = details(database, created.order.id)
    assert order.review_reason == reason
    assert [(note.reason, note.actor) for note in history] == [(reason, "worker:test")]


def test_the_payment_staff_vouched_for_found_later_is_not_another_payment(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = sold_out_order(shop)
    reason = stock_reason(shop.record(created.order.id, None, source=STAFF))

    clock.advance(seconds=30)
    found = shop.record(
        created.order.id,
        shop.evidence(created.payment),
        payment_id=created.payment.id,
    )

    assert (found.action, found.status) == (Action.ATTACH_EVIDENCE_ONLY, OrderStatus.NEEDS_REVIEW)
    order, history = details(database, created.order.id)
    assert order.review_reason == reason
    assert [(note.reason, note.actor) for note in history] == [(reason, "staff:sok")]
    with database.read() as uow:
        assert len(uow.evidence.for_order(created.order.id)) == 1


def test_a_conflict_after_an_amount_mismatch_keeps_both_reasons_in_order(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(price="1.50")
    a, b = shop.order((product, 1)), shop.order((product, 1))
    short = shop.record(
        b.order.id,
        shop.evidence(b.payment, amount=b.payment.amount.amount - 1),
        payment_id=b.payment.id,
    )
    assert short.reason is not None
    assert "amount mismatch" in short.reason
    # Staff gave A a transfer that Bakong then reports for B's QR.
    transfer = shop.evidence(b.payment)
    assert shop.record(a.order.id, transfer, source=STAFF).completed
    clock.advance(seconds=45)
    conflict = shop.record(b.order.id, transfer, payment_id=b.payment.id)
    assert conflict.action is Action.CONFLICT

    order, history = details(database, b.order.id)
    assert order.review_reason == conflict.reason
    assert [note.reason for note in history] == [short.reason, conflict.reason]
    assert [note.at_ms for note in history] == [clock.now_ms() - 45_000, clock.now_ms()]
