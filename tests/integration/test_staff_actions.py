"""The staff use cases on both databases: cancel, resolve a review, clear a refund flag; edit,
deactivate and restock products. Each allowed change is audited with the actor and reason and
announced; each refused one changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.events import (
    DomainEvent,
    OrderStatusChanged,
    RefundFlagCleared,
    parse_event,
)
from khqrpay.orders.model import (
    Action,
    AuditEntry,
    Evidence,
    EvidenceSource,
    Order,
    OrderError,
    OrderNotFound,
    OrderStatus,
    Product,
    ProductNotFound,
    StaffAction,
    TransitionRefused,
)
from khqrpay.services.checkout import CreatedOrder
from khqrpay.services.completion import CompletionResult, record_payment
from khqrpay.services.products import (
    add_product,
    adjust_stock,
    set_product_active,
    update_product,
)
from khqrpay.services.staff import (
    InsufficientStock,
    cancel_order,
    clear_refund_flag,
    resolve_review,
)

if TYPE_CHECKING:
    from conftest import Shop

STAFF = "staff:dara"


def _pay(shop: Shop, created: CreatedOrder, evidence: Evidence | None = None) -> CompletionResult:
    """The verifier recording what Bakong said about the order's first QR."""
    with shop.database.write() as uow:
        return record_payment(
            uow,
            order_id=created.order.id,
            evidence=evidence or shop.evidence(created.payment),
            source=EvidenceSource.VERIFIER,
            actor="worker:test",
            now_ms=shop.clock.now_ms(),
            payment_id=created.payment.id,
        )


def _order(database: Database, order_id: int) -> Order:
    with database.read() as uow:
        return uow.orders.get(order_id)


def _audit(database: Database, order_id: int) -> list[AuditEntry]:
    with database.read() as uow:
        return uow.audit.for_order(order_id)


def _events(database: Database, order_id: int) -> list[DomainEvent]:
    with database.read() as uow:
        rows = [e for e in uow.outbox.unpublished(1000) if e.order_id == order_id]
    return [parse_event(row.topic, row.payload) for row in rows]


def _stock(database: Database, sku: str) -> int:
    with database.read() as uow:
        return uow.products.by_skus([sku])[sku].stock


def _rows(database: Database) -> list[Any]:
    """Every table a staff action writes to, whole: orders, products, evidence, audit, outbox."""
    tables = (t.orders, t.products, t.payment_evidence, t.audit_log, t.outbox)
    with database.read() as uow:
        return [
            uow.connection.execute(sa.select(table).order_by(table.c.id)).all() for table in tables
        ]


def _cancelled(shop: Shop, created: CreatedOrder) -> None:
    cancel_order(
        shop.database, created.order.id, actor=STAFF, reason="customer left", clock=shop.clock
    )


def _in_review_after_cancel(
    shop: Shop, *, stock: int, quantity: int
) -> tuple[Product, CreatedOrder]:
    """A product and an order of it that was cancelled, then paid: in review, flagged."""
    product = shop.product(stock=stock)
    created = shop.order((product, quantity))
    _cancelled(shop, created)
    _pay(shop, created)
    return product, created


# -- cancel ---------------------------------------------------------------------------------------


def test_cancelling_a_pending_order_is_audited_and_announced(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=3)
    created = shop.order((product, 2))
    clock.advance(seconds=60)
    result = cancel_order(
        database, created.order.id, actor=STAFF, reason=" customer left ", clock=clock
    )
    assert (result.previous_status, result.order.status) == (
        OrderStatus.PENDING,
        OrderStatus.CANCELLED,
    )
    assert _order(database, created.order.id) == result.order
    last = _audit(database, created.order.id)[-1]
    assert (last.action, last.actor, last.reason, last.from_status, last.to_status, last.at_ms) == (
        "cancelled",
        STAFF,
        "customer left",
        OrderStatus.PENDING,
        OrderStatus.CANCELLED,
        clock.now_ms(),
    )
    assert _events(database, created.order.id)[-1] == OrderStatusChanged(
        order_id=created.order.id,
        at_ms=clock.now_ms(),
        from_status=OrderStatus.PENDING,
        to_status=OrderStatus.CANCELLED,
        reason="customer left",
    )
    assert _stock(database, product.sku) == 3


def test_money_for_a_cancelled_order_goes_to_review_flagged_for_refund(
    shop: Shop, database: Database
) -> None:
    product = shop.product(stock=3)
    created = shop.order((product, 1))
    _cancelled(shop, created)
    result = _pay(shop, created)
    assert (result.action, result.status) == (Action.NEEDS_REVIEW, OrderStatus.NEEDS_REVIEW)
    order = _order(database, created.order.id)
    assert (order.status, order.review_reason) == (
        OrderStatus.NEEDS_REVIEW,
        "paid a cancelled order",
    )
    assert (order.refund_flag, order.refund_reason) == (True, "paid a cancelled order")
    assert _stock(database, product.sku) == 3


def test_only_a_pending_order_can_be_cancelled(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    for status in OrderStatus:
        if status is OrderStatus.PENDING:
            continue
        with database.write() as uow:
            uow.connection.execute(
                t.orders.update()
                .where(t.orders.c.id == created.order.id)
                .values(status=status.value)
            )
        before = _rows(database)
        with pytest.raises(TransitionRefused, match=f"is {status}: only a PENDING order can be"):
            cancel_order(database, created.order.id, actor=STAFF, reason="x", clock=clock)
        assert _rows(database) == before


# Each refused with this message, before anything is written.
BAD_REQUESTS: list[tuple[Callable[[Database, FakeClock, int], object], str]] = [
    (lambda d, c, o: cancel_order(d, o, actor=STAFF, reason="  ", clock=c), "reason"),
    (lambda d, c, o: cancel_order(d, o, actor="staff:", reason="x", clock=c), "actor"),
    (lambda d, c, o: cancel_order(d, o + 99, actor=STAFF, reason="x", clock=c), "not found"),
    (
        lambda d, c, o: resolve_review(
            d, o, resolution=StaffAction.REFUND, actor=STAFF, reason="x", clock=c
        ),
        "needs the refund's reference",
    ),
    (
        lambda d, c, o: resolve_review(
            d,
            o,
            resolution=StaffAction.ACCEPT_PAYMENT,
            refund_reference="FT1",
            actor=STAFF,
            reason="x",
            clock=c,
        ),
        "takes no refund reference",
    ),
    (
        lambda d, c, o: resolve_review(
            d, o, resolution=StaffAction.CANCEL, actor=STAFF, reason="x", clock=c
        ),
        "does not resolve a review",
    ),
    (
        lambda d, c, o: clear_refund_flag(d, o, reference=" ", actor=STAFF, reason="x", clock=c),
        "refund reference",
    ),
]


def test_bad_staff_requests_are_refused_and_change_nothing(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    before = _rows(database)
    for call, message in BAD_REQUESTS:
        with pytest.raises(OrderError, match=message):
            call(database, clock, created.order.id)
    assert _rows(database) == before


def test_an_unknown_order_is_not_found(database: Database, clock: FakeClock) -> None:
    with pytest.raises(OrderNotFound):
        clear_refund_flag(database, 404, reference="FT1", actor=STAFF, reason="x", clock=clock)


# -- resolving a review ---------------------------------------------------------------------------


def test_accepting_a_cancelled_orders_payment_completes_it_and_settles_its_flag(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product, created = _in_review_after_cancel(shop, stock=3, quantity=2)
    clock.advance(seconds=5)
    result = resolve_review(
        database,
        created.order.id,
        resolution=StaffAction.ACCEPT_PAYMENT,
        actor=STAFF,
        reason="customer came back for it",
        clock=clock,
    )
    order = result.order
    assert (result.previous_status, order.status) == (
        OrderStatus.NEEDS_REVIEW,
        OrderStatus.COMPLETED,
    )
    assert (order.refund_flag, order.review_reason, order.completed_ms) == (
        False,
        None,
        clock.now_ms(),
    )
    assert not order.paid_manually_without_hash  # Bakong's evidence is recorded
    assert _stock(database, product.sku) == 1
    completed, cleared = _audit(database, created.order.id)[-2:]
    assert (completed.action, completed.actor, completed.reason, completed.to_status) == (
        "completed",
        STAFF,
        "customer came back for it",
        OrderStatus.COMPLETED,
    )
    assert (cleared.action, cleared.actor, cleared.details["refund_reason"]) == (
        "refund_flag_cleared",
        STAFF,
        "paid a cancelled order",
    )
    changed, flag_cleared = _events(database, created.order.id)[-2:]
    assert isinstance(changed, OrderStatusChanged)
    assert changed.to_status is OrderStatus.COMPLETED
    assert flag_cleared == RefundFlagCleared(
        order_id=created.order.id,
        at_ms=clock.now_ms(),
        reason="customer came back for it",
        reference=None,
    )


def test_accepting_a_payment_without_the_stock_is_refused_and_changes_nothing(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product, created = _in_review_after_cancel(shop, stock=2, quantity=2)
    adjust_stock(database, product.sku, by=-1, reason="one broke", clock=clock, actor=STAFF)
    before = _rows(database)
    with pytest.raises(InsufficientStock, match=rf"insufficient stock for {product.sku}: 2 needed"):
        resolve_review(
            database,
            created.order.id,
            resolution=StaffAction.ACCEPT_PAYMENT,
            actor=STAFF,
            reason="ok",
            clock=clock,
        )
    assert _rows(database) == before
    assert _order(database, created.order.id).status is OrderStatus.NEEDS_REVIEW


def test_refunding_a_review_records_the_reference_and_settles_the_flag(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product, created = _in_review_after_cancel(shop, stock=3, quantity=1)
    result = resolve_review(
        database,
        created.order.id,
        resolution=StaffAction.REFUND,
        refund_reference=" FT24338 ",
        actor=STAFF,
        reason="sent back by ABA",
        clock=clock,
    )
    order = result.order
    assert (order.status, order.refund_flag, order.refund_reference, order.review_reason) == (
        OrderStatus.REFUNDED,
        False,
        "FT24338",
        None,
    )
    last = _audit(database, created.order.id)[-1]
    assert (last.action, last.reason, last.details["refund_reference"]) == (
        "refunded",
        "sent back by ABA",
        "FT24338",
    )
    assert _stock(database, product.sku) == 3
    # A later payment of the refunded order is flagged again, never lost.
    second = _pay(shop, created, shop.evidence(created.payment))
    assert second.action is Action.FLAG_REFUND


@pytest.mark.parametrize("resolution", [StaffAction.ACCEPT_PAYMENT, StaffAction.REFUND])
def test_only_an_order_in_review_can_be_resolved(
    shop: Shop, database: Database, clock: FakeClock, resolution: StaffAction
) -> None:
    created = shop.order((shop.product(), 1))
    _pay(shop, created)
    before = _rows(database)
    reference = "FT1" if resolution is StaffAction.REFUND else None
    with pytest.raises(TransitionRefused, match="is COMPLETED: only a NEEDS_REVIEW order"):
        resolve_review(
            database,
            created.order.id,
            resolution=resolution,
            refund_reference=reference,
            actor=STAFF,
            reason="x",
            clock=clock,
        )
    assert _rows(database) == before


# -- the refund flag ------------------------------------------------------------------------------


def test_clearing_a_refund_flag_records_the_refund_and_keeps_the_status(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    _pay(shop, created)
    assert _pay(shop, created, shop.evidence(created.payment)).action is Action.FLAG_REFUND
    result = clear_refund_flag(
        database,
        created.order.id,
        reference="FT777",
        actor=STAFF,
        reason="second payment sent back",
        clock=clock,
    )
    order = result.order
    assert (order.status, order.refund_flag, order.refund_reference) == (
        OrderStatus.COMPLETED,
        False,
        "FT777",
    )
    assert order.refund_reason is not None  # why it was flagged stays readable
    last = _audit(database, created.order.id)[-1]
    assert (last.action, last.from_status, last.to_status, last.details["refund_reference"]) == (
        "refund_flag_cleared",
        OrderStatus.COMPLETED,
        OrderStatus.COMPLETED,
        "FT777",
    )
    assert _events(database, created.order.id)[-1] == RefundFlagCleared(
        order_id=created.order.id,
        at_ms=clock.now_ms(),
        reason="second payment sent back",
        reference="FT777",
    )
    before = _rows(database)
    with pytest.raises(TransitionRefused, match="has no refund flag to clear"):
        clear_refund_flag(
            database, created.order.id, reference="FT778", actor=STAFF, reason="x", clock=clock
        )
    assert _rows(database) == before


# -- products -------------------------------------------------------------------------------------


def test_a_deactivated_product_cannot_be_ordered_but_its_pending_orders_complete(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=3)
    created = shop.order((product, 2))
    off = set_product_active(database, product.sku, active=False, clock=clock, actor=STAFF)
    assert not off.active
    with pytest.raises(OrderError, match=f"{product.sku} is not for sale"):
        shop.order((product, 1))
    assert _pay(shop, created).completed
    assert _stock(database, product.sku) == 1
    on = set_product_active(
        database, product.sku, active=True, clock=clock, actor=STAFF, reason="back in"
    )
    assert on.active
    assert shop.order((product, 1)).order.status is OrderStatus.PENDING
    with database.read() as uow:
        actions = uow.connection.execute(
            sa.select(t.audit_log.c.action, t.audit_log.c.reason)
            .where(t.audit_log.c.action.like("product_%activated"))
            .order_by(t.audit_log.c.id)
        ).all()
    assert [tuple(row) for row in actions] == [
        ("product_deactivated", None),
        ("product_activated", "back in"),
    ]
    # Already on sale: nothing to write.
    before = _rows(database)
    set_product_active(database, product.sku, active=True, clock=clock, actor=STAFF)
    assert _rows(database) == before


def test_a_new_name_and_price_apply_to_new_orders_only(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(price="1.50")
    before = shop.order((product, 1))
    updated = update_product(
        database, product.sku, name=" Iced  tea ", price="2", clock=clock, actor=STAFF
    )
    assert (updated.name, str(updated.price)) == ("Iced tea", "2.00 USD")
    assert str(before.order.total) == "1.50 USD"
    with database.read() as uow:
        assert [line.name for line in uow.orders.lines(before.order.id)] == ["Test product"]
        [entry] = [e for e in _product_audit(uow.connection) if e[0] == "product_updated"]
    assert entry[1] == {
        "product_id": product.id,
        "sku": product.sku,
        "name": {"from": "Test product", "to": "Iced tea"},
        "price": {"from": "1.50 USD", "to": "2.00 USD"},
    }
    assert str(shop.order((updated, 1)).order.total) == "2.00 USD"
    unchanged = _rows(database)
    update_product(database, product.sku, price="2.00", clock=clock, actor=STAFF)
    assert _rows(database) == unchanged


def test_a_khmer_name_is_kept_by_the_orders_made_with_it(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = add_product(
        database,
        sku="TEA-KM",
        name="Iced tea",
        name_km=" តែ  ទឹកកក ",
        price=Money.parse("1.50", Currency.USD),
        stock=5,
        now_ms=clock.now_ms(),
    )
    assert (product.name, product.name_km) == ("Iced tea", "តែ ទឹកកក")
    before = shop.order((product, 1))
    renamed = update_product(database, product.sku, name_km="តែក្រូចឆ្មា", clock=clock, actor=STAFF)
    assert (renamed.name, renamed.name_km) == ("Iced tea", "តែក្រូចឆ្មា")
    cleared = update_product(database, product.sku, name_km="", clock=clock, actor=STAFF)
    assert cleared.name_km is None
    after = shop.order((cleared, 1))
    with database.read() as uow:
        lines = uow.orders.lines_of([before.order.id, after.order.id])
        audit = [d for action, d in _product_audit(uow.connection) if action == "product_updated"]
    assert [line.name_km for line in lines[before.order.id]] == ["តែ ទឹកកក"]
    assert [line.name_km for line in lines[after.order.id]] == [None]
    assert [entry["name_km"] for entry in audit] == [
        {"from": "តែ ទឹកកក", "to": "តែក្រូចឆ្មា"},
        {"from": "តែក្រូចឆ្មា", "to": None},
    ]
    # Clearing a name already absent writes nothing.
    unchanged = _rows(database)
    update_product(database, product.sku, name_km=" ", clock=clock, actor=STAFF)
    assert _rows(database) == unchanged


def _product_audit(connection: sa.Connection) -> list[tuple[str, Any]]:
    rows = connection.execute(
        sa.select(t.audit_log.c.action, t.audit_log.c.details)
        .where(t.audit_log.c.order_id.is_(None))
        .order_by(t.audit_log.c.id)
    )
    return [(row.action, row.details) for row in rows]


BAD_UPDATES: list[tuple[dict[str, str], type[Exception], str]] = [
    ({}, OrderError, "give a new name, Khmer name or price"),
    ({"price": "1.005"}, ValueError, "USD allows at most 2 decimals"),
    ({"price": "-1"}, ValueError, "not a plain non-negative decimal"),
    ({"name": "   "}, OrderError, "a product name is 1 to 200"),
    ({"name_km": "Iced tea"}, OrderError, "a Khmer name must be written in Khmer script"),
    ({"sku": "NOPE", "name": "x"}, ProductNotFound, "unknown SKU: NOPE"),
]


def test_a_bad_product_update_is_refused_and_changes_nothing(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product()
    before = _rows(database)
    for changes, error, message in BAD_UPDATES:
        given = dict(changes)
        sku = given.pop("sku", product.sku)
        with pytest.raises(error, match=message):
            update_product(database, sku, clock=clock, actor=STAFF, **given)
    assert _rows(database) == before


def test_stock_adjustments_are_audited_and_never_go_below_zero(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=3)
    delivered = adjust_stock(
        database, product.sku, by=5, reason="delivery", clock=clock, actor=STAFF
    )
    assert delivered.stock == 8
    counted = adjust_stock(database, product.sku, by=-8, reason="count", clock=clock, actor=STAFF)
    assert counted.stock == 0
    before = _rows(database)
    with pytest.raises(OrderError, match=f"{product.sku} has 0 in stock: cannot take away 1"):
        adjust_stock(database, product.sku, by=-1, reason="x", clock=clock, actor=STAFF)
    for by, reason in ((0, "x"), (1, " ")):
        with pytest.raises(OrderError):
            adjust_stock(database, product.sku, by=by, reason=reason, clock=clock, actor=STAFF)
    with pytest.raises(ProductNotFound):
        adjust_stock(database, "NOPE", by=1, reason="x", clock=clock, actor=STAFF)
    assert _rows(database) == before
    with database.read() as uow:
        adjusted = [d for a, d in _product_audit(uow.connection) if a == "stock_adjusted"]
    assert [(d["by"], d["stock"]) for d in adjusted] == [(5, 8), (-8, 0)]


ADJUSTERS = 8


def test_concurrent_stock_takeaways_never_oversell(shop: Shop, database_url: str) -> None:
    """Eight staff take one unit each from a stock of five at the same moment: exactly five
    succeed and the stock ends at 0 (a read-modify-write would lose some updates)."""
    product = shop.product(stock=5)
    database = Database.from_url(database_url, pool_size=ADJUSTERS, max_overflow=0)
    start = threading.Barrier(ADJUSTERS)
    outcomes: list[str] = []

    def take() -> None:
        start.wait()
        try:
            adjust_stock(database, product.sku, by=-1, reason="race", clock=shop.clock, actor=STAFF)
            outcomes.append("taken")
        except OrderError:
            outcomes.append("refused")

    threads = [threading.Thread(target=take) for _ in range(ADJUSTERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        database.dispose()
    assert sorted(outcomes) == ["refused"] * 3 + ["taken"] * 5
    assert _stock(shop.database, product.sku) == 0
