"""The console's words for what the engine records: who acted, what an audit entry means, what
Bakong answered, why an order needs review. In the reader's language; templates get this module
as `wording`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from khqrpay.orders.model import AttemptOutcome, AuditEntry, OrderStatus
from khqrpay.services.orders import OrderDetails
from khqrpay.services.schemas import VerifyView
from khqrpay.web.i18n import _


def actor(who: str) -> str:
    """`staff:dara` → `dara`; the engine's actors by what they are."""
    kind, _separator, name = who.partition(":")
    if kind == "staff":
        return name
    return {
        "worker": _("Automatic check"),
        "customer": _("Customer"),
        "cli": _("Command line"),
        "system": _("System"),
    }.get(kind, who)


def phone(e164: str | None) -> str:
    """`+85512345678` as people in Cambodia write it: `012 345 678` (`097 765 4321`)."""
    if not e164:
        return "—"
    if not e164.startswith("+855"):
        return e164
    national = "0" + e164.removeprefix("+855")
    return f"{national[:3]} {national[3:6]} {national[6:]}"


def status(value: str | OrderStatus) -> str:
    return {
        "PENDING": _("Pending"),
        "COMPLETED": _("Completed"),
        "NEEDS_REVIEW": _("Needs review"),
        "EXPIRED": _("Expired"),
        "CANCELLED": _("Cancelled"),
        "REFUNDED": _("Refunded"),
        "PAID": _("Paid"),
    }.get(str(value), str(value))


def delivery_status(value: str) -> str:
    """A webhook delivery's or Telegram message's status."""
    return {
        "PENDING": _("Waiting"),
        "DELIVERED": _("Delivered"),
        "DEAD": _("Given up"),
    }.get(value, value)


def event_type(value: str) -> str:
    """What a webhook event type announces, in a few words (its name is the receivers')."""
    return {
        "order.created": _("Order placed"),
        "order.completed": _("Order paid and completed"),
        "order.needs_review": _("Order needs review"),
        "order.expired": _("Order expired unpaid"),
        "order.cancelled": _("Order cancelled"),
        "order.refund_flagged": _("Money to refund"),
    }.get(value, value)


def alert_kind(value: str) -> str:
    return {
        "payment": _("Payment received"),
        "needs_review": _("Needs review"),
        "refund_flag": _("Money to refund"),
        "bakong_unauthorized": _("Bakong refused the token"),
        "token_expiring": _("Bakong token expiring"),
    }.get(value, value)


def language(code: str) -> str:
    return {"km": _("Khmer"), "en": _("English")}.get(code, code)


def action(entry: AuditEntry) -> str:
    """What an audit entry records, in a few words."""
    return {
        "order_created": _("Order placed"),
        "qr_created": _("New KHQR code made"),
        "completed": _("Paid: order completed"),
        "needs_review": _("Sent to review"),
        "refund_flagged": _("Flagged for refund"),
        "evidence_attached": _("Bakong payment attached"),
        "payment_conflict": _("Payment recorded for another order"),
        "expired": _("Expired unpaid"),
        "cancelled": _("Cancelled"),
        "refunded": _("Refunded"),
        "refund_flag_cleared": _("Refund flag cleared"),
        "product_added": _("Product added"),
        "product_updated": _("Product changed"),
        "product_activated": _("Put on sale"),
        "product_deactivated": _("Taken off sale"),
        "stock_adjusted": _("Stock adjusted"),
    }.get(entry.action, entry.action.replace("_", " "))


def source(value: str) -> str:
    return {
        "verifier": _("automatic check"),
        "verify_instantly": _("Verify Instantly"),
        "mark_paid": _("Mark as Paid"),
    }.get(value, value)


def outcome(value: str | AttemptOutcome) -> str:
    """What one Bakong check said, for people."""
    return {
        "paid": _("Paid"),
        "not_found": _("Not paid yet"),
        "failed": _("Payment failed at the bank"),
        "static_qr": _("Not a payment QR"),
        "unauthorized": _("Bakong refused our access token"),
        "blocked": _("Bakong's firewall refused the call"),
        "rate_limited": _("Bakong asked us to slow down"),
        "unavailable": _("Bakong is unreachable"),
        "bad_response": _("Bakong's answer could not be read"),
    }.get(str(value), str(value))


def is_error(value: str) -> bool:
    return value in ("unauthorized", "blocked", "rate_limited", "unavailable", "bad_response")


@dataclass(frozen=True, slots=True)
class Summary:
    kind: str  # ok | warn | bad | info: the notice's colour
    text: str


def verify_summary(view: VerifyView) -> Summary:
    """Verify Instantly's result in one sentence: what Bakong said and what changed."""
    if not view.checked:
        if view.deferred:
            return Summary(
                "warn",
                _(
                    "Not asked: the Bakong request budget has no call left this minute. "
                    "The worker checks this order soon; try again in a minute."
                ),
            )
        if view.status == OrderStatus.COMPLETED:
            return Summary("ok", _("Already paid: nothing to check."))
        return Summary("info", _("No QR code of this order is still waiting for payment."))
    if view.status == OrderStatus.COMPLETED and view.previous_status != OrderStatus.COMPLETED:
        return Summary("ok", _("Paid. The order is now COMPLETED."))
    if view.status == OrderStatus.NEEDS_REVIEW and view.previous_status != view.status:
        return Summary(
            "warn", _("Bakong has a payment, but it does not match: the order needs review.")
        )
    outcomes = {check.outcome for check in view.checked}
    errors = sorted(o for o in outcomes if is_error(o))
    if errors:
        return Summary(
            "bad", _("{problem}: nothing was changed.").format(problem=outcome(errors[0]))
        )
    if outcomes == {"not_found"}:
        return Summary(
            "info", _("Not paid yet: Bakong has no payment for this order. Nothing was changed.")
        )
    return Summary(
        "info",
        _("Bakong answered: {answer}. Nothing was changed.").format(
            answer=", ".join(outcome(o) for o in sorted(outcomes))
        ),
    )


@dataclass(frozen=True, slots=True)
class ReviewStep:
    """One step of an order's review history: what happened, why, and the payment involved."""

    entry: AuditEntry
    title: str
    reason: str | None


_REVIEW_ACTIONS = frozenset(
    {"needs_review", "refund_flagged", "payment_conflict", "refunded", "refund_flag_cleared"}
)


def review_history(details: OrderDetails) -> list[ReviewStep]:
    """Every step that sent the order to review, flagged it, or settled that, oldest first."""
    steps = []
    for entry in details.audit:
        settled_review = (
            entry.action == "completed" and entry.from_status is OrderStatus.NEEDS_REVIEW
        )
        if entry.action in _REVIEW_ACTIONS or settled_review:
            steps.append(ReviewStep(entry, _review_title(entry, details), entry.reason))
    return steps


def _review_title(entry: AuditEntry, details: OrderDetails) -> str:
    if entry.action == "payment_conflict":
        return _("The same Bakong payment is recorded for another order")
    if entry.action == "refunded":
        return _("Refund recorded")
    if entry.action == "refund_flag_cleared":
        return _("Refund flag cleared")
    if entry.action == "completed":
        return _("Payment accepted")
    if entry.from_status is OrderStatus.CANCELLED:
        return _("Paid after the order was cancelled")
    if entry.from_status is OrderStatus.EXPIRED:
        return _("Paid after the payment window ended")
    if entry.action == "refund_flagged":
        return _("Paid again after it was paid or refunded")
    return _mismatch_title(entry, details)


def _mismatch_title(entry: AuditEntry, details: OrderDetails) -> str:
    """Why a payment did not complete a pending order: what it paid against what was due."""
    order = details.order
    paid_currency = entry.details.get("currency")
    try:
        paid = Decimal(str(entry.details.get("amount")))
    except InvalidOperation:
        return _("The payment needs a person's look")
    if paid_currency != order.currency.value:
        return _("Paid in the wrong currency")
    if paid < order.total.amount:
        return _("Short payment")
    if paid > order.total.amount:
        return _("Paid too much")
    return _("The payment needs a person's look")
