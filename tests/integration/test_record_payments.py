"""The paid answers of a Bakong call recorded together (`record_payments`), on SQLite and
PostgreSQL: a mixed batch ends exactly as the same payments recorded one by one (the completion
function's old shape), and the verifier falls back to one by one when the batch fails."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.model import Action, EvidenceSource, OrderStatus
from khqrpay.services.completion import (
    CompletionResult,
    ReportedPayment,
    record_payment,
    record_payments,
)

if TYPE_CHECKING:
    from conftest import Engine, Shop

WORKER = "worker:test"


@dataclass(frozen=True)
class Scenario:
    """One mixed batch: the payments in the verifier's order, and the names of the orders and
    products (to compare two runs whose ids and hashes differ)."""

    payments: list[ReportedPayment]
    names: dict[str, str]
    scarce_id: int


def _mixed_batch(shop: Shop) -> Scenario:
    """Paid; a wrong amount; paid, taking the last of a scarce product; paid, finding none left;
    one transfer's hash answered for two orders (a conflict inside the batch); an order staff
    completed meanwhile (its payment is attached); the same answer twice for one QR."""
    scarce, plenty = shop.product(stock=2), shop.product(stock=50)
    orders = {
        "paid": shop.order((scarce, 1)),
        "wrong_amount": shop.order((plenty, 1)),
        "last_one": shop.order((scarce, 1)),
        "none_left": shop.order((scarce, 1)),
        "hash_first": shop.order((plenty, 2)),
        "hash_again": shop.order((plenty, 1)),
        "staff_done": shop.order((plenty, 1)),
        "twice": shop.order((plenty, 1)),
    }
    staff = shop.record(orders["staff_done"].order.id, None, source=EvidenceSource.MARK_PAID)
    assert staff.completed
    evidence = {name: shop.evidence(created.payment) for name, created in orders.items()}
    evidence["wrong_amount"] = shop.evidence(orders["wrong_amount"].payment, amount=Decimal("0.50"))
    shared = evidence["hash_first"].bakong_hash
    evidence["hash_again"] = shop.evidence(orders["hash_again"].payment, transfer_hash=shared)
    payments = [
        ReportedPayment(created.order.id, evidence[name], created.payment.id)
        for name, created in orders.items()
    ]
    twice = orders["twice"]
    payments.append(ReportedPayment(twice.order.id, evidence["twice"], twice.payment.id))
    names = {str(created.order.id): name for name, created in orders.items()}
    names |= {e.short_hash: f"hash:{name}" for name, e in evidence.items()}
    names |= {c.payment.md5: f"qr:{name}" for name, c in orders.items()}
    names |= {scarce.sku: "SCARCE", plenty.sku: "PLENTY"}
    return Scenario(payments, names, scarce.id)


def _one_by_one(shop: Shop, payments: Sequence[ReportedPayment]) -> list[CompletionResult]:
    results = []
    for payment in payments:
        with shop.database.write() as uow:
            results.append(
                record_payment(
                    uow,
                    order_id=payment.order_id,
                    evidence=payment.evidence,
                    source=EvidenceSource.VERIFIER,
                    actor=WORKER,
                    now_ms=shop.clock.now_ms(),
                    payment_id=payment.payment_id,
                )
            )
    return results


def _together(shop: Shop, payments: Sequence[ReportedPayment]) -> list[CompletionResult]:
    with shop.database.write() as uow:
        return record_payments(
            uow, payments, source=EvidenceSource.VERIFIER, actor=WORKER, now_ms=shop.clock.now_ms()
        )


def _named(scenario: Scenario) -> Callable[[object], str]:
    """Names for ids (whole values, or `order N` in a text), hashes, QRs and SKUs."""
    texts = sorted((key for key in scenario.names if not key.isdigit()), key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, texts)) + r"|(?<=order )\d+")

    def name(value: object) -> str:
        text = str(value)
        if text in scenario.names:
            return scenario.names[text]
        return pattern.sub(lambda match: scenario.names.get(match.group(0), "?"), text)

    return name


def _outcome(database: Database, scenario: Scenario, results: Sequence[CompletionResult]) -> dict:
    """Everything the batch changed, with ids and hashes replaced by names: the results, each
    order's row, its evidence, audit trail and events, its QRs, and the scarce stock."""
    name = _named(scenario)
    order_ids = sorted({payment.order_id for payment in scenario.payments})
    with database.read() as uow:
        orders = {
            name(order_id): (
                (order := uow.orders.get(order_id)).status,
                name(order.review_reason),
                order.refund_flag,
                name(order.refund_reason),
                order.completed_ms is not None,
                order.paid_manually_without_hash,
            )
            for order_id in order_ids
        }
        evidence = {
            name(order_id): [
                (name(r.evidence.short_hash), r.payment_id is not None, r.matched)
                for r in uow.evidence.for_order(order_id)
            ]
            for order_id in order_ids
        }
        audit = {
            name(order_id): [
                (e.action, e.from_status, e.to_status, name(e.reason), e.actor)
                for e in uow.audit.for_order(order_id)
            ]
            for order_id in order_ids
        }
        outbox = uow.connection.execute(
            sa.select(t.outbox.c.order_id, t.outbox.c.topic, t.outbox.c.payload)
            .where(t.outbox.c.order_id.in_(order_ids))
            .order_by(t.outbox.c.id)
        ).all()
        alerts = uow.connection.execute(
            sa.select(t.telegram_alerts.c.order_id, t.telegram_alerts.c.kind)
            .where(t.telegram_alerts.c.order_id.in_(order_ids))
            .order_by(t.telegram_alerts.c.id)
        ).all()
        qrs = {
            name(order_id): [(p.status, p.next_check_ms) for p in uow.payments.for_order(order_id)]
            for order_id in order_ids
        }
        scarce = uow.products.get(scenario.scarce_id)
    assert scarce is not None
    return {
        "results": [
            (
                name(r.order_id),
                r.action,
                r.previous_status,
                r.status,
                name(r.reason),
                r.evidence_id is not None,
                name(r.other_order_id),
            )
            for r in results
        ],
        "orders": orders,
        "evidence": evidence,
        "audit": audit,
        "events": [
            (name(order_id), topic, {k: name(v) for k, v in payload.items() if k != "at_ms"})
            for order_id, topic, payload in outbox
        ],
        "alerts": [(name(order_id), kind) for order_id, kind in alerts],
        "qrs": qrs,
        "scarce_stock": scarce.stock,
    }


def test_a_mixed_batch_ends_as_the_same_payments_recorded_one_by_one(shop: Shop) -> None:
    alone = _mixed_batch(shop)
    alone_outcome = _outcome(shop.database, alone, _one_by_one(shop, alone.payments))
    together = _mixed_batch(shop)
    together_outcome = _outcome(shop.database, together, _together(shop, together.payments))

    assert together_outcome == alone_outcome
    # And what that is, spelled out (so that both cannot be wrong the same way).
    results = {r[0]: r[1:4] for r in together_outcome["results"][:-1]}
    pending, completed = OrderStatus.PENDING, OrderStatus.COMPLETED
    review = OrderStatus.NEEDS_REVIEW
    assert results == {
        "paid": (Action.COMPLETE, pending, completed),
        "wrong_amount": (Action.NEEDS_REVIEW, pending, review),
        "last_one": (Action.COMPLETE, pending, completed),
        "none_left": (Action.NEEDS_REVIEW, pending, review),
        "hash_first": (Action.COMPLETE, pending, completed),
        "hash_again": (Action.CONFLICT, pending, review),
        "staff_done": (Action.ATTACH_EVIDENCE_ONLY, completed, completed),
        "twice": (Action.COMPLETE, pending, completed),
    }
    assert together_outcome["results"][-1][:4] == (
        "twice",
        Action.ALREADY_RECORDED,
        completed,
        completed,
    )
    assert together_outcome["orders"]["none_left"][1] == (
        "insufficient stock for SCARCE: 1 needed, 0 left"
    )
    # The conflict flags the order holding the hash for a refund, as it is already paid.
    assert together_outcome["orders"]["hash_first"][2] is True
    assert together_outcome["scarce_stock"] == 0
    assert [e[0] for e in together_outcome["evidence"]["hash_again"]] == []
    assert together_outcome["audit"]["hash_first"][-1][0] == "payment_conflict"


async def test_the_verifier_records_a_call_s_answers_together(engine: Engine, shop: Shop) -> None:
    """A call's paid answers take a few statements together, not a dozen each."""
    product = shop.product(stock=100)
    orders = [shop.order((product, 1)) for _ in range(50)]
    for created in orders:
        await engine.pay(created.payment.qr)
    engine.clock.advance(seconds=10)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(engine.database.engine, "before_cursor_execute", count)
    try:
        report = await engine.verifier().run_cycle()
    finally:
        sa.event.remove(engine.database.engine, "before_cursor_execute", count)

    assert report.batch_sizes == (50,)  # one Bakong call
    assert {engine.order(c.order.id).status for c in orders} == {OrderStatus.COMPLETED}
    assert engine.stock(product.id) == 50
    assert engine.count(t.audit_log, t.audit_log.c.action == "completed") == 50
    # The whole cycle (claim, completions, reschedule, attempts): far fewer statements than
    # payments on PostgreSQL (one per payment was a dozen). SQLite does not promise the order of
    # RETURNING rows, so there the events are inserted one by one (calls, not round trips).
    events = [s for s in statements if s.startswith("INSERT INTO outbox")]
    assert len(events) == (1 if engine.database.backend == "postgresql" else 50)
    assert len(statements) - len(events) < 30
