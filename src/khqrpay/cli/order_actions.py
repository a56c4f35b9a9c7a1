"""`khqrpay orders verify|check|mark-paid ID`: the staff actions, each printing JSON.

`register(app)` adds them to the `orders` command group. Each imports the view it prints, and
asyncio with the Bakong services, when it runs: the other `orders` commands start without them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from khqrpay.cli.common import OrderId, Staff, open_app, print_json, staff_actor

if TYPE_CHECKING:
    from khqrpay.bootstrap import App
    from khqrpay.services.manual import ManualActions

_T = TypeVar("_T")


def _run(action: Callable[[ManualActions], Awaitable[_T]]) -> _T:
    import asyncio

    async def main(app: App) -> _T:
        async with app.bakong() as bakong:
            return await action(bakong.staff)

    with open_app() as app:
        return asyncio.run(main(app))


def verify(order_id: OrderId, staff: Staff = None) -> None:
    """Verify Instantly: check every unexpired QR of the order now; complete it if paid."""
    from khqrpay.services.schemas import VerifyView

    actor = staff_actor(staff)
    result = _run(lambda actions: actions.verify_instantly(order_id, actor=actor))
    print_json(VerifyView.of(result).json_dict())


def check(order_id: OrderId) -> None:
    """Check Payment Status: what Bakong says now for each QR, and the recent attempts.
    Changes nothing."""
    from khqrpay.services.schemas import PaymentStatusView

    print_json(
        PaymentStatusView.of(_run(lambda actions: actions.check_status(order_id))).json_dict()
    )


def mark_paid(
    order_id: OrderId,
    reason: Annotated[str, typer.Option(help="Why staff mark the order paid (required).")],
    hash_: Annotated[
        str | None,
        typer.Option(
            "--hash",
            help="The Bakong hash (64 hex) or short hash (8 hex), checked with Bakong first.",
        ),
    ] = None,
    staff: Staff = None,
) -> None:
    """Mark as Paid (staff override)."""
    from khqrpay.services.schemas import MarkPaidView

    actor = staff_actor(staff)
    result = _run(
        lambda actions: actions.mark_paid(order_id, reason=reason, bakong_hash=hash_, actor=actor)
    )
    print_json(MarkPaidView.of(result).json_dict())


def register(app: typer.Typer) -> None:
    """Add `verify`, `check` and `mark-paid` to the `orders` group."""
    app.command("verify")(verify)
    app.command("check")(check)
    app.command("mark-paid")(mark_paid)
