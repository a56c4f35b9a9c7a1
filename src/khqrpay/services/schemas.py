"""What entry points show: one pydantic model per answer, built from the services' results.

The CLI prints them (`model_dump(mode="json")`) and the JSON API returns the same models, so an
order, a QR or a piece of payment evidence looks the same everywhere. Amounts are strings with all
of the currency's decimals (`"3.00"`, `"4000"`), never floats; times are ISO 8601 UTC with
milliseconds (`"2026-11-26T00:00:00.000Z"`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer

from khqrpay.accounts import StaffUser
from khqrpay.bakong.errors import BakongError
from khqrpay.bakong.outcomes import Paid, Transaction
from khqrpay.clock import ms_to_datetime
from khqrpay.money import Money
from khqrpay.orders.api_clients import ApiKey
from khqrpay.orders.model import (
    AuditEntry,
    Evidence,
    KhqrPayment,
    Order,
    OrderLine,
    Product,
    RecordedEvidence,
    ReviewNote,
    VerificationAttempt,
    current_code,
)
from khqrpay.orders.notices import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

# The services' results are only read by the views' constructors: not importing them here keeps
# a command that prints one view (`khqrpay orders show`) from loading the Bakong services.
if TYPE_CHECKING:
    from khqrpay.services.checking import CheckRecord
    from khqrpay.services.checkout import CreatedOrder
    from khqrpay.services.completion import CompletionResult
    from khqrpay.services.manual import MarkPaidResult, PaymentStatusReport, QrStatus, VerifyResult
    from khqrpay.services.orders import OrderDetails
    from khqrpay.services.staff import StaffActionResult


def iso_ms(moment: datetime) -> str:
    """`2026-11-26T00:00:00.000Z`: UTC, milliseconds, a `Z`."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(iso_ms, return_type=str)]


def at(ms: int | None) -> datetime | None:
    return None if ms is None else ms_to_datetime(ms)


def amount(money: Money) -> str:
    """An exact amount in the currency's usual unit, all its decimals written: `3.00`, `4000`."""
    return f"{money.amount:.{money.currency.exponent}f}"


class Schema(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    def json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ProductView(Schema):
    id: int
    sku: str
    name: str
    # The Khmer name, null when the product has none (show `name` then).
    name_km: str | None
    price: str
    currency: str
    stock: int
    active: bool

    @classmethod
    def of(cls, product: Product) -> ProductView:
        return cls(
            id=product.id,
            sku=product.sku,
            name=product.name,
            name_km=product.name_km,
            price=amount(product.price),
            currency=product.price.currency.value,
            stock=product.stock,
            active=product.active,
        )


class OrderSummary(Schema):
    id: int
    status: str
    total: str
    currency: str
    created_at: Timestamp
    expires_at: Timestamp
    completed_at: Timestamp | None
    review_reason: str | None
    refund_flag: bool

    @classmethod
    def of(cls, order: Order) -> OrderSummary:
        return cls(**_summary_fields(order))


def _summary_fields(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "status": order.status.value,
        "total": amount(order.total),
        "currency": order.currency.value,
        "created_at": ms_to_datetime(order.created_ms),
        "expires_at": ms_to_datetime(order.window_end_ms),
        "completed_at": at(order.completed_ms),
        "review_reason": order.review_reason,
        "refund_flag": order.refund_flag,
    }


class StaffActionView(OrderSummary):
    """A staff action's result: the order now, and its status before."""

    previous_status: str
    refund_reason: str | None
    refund_reference: str | None

    @classmethod
    def of(cls, result: StaffActionResult) -> StaffActionView:  # type: ignore[override]
        order = result.order
        return cls(
            **_summary_fields(order),
            previous_status=result.previous_status.value,
            refund_reason=order.refund_reason,
            refund_reference=order.refund_reference,
        )


class OrderLineView(Schema):
    sku: str
    name: str
    name_km: str | None
    unit_price: str
    quantity: int
    total: str

    @classmethod
    def of(cls, line: OrderLine) -> OrderLineView:
        return cls(
            sku=line.sku,
            name=line.name,
            name_km=line.name_km,
            unit_price=amount(line.unit_price),
            quantity=line.quantity,
            total=amount(line.total),
        )


class QrView(Schema):
    """One dynamic KHQR of an order and where its checks stand."""

    id: int
    md5: str
    qr: str
    status: str
    amount: str
    to_account: str
    created_at: Timestamp
    expires_at: Timestamp
    next_check_at: Timestamp | None
    check_count: int
    last_checked_at: Timestamp | None
    last_outcome: str | None

    @classmethod
    def of(cls, payment: KhqrPayment) -> QrView:
        return cls(
            id=payment.id,
            md5=payment.md5,
            qr=payment.qr,
            status=payment.status.value,
            amount=amount(payment.amount),
            to_account=payment.to_account,
            created_at=ms_to_datetime(payment.created_ms),
            expires_at=ms_to_datetime(payment.expires_ms),
            next_check_at=at(payment.next_check_ms),
            check_count=payment.check_count,
            last_checked_at=at(payment.last_checked_ms),
            last_outcome=None if payment.last_outcome is None else payment.last_outcome.value,
        )


class EvidenceView(Schema):
    """A Bakong transfer as the engine records it: the one view of payment evidence."""

    bakong_hash: str
    short_hash: str
    from_account: str | None
    # None: Bakong did not state it (the md5 of our QR ties the payment to the shop).
    to_account: str | None
    amount: str
    currency: str
    paid_at: Timestamp
    # Where paid_at comes from: Bakong's creation or acknowledgement time, or when we saw it.
    paid_time: str

    @classmethod
    def of(cls, evidence: Evidence) -> EvidenceView:
        return cls(**_evidence_fields(evidence))


def _evidence_fields(evidence: Evidence) -> dict[str, Any]:
    return {
        "bakong_hash": evidence.bakong_hash,
        "short_hash": evidence.short_hash,
        "from_account": evidence.from_account,
        "to_account": evidence.to_account,
        "amount": str(evidence.amount),
        "currency": evidence.currency,
        "paid_at": ms_to_datetime(evidence.paid_ms),
        "paid_time": evidence.paid_time.value,
    }


class RecordedEvidenceView(EvidenceView):
    """Evidence with how and when it was recorded for the order."""

    id: int
    payment_id: int | None
    source: str
    matched: bool
    mismatch_reason: str | None
    recorded_at: Timestamp

    @classmethod
    def recorded(cls, recorded: RecordedEvidence) -> RecordedEvidenceView:
        return cls(
            **_evidence_fields(recorded.evidence),
            id=recorded.id,
            payment_id=recorded.payment_id,
            source=recorded.source.value,
            matched=recorded.matched,
            mismatch_reason=recorded.mismatch_reason,
            recorded_at=ms_to_datetime(recorded.recorded_ms),
        )


class AuditView(Schema):
    at: Timestamp
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditView:
        return cls(
            at=ms_to_datetime(entry.at_ms),
            actor=entry.actor,
            action=entry.action,
            from_status=None if entry.from_status is None else entry.from_status.value,
            to_status=None if entry.to_status is None else entry.to_status.value,
            reason=entry.reason,
            details=dict(entry.details),
        )


class ReviewNoteView(Schema):
    """One reason an order was sent to review (every one is kept)."""

    at: Timestamp
    reason: str
    actor: str

    @classmethod
    def of(cls, note: ReviewNote) -> ReviewNoteView:
        return cls(at=ms_to_datetime(note.at_ms), reason=note.reason, actor=note.actor)


class OrderView(OrderSummary):
    """Everything known about one order: for staff (it carries the customer's token)."""

    token: str
    phone: str | None
    refund_reason: str | None
    refund_reference: str | None
    paid_manually_without_hash: bool
    lines: list[OrderLineView]
    qrs: list[QrView]
    evidence: list[RecordedEvidenceView]
    audit: list[AuditView]
    review_history: list[ReviewNoteView]

    @classmethod
    def details(cls, details: OrderDetails) -> OrderView:
        order = details.order
        return cls(
            **_summary_fields(order),
            token=order.public_token,
            phone=order.customer_phone,
            refund_reason=order.refund_reason,
            refund_reference=order.refund_reference,
            paid_manually_without_hash=order.paid_manually_without_hash,
            lines=[OrderLineView.of(line) for line in details.lines],
            qrs=[QrView.of(payment) for payment in details.payments],
            evidence=[RecordedEvidenceView.recorded(r) for r in details.evidence],
            audit=[AuditView.of(entry) for entry in details.audit],
            review_history=[ReviewNoteView.of(note) for note in details.review_history],
        )


class CreatedOrderView(Schema):
    """A new order and the KHQR to show the customer."""

    id: int
    token: str
    status: str
    qr: str
    md5: str
    expires_at: Timestamp

    @classmethod
    def of(cls, created: CreatedOrder) -> CreatedOrderView:
        return cls(
            id=created.order.id,
            token=created.order.public_token,
            status=created.order.status.value,
            qr=created.payment.qr,
            md5=created.payment.md5,
            expires_at=ms_to_datetime(created.payment.expires_ms),
        )


class TransactionView(Schema):
    """A transfer as Bakong answers it now (Check Payment Status, Verify Instantly)."""

    hash: str
    short_hash: str
    amount: str
    currency: str
    from_account: str | None
    to_account: str | None
    paid_at: Timestamp | None

    @classmethod
    def of(cls, transaction: Transaction) -> TransactionView:
        return cls(
            hash=transaction.hash,
            short_hash=transaction.short_hash,
            amount=str(transaction.amount),
            currency=transaction.currency,
            from_account=transaction.from_account_id,
            to_account=transaction.to_account_id,
            paid_at=at(transaction.created_ms),
        )


class CompletionView(Schema):
    """What recording a payment did to the order."""

    action: str
    previous_status: str
    status: str
    reason: str | None

    @classmethod
    def of(cls, completion: CompletionResult) -> CompletionView:
        return cls(
            action=completion.action.value,
            previous_status=completion.previous_status.value,
            status=completion.status.value,
            reason=completion.reason,
        )


class CheckView(Schema):
    """One QR checked and what was done with the answer."""

    payment_id: int
    md5: str
    outcome: str
    detail: str | None
    transaction: TransactionView | None
    completion: CompletionView | None
    next_check_at: Timestamp | None
    qr_expired: bool

    @classmethod
    def of(cls, record: CheckRecord) -> CheckView:
        return cls(
            payment_id=record.target.payment_id,
            md5=record.target.md5,
            outcome=record.outcome.value,
            detail=record.detail,
            transaction=None
            if record.transaction is None
            else TransactionView.of(record.transaction),
            completion=None if record.completion is None else CompletionView.of(record.completion),
            next_check_at=at(record.next_check_ms),
            qr_expired=record.payment_expired,
        )


class VerifyView(Schema):
    """Verify Instantly: every unexpired QR checked now, the order before and after; `deferred`:
    QRs not asked because the Bakong request budget had no call left (the worker checks them)."""

    order_id: int
    previous_status: str
    status: str
    checked: list[CheckView]
    deferred: int = 0

    @classmethod
    def of(cls, result: VerifyResult) -> VerifyView:
        return cls(
            order_id=result.order_id,
            previous_status=result.previous_status.value,
            status=result.status.value,
            checked=[CheckView.of(record) for record in result.checks],
            deferred=result.deferred,
        )


class QrStatusView(Schema):
    """What Bakong says now about one QR (Check Payment Status)."""

    payment_id: int
    md5: str
    qr_status: str
    amount: str
    currency: str
    expires_at: Timestamp
    bakong: str
    error: bool
    detail: str | None
    transaction: TransactionView | None

    @classmethod
    def of(cls, qr: QrStatus) -> QrStatusView:
        answer = qr.answer
        return cls(
            payment_id=qr.payment.id,
            md5=qr.payment.md5,
            qr_status=qr.payment.status.value,
            amount=amount(qr.payment.amount),
            currency=qr.payment.amount.currency.value,
            expires_at=ms_to_datetime(qr.payment.expires_ms),
            bakong=qr.outcome.value,
            error=isinstance(answer, BakongError),
            detail=qr.detail,
            transaction=TransactionView.of(answer.transaction)
            if isinstance(answer, Paid)
            else None,
        )


class AttemptView(Schema):
    payment_id: int
    at: Timestamp
    source: str
    outcome: str
    latency_ms: int | None
    detail: str | None

    @classmethod
    def of(cls, attempt: VerificationAttempt) -> AttemptView:
        return cls(
            payment_id=attempt.payment_id,
            at=ms_to_datetime(attempt.at_ms),
            source=attempt.source.value,
            outcome=attempt.outcome.value,
            latency_ms=attempt.latency_ms,
            detail=attempt.detail,
        )


class PaymentStatusView(Schema):
    """Check Payment Status: what Bakong says now for each QR, and the recent attempts."""

    order_id: int
    status: str
    qrs: list[QrStatusView]
    recent_attempts: list[AttemptView]

    @classmethod
    def of(cls, report: PaymentStatusReport) -> PaymentStatusView:
        return cls(
            order_id=report.order.id,
            status=report.order.status.value,
            qrs=[QrStatusView.of(qr) for qr in report.qrs],
            recent_attempts=[AttemptView.of(attempt) for attempt in report.recent_attempts],
        )


class MarkPaidView(Schema):
    """Mark as Paid: what it did, and the Bakong payment staff named as Bakong confirmed it."""

    order_id: int
    action: str
    previous_status: str
    status: str
    reason: str | None
    evidence: EvidenceView | None

    @classmethod
    def of(cls, result: MarkPaidResult) -> MarkPaidView:
        completion = result.completion
        return cls(
            order_id=completion.order_id,
            action=completion.action.value,
            previous_status=completion.previous_status.value,
            status=completion.status.value,
            reason=completion.reason,
            evidence=None if result.evidence is None else EvidenceView.of(result.evidence),
        )


# -- The JSON API (`/api/v1`) --------------------------------------------------------------------


class CustomerView(Schema):
    name: str | None
    phone: str | None


class OrderLinks(Schema):
    """Where the order lives: the customer's payment page (share it with the customer), its
    current code as a PNG or SVG payment card, and its events (Server-Sent Events)."""

    payment_page: str
    qr_png: str
    qr_svg: str
    events: str


class ApiOrderSummary(Schema):
    """An API client's order in a listing."""

    id: int
    status: str
    amount: str
    currency: str
    reference: str | None
    created_at: Timestamp
    updated_at: Timestamp
    expires_at: Timestamp
    completed_at: Timestamp | None

    @classmethod
    def of(cls, order: Order) -> ApiOrderSummary:
        return cls(**_api_summary_fields(order))


def _api_summary_fields(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "status": order.status.value,
        "amount": amount(order.total),
        "currency": order.currency.value,
        "reference": order.reference,
        "created_at": ms_to_datetime(order.created_ms),
        "updated_at": ms_to_datetime(order.updated_ms),
        "expires_at": ms_to_datetime(order.window_end_ms),
        "completed_at": at(order.completed_ms),
    }


class ApiOrderView(ApiOrderSummary):
    """One API order: its current KHQR (`qr`, `md5`: the newest code still pending, else the
    newest), lines (none for an order by amount), the Bakong payments recorded for it, links."""

    qr: str
    md5: str
    review_reason: str | None
    refund_flag: bool
    customer: CustomerView
    lines: list[OrderLineView]
    payments: list[EvidenceView]
    links: OrderLinks

    @classmethod
    def details(cls, details: OrderDetails, links: OrderLinks) -> ApiOrderView:
        order = details.order
        current = current_code(details.payments)
        return cls(
            **_api_summary_fields(order),
            qr=current.qr,
            md5=current.md5,
            review_reason=order.review_reason,
            refund_flag=order.refund_flag,
            customer=CustomerView(name=order.customer_name, phone=order.customer_phone),
            lines=[OrderLineView.of(line) for line in details.lines],
            payments=[EvidenceView.of(recorded.evidence) for recorded in details.evidence],
            links=links,
        )


class ApiOrderPage(Schema):
    """A page of orders, oldest first; `next_cursor` continues after it (None: the last page)."""

    orders: list[ApiOrderSummary]
    next_cursor: str | None


class ApiKeyView(Schema):
    """An API key as listed: its client and first characters, never the key."""

    name: str
    key: str
    active: bool
    created_at: Timestamp
    revoked_at: Timestamp | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyView:
        return cls(
            name=key.client,
            key=key.shown + "…",
            active=key.active,
            created_at=ms_to_datetime(key.created_ms),
            revoked_at=at(key.revoked_ms),
        )


class IssuedKeyView(Schema):
    """A new API key, shown this once."""

    name: str
    key: str


class ApiError(Schema):
    code: str
    message: str
    field: str | None = None


class ApiErrorView(Schema):
    """Every API error: a stable `code` for programs and a `message` for people."""

    error: ApiError


# -- The customer's pages -------------------------------------------------------------------------


class CustomerStatusView(Schema):
    """What a payment page polls when it cannot keep an event stream open."""

    status: str
    updated_at: Timestamp

    @classmethod
    def of(cls, order: Order) -> CustomerStatusView:
        return cls(status=order.status.value, updated_at=ms_to_datetime(order.updated_ms))


class StaffUserView(Schema):
    """A staff account, never its password hash."""

    id: int
    name: str
    role: str
    disabled: bool
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, user: StaffUser) -> StaffUserView:
        return cls(
            id=user.id,
            name=user.name,
            role=user.role.value,
            disabled=user.disabled,
            created_at=ms_to_datetime(user.created_ms),
            updated_at=ms_to_datetime(user.updated_ms),
        )


class WebhookEndpointView(Schema):
    """A webhook endpoint, without its secret (shown once, when it is added)."""

    id: int
    url: str
    events: list[str]
    allow_private: bool
    active: bool
    created_at: Timestamp
    removed_at: Timestamp | None

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookEndpointView:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=[event_type.value for event_type in endpoint.event_types],
            allow_private=endpoint.allow_private,
            active=endpoint.active,
            created_at=ms_to_datetime(endpoint.created_ms),
            removed_at=at(endpoint.removed_ms),
        )


class WebhookAttemptView(Schema):
    """One try: when, how long, the answer's status code (null: no answer) or what failed."""

    at: Timestamp
    duration_ms: int
    status_code: int | None
    error: str | None

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> WebhookAttemptView:
        return cls(
            at=ms_to_datetime(attempt.at_ms),
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=attempt.error,
        )


class WebhookDeliveryView(Schema):
    """One event's message to one endpoint and its log of tries."""

    id: int
    endpoint_id: int
    webhook_id: str
    event_type: str
    order_id: int
    status: str
    attempts: int
    created_at: Timestamp
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    # When it was delivered or given up.
    done_at: Timestamp | None
    log: list[WebhookAttemptView]

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> WebhookDeliveryView:
        state = delivery.state
        pending = state.status is DeliveryStatus.PENDING
        return cls(
            id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            webhook_id=delivery.message_id,
            event_type=delivery.event_type.value,
            order_id=delivery.order_id,
            status=state.status.value,
            attempts=state.attempts,
            created_at=ms_to_datetime(state.created_ms),
            next_attempt_at=ms_to_datetime(state.next_attempt_ms) if pending else None,
            last_attempt_at=at(state.last_attempt_ms),
            last_status_code=delivery.last_status_code,
            last_error=state.last_error,
            done_at=at(state.done_ms),
            log=[WebhookAttemptView.of(attempt) for attempt in delivery.attempt_log],
        )
