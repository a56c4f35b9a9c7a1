"""The KHQR codes issued for orders and the verifier's schedule: `khqr_payments`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from khqrpay.db import tables as t
from khqrpay.db.repositories._shared import money
from khqrpay.money import Money
from khqrpay.orders.model import AttemptOutcome, KhqrPayment, PaymentStatus
from khqrpay.orders.schedule import MD5_LIST_LIMIT, NextCheck, Watch, ride_along_slots


class PaymentRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _payment(row: Row[Any]) -> KhqrPayment:
        return KhqrPayment(
            id=row.id,
            order_id=row.order_id,
            qr=row.qr,
            md5=row.md5,
            amount=money(row.amount_minor, row.currency),
            to_account=row.to_account,
            created_ms=row.created_ms,
            expires_ms=row.expires_ms,
            status=PaymentStatus(row.status),
            next_check_ms=row.next_check_ms,
            earliest_check_ms=row.earliest_check_ms,
            hot_until_ms=row.hot_until_ms,
            consecutive_errors=row.consecutive_errors,
            lease_owner=row.lease_owner,
            lease_until_ms=row.lease_until_ms,
            check_count=row.check_count,
            last_checked_ms=row.last_checked_ms,
            last_outcome=None if row.last_outcome is None else AttemptOutcome(row.last_outcome),
        )

    def add(
        self,
        *,
        order_id: int,
        qr: str,
        md5: str,
        amount: Money,
        to_account: str,
        created_ms: int,
        expires_ms: int,
        next_check_ms: int,
        earliest_check_ms: int,
    ) -> KhqrPayment:
        row = self._connection.execute(
            t.khqr_payments.insert()
            .values(
                order_id=order_id,
                qr=qr,
                md5=md5,
                amount_minor=amount.minor,
                currency=amount.currency.value,
                to_account=to_account,
                created_ms=created_ms,
                expires_ms=expires_ms,
                status=PaymentStatus.PENDING.value,
                next_check_ms=next_check_ms,
                earliest_check_ms=earliest_check_ms,
            )
            .returning(t.khqr_payments)
        ).one()
        return self._payment(row)

    def get(self, payment_id: int) -> KhqrPayment | None:
        row = self._connection.execute(
            sa.select(t.khqr_payments).where(t.khqr_payments.c.id == payment_id)
        ).one_or_none()
        return None if row is None else self._payment(row)

    def for_order(self, order_id: int) -> list[KhqrPayment]:
        return self.for_orders([order_id]).get(order_id, [])

    def for_orders(self, order_ids: Iterable[int]) -> dict[int, list[KhqrPayment]]:
        """The QRs of several orders (one query), oldest first, by order id; an order without
        any is left out."""
        rows = self._connection.execute(
            sa.select(t.khqr_payments)
            .where(t.khqr_payments.c.order_id.in_(sorted(set(order_ids))))
            .order_by(t.khqr_payments.c.id)
        )
        payments: dict[int, list[KhqrPayment]] = {}
        for row in rows:
            payments.setdefault(row.order_id, []).append(self._payment(row))
        return payments

    def mark_paid(self, payment_id: int, *, now_ms: int) -> None:
        """The QR was paid: no more checks, lease released."""
        self.mark_all_paid([payment_id], now_ms=now_ms)

    def mark_all_paid(self, payment_ids: Iterable[int], *, now_ms: int) -> None:
        """`mark_paid` for several QRs in one statement."""
        self._connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.id.in_(sorted(set(payment_ids))))
            .values(
                status=PaymentStatus.PAID.value,
                next_check_ms=None,
                earliest_check_ms=None,
                lease_owner=None,
                lease_until_ms=None,
                last_checked_ms=now_ms,
                last_outcome=AttemptOutcome.PAID.value,
            )
        )

    # The verifier ----------------------------------------------------------------------------

    def lock_due(
        self,
        *,
        now_ms: int,
        limit: int,
        ride_along_after_ms: int | None,
        fresh_since_ms: int | None = None,
        per_call: int = MD5_LIST_LIMIT,
        sweep: bool = False,
    ) -> list[KhqrPayment]:
        """The payments to check now, locked until the transaction ends: due ones (at most
        `limit`) in tiers, first those a customer is watching (hot), then those created after
        `fresh_since_ms` (None: no such tier), each the earliest due first, then the rest, the
        most overdue first; so when the budget or `limit` cannot take every due QR, a fresh
        payment is never stuck behind the backlog. Then as many as the calls those need can
        carry, `per_call` a call (`ride_along_slots`; with `sweep`, a whole call even when none
        is due), ranked as `plan_batches` ranks them: the early ones (past their earliest check)
        the soonest due first, then ride-alongs last checked at least `ride_along_after_ms` ago
        (None: none), the longest ago first. Payments
        a live lease holds are left out; on PostgreSQL so are rows another transaction has locked
        (`FOR UPDATE SKIP LOCKED`), so concurrent workers never claim the same ones."""
        payments = t.khqr_payments.c
        # The first tiers read the few rows of the hot and the fresh index, one query each; `+ 0`
        # keeps both databases off the due index, which would walk the whole backlog instead.
        tiers = [payments.hot_until_ms > now_ms]
        if fresh_since_ms is not None:
            tiers.append(payments.created_ms > fresh_since_ms)
        first: list[KhqrPayment] = []
        for tier in tiers:
            first += self._lock_pending(
                payments.next_check_ms + 0 <= now_ms,
                tier,
                payments.id.not_in([payment.id for payment in first]),
                order_by=payments.next_check_ms + 0,
                now_ms=now_ms,
                limit=limit - len(first),
            )
        rest = self._lock_pending(
            payments.next_check_ms <= now_ms,
            payments.id.not_in([payment.id for payment in first]),
            order_by=payments.next_check_ms,
            now_ms=now_ms,
            limit=limit - len(first),
        )
        due = [*first, *rest]
        slots = ride_along_slots(len(due), sweep=sweep, max_per_call=per_call)
        early = self._lock_pending(
            payments.earliest_check_ms <= now_ms,
            payments.next_check_ms > now_ms,
            order_by=payments.next_check_ms,
            now_ms=now_ms,
            limit=slots,
        )
        if ride_along_after_ms is None:
            return [*due, *early]
        riders = self._lock_pending(
            payments.earliest_check_ms > now_ms,
            payments.last_checked_ms <= now_ms - ride_along_after_ms,
            order_by=payments.last_checked_ms,
            now_ms=now_ms,
            limit=slots - len(early),
        )
        return [*due, *early, *riders]

    def oldest_pending_check_ms(self, *, now_ms: int) -> int | None:
        """When the longest-unchecked pending QR that no live lease holds was last checked
        (None: none was ever checked): whether a sweep is due (`SchedulePolicy.sweep_due`). The
        first row of the pending last-checked index, not a scan."""
        payments = t.khqr_payments.c
        return self._connection.execute(
            sa.select(payments.last_checked_ms)
            .where(
                payments.status == PaymentStatus.PENDING.value,
                payments.last_checked_ms.is_not(None),
                sa.or_(payments.lease_until_ms.is_(None), payments.lease_until_ms <= now_ms),
            )
            .order_by(payments.last_checked_ms)
            .limit(1)
        ).scalar_one_or_none()

    def _lock_pending(
        self,
        *conditions: sa.ColumnElement[bool],
        order_by: sa.ColumnElement[Any],
        now_ms: int,
        limit: int,
    ) -> list[KhqrPayment]:
        """Up to `limit` pending payments meeting `conditions` that no live lease holds, in
        `order_by` order, locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL)."""
        if limit <= 0:
            return []
        payments = t.khqr_payments.c
        rows = self._connection.execute(
            sa.select(t.khqr_payments)
            .where(
                payments.status == PaymentStatus.PENDING.value,
                *conditions,
                sa.or_(payments.lease_until_ms.is_(None), payments.lease_until_ms <= now_ms),
            )
            .order_by(order_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [self._payment(row) for row in rows]

    def lease(self, payment_ids: Iterable[int], *, owner: str, until_ms: int) -> None:
        """Lease payments to one worker; a lease ends by itself, so a killed worker loses none."""
        self._connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.id.in_(list(payment_ids)))
            .values(lease_owner=owner, lease_until_ms=until_ms)
        )

    def release_leases(self, payment_ids: Iterable[int], *, owner: str) -> None:
        """Give back the leases `owner` still holds on these payments."""
        payments = t.khqr_payments.c
        self._connection.execute(
            t.khqr_payments.update()
            .where(payments.id.in_(list(payment_ids)), payments.lease_owner == owner)
            .values(lease_owner=None, lease_until_ms=None)
        )

    def record_check(
        self,
        payment_id: int,
        *,
        checked_ms: int,
        outcome: AttemptOutcome,
        next_check: NextCheck | None,
        lease_owner: str | None,
    ) -> bool:
        """Count one check of a still-pending QR and move its schedule to `next_check` (None:
        leave the schedule as it is); after its final check the QR expires. With `lease_owner`,
        only while that worker holds the lease, which is then released (a worker whose lease ran
        out leaves the payment to the one that took it over). Whether the QR was updated."""
        update, columns = self._check_update(
            payment_id, outcome.value, checked_ms=checked_ms, lease_owner=lease_owner
        )
        if next_check is not None:
            columns |= {
                "next_check_ms": next_check.next_check_ms,
                "earliest_check_ms": next_check.earliest_check_ms,
                "consecutive_errors": next_check.consecutive_errors,
            }
            if next_check.final:
                columns["status"] = PaymentStatus.EXPIRED.value
        return self._connection.execute(update.values(**columns)).rowcount == 1

    @staticmethod
    def _check_update(
        payment_id: object, outcome: object, *, checked_ms: int, lease_owner: str | None
    ) -> tuple[sa.Update, dict[str, object]]:
        """The update counting one check of a still-pending QR (its id and outcome: values or
        bind parameters) and its columns. With `lease_owner`, only while that worker holds the
        lease, which is then released."""
        payments = t.khqr_payments.c
        conditions = [payments.id == payment_id, payments.status == PaymentStatus.PENDING.value]
        columns: dict[str, object] = {
            "check_count": payments.check_count + 1,
            "last_checked_ms": checked_ms,
            "last_outcome": outcome,
        }
        if lease_owner is not None:
            conditions.append(payments.lease_owner == lease_owner)
            columns |= {"lease_owner": None, "lease_until_ms": None}
        return t.khqr_payments.update().where(*conditions), columns

    def record_checks(
        self,
        checks: Sequence[tuple[int, AttemptOutcome, NextCheck | None]],
        *,
        checked_ms: int,
        lease_owner: str | None,
    ) -> set[int]:
        """`record_check` for many QRs (payment id, outcome, next check) in set-based statements:
        one executemany for those whose schedule stays, one for those rescheduled; a final check
        (the QR expires: rare) one by one, as whether it happened must be known. The ids of the
        QRs that expired."""
        update, columns = self._check_update(
            sa.bindparam("b_id"),
            sa.bindparam("b_outcome"),
            checked_ms=checked_ms,
            lease_owner=lease_owner,
        )
        kept: list[dict[str, object]] = []
        moved: list[dict[str, object]] = []
        expired: set[int] = set()
        # In id order, so two transactions updating the same rows never deadlock.
        for payment_id, outcome, next_check in sorted(checks, key=lambda check: check[0]):
            row: dict[str, object] = {"b_id": payment_id, "b_outcome": outcome.value}
            if next_check is None:
                kept.append(row)
            elif next_check.final:
                if self.record_check(
                    payment_id,
                    checked_ms=checked_ms,
                    outcome=outcome,
                    next_check=next_check,
                    lease_owner=lease_owner,
                ):
                    expired.add(payment_id)
            else:
                moved.append(
                    row
                    | {
                        "b_next": next_check.next_check_ms,
                        "b_earliest": next_check.earliest_check_ms,
                        "b_errors": next_check.consecutive_errors,
                    }
                )
        if kept:
            self._connection.execute(update.values(**columns), kept)
        if moved:
            rescheduled = columns | {
                "next_check_ms": sa.bindparam("b_next"),
                "earliest_check_ms": sa.bindparam("b_earliest"),
                "consecutive_errors": sa.bindparam("b_errors"),
            }
            self._connection.execute(update.values(**rescheduled), moved)
        return expired

    def count_found_checks(self, payment_ids: Iterable[int], *, checked_ms: int) -> None:
        """The checks that found these QRs paid count too (they are PAID now: unguarded)."""
        payments = t.khqr_payments.c
        self._connection.execute(
            t.khqr_payments.update()
            .where(payments.id.in_(sorted(payment_ids)))
            .values(
                check_count=payments.check_count + 1,
                last_checked_ms=checked_ms,
                last_outcome=AttemptOutcome.PAID.value,
            )
        )

    def mark_watched(self, payment_id: int, watch: Watch) -> bool:
        """A customer is watching: hot until `watch.hot_until_ms`, and the checks pulled forward
        but only ever earlier (a verifier may have rescheduled the payment meanwhile). Only a
        pending QR with checks left; whether it was updated."""
        payments = t.khqr_payments.c
        result = self._connection.execute(
            t.khqr_payments.update()
            .where(
                payments.id == payment_id,
                payments.status == PaymentStatus.PENDING.value,
                payments.next_check_ms.is_not(None),
            )
            .values(
                hot_until_ms=watch.hot_until_ms,
                next_check_ms=_earlier(payments.next_check_ms, watch.next_check_ms),
                earliest_check_ms=_earlier(payments.earliest_check_ms, watch.earliest_check_ms),
            )
        )
        return result.rowcount == 1

    def count_orders_behind(self, *, due_before_ms: int) -> int:
        """Orders with a pending QR whose check was due before `due_before_ms` (a range of the
        due index)."""
        payments = t.khqr_payments.c
        return int(
            self._connection.execute(
                sa.select(sa.func.count(sa.distinct(payments.order_id))).where(
                    payments.status == PaymentStatus.PENDING.value,
                    payments.next_check_ms < due_before_ms,
                )
            ).scalar_one()
        )

    def count_pending_by_age(
        self, *, now_ms: int, bands: Sequence[tuple[str, int]]
    ) -> dict[str, int]:
        """How many QRs are still pending in each age band; `bands` are (name, upper bound in ms)
        in increasing order, and older payments count in the last band. Range counts on the
        partial index of pending QRs' creation time: the young bands read only their rows."""
        payments = t.khqr_payments.c

        def younger_than(age_ms: int | None) -> sa.ScalarSelect[int]:
            query = sa.select(sa.func.count()).where(payments.status == PaymentStatus.PENDING.value)
            if age_ms is not None:
                query = query.where(payments.created_ms > now_ms - age_ms)
            return query.scalar_subquery()

        names = [name for name, _ in bands]
        bounds: list[int | None] = [upper_ms for _, upper_ms in bands[:-1]] + [None]
        cumulative = self._connection.execute(sa.select(*map(younger_than, bounds))).one()
        return {
            name: int(cumulative[i]) - (int(cumulative[i - 1]) if i else 0)
            for i, name in enumerate(names)
        }


def _earlier(column: sa.ColumnElement[int], value: int) -> sa.ColumnElement[int]:
    return sa.case((column < value, column), else_=sa.literal(value))
