"""The schema, as SQLAlchemy Core tables. Alembic migrations (`migrations/versions`) must match it.

Money is integer minor units (`*_minor`), times are epoch milliseconds from the injected clock,
statuses are the enum values of `khqrpay.orders.model`, checked by the database too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from khqrpay.accounts import Role
from khqrpay.money import Currency
from khqrpay.orders.model import (
    AttemptOutcome,
    EvidenceSource,
    OrderStatus,
    PaidTime,
    PaymentStatus,
)
from khqrpay.orders.notices import AlertKind, DeliveryStatus, WebhookEventType

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EpochMs = sa.BigInteger


class ExactDecimal(sa.types.TypeDecorator[Decimal]):
    """A Decimal stored exactly as given: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC
    would go through a float)."""

    impl = sa.Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(64))
        return dialect.type_descriptor(sa.Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return str(value)

    def process_result_value(self, value: Any, _dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


def _one_of(column: str, values: type[Any], name: str) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{member.value}'" for member in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=name)


products = sa.Table(
    "products",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("sku", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    # Migration 0010: the Khmer name, shown to Khmer readers when set (`name` is the English).
    sa.Column("name_km", sa.String(200)),
    sa.Column("price_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("stock", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("updated_ms", EpochMs, nullable=False),
    sa.CheckConstraint("stock >= 0", name="stock_not_negative"),
    sa.CheckConstraint("price_minor >= 0", name="price_not_negative"),
    _one_of("currency", Currency, "currency"),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("public_token", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("total_minor", sa.BigInteger, nullable=False),
    sa.Column("customer_phone", sa.String(16)),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("window_end_ms", EpochMs, nullable=False),
    sa.Column("completed_ms", EpochMs),
    sa.Column("review_reason", sa.Text),
    sa.Column("refund_flag", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("refund_reason", sa.Text),
    # The reference of the last refund staff recorded (the audit trail keeps every one).
    sa.Column("refund_reference", sa.String(128)),
    sa.Column("paid_manually_without_hash", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_ms", EpochMs, nullable=False),
    # Migration 0004: the customer's name, and orders the API makes (by amount: a reference).
    sa.Column("customer_name", sa.String(100)),
    sa.Column("reference", sa.String(64)),
    sa.Column("api_client", sa.String(48)),
    _one_of("status", OrderStatus, "status"),
    _one_of("currency", Currency, "currency"),
    sa.CheckConstraint("total_minor > 0", name="total_positive"),
    sa.Index("ix_orders_status_id", "status", "id"),
    # The staff dashboard's takings of the day.
    sa.Index("ix_orders_completed_ms", "completed_ms"),
    # The expiry sweep's query: pending orders whose window has ended.
    sa.Index(
        "ix_orders_pending_window_end",
        "window_end_ms",
        sqlite_where=sa.text("status = 'PENDING'"),
        postgresql_where=sa.text("status = 'PENDING'"),
    ),
    # A customer finding their orders by phone; an API client listing its own orders.
    sa.Index("ix_orders_customer_phone", "customer_phone"),
    sa.Index("ix_orders_api_client_id", "api_client", "id"),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("product_id", Id, sa.ForeignKey("products.id"), nullable=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # Migration 0010: the Khmer name as it was at checkout.
    sa.Column("name_km", sa.String(200)),
    sa.Column("unit_price_minor", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    sa.CheckConstraint("unit_price_minor >= 0", name="unit_price_not_negative"),
    sa.UniqueConstraint("order_id", "product_id"),
)

khqr_payments = sa.Table(
    "khqr_payments",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("qr", sa.Text, nullable=False),
    sa.Column("md5", sa.String(32), nullable=False, unique=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("to_account", sa.String(64), nullable=False),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("expires_ms", EpochMs, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    # The verifier's schedule (`khqrpay.orders.schedule`): NULL next_check_ms means no more
    # checks; from earliest_check_ms a Bakong call made anyway may carry the payment early.
    sa.Column("next_check_ms", EpochMs),
    sa.Column("earliest_check_ms", EpochMs),
    sa.Column("hot_until_ms", EpochMs),
    sa.Column("consecutive_errors", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until_ms", EpochMs),
    sa.Column("check_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_checked_ms", EpochMs),
    sa.Column("last_outcome", sa.String(16)),
    _one_of("status", PaymentStatus, "status"),
    _one_of("currency", Currency, "currency"),
    _one_of("last_outcome", AttemptOutcome, "last_outcome"),
    sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    # The verifier's claim: pending payments that are due, and those that may ride along early.
    sa.Index(
        "ix_khqr_payments_due",
        "next_check_ms",
        sqlite_where=sa.text("status = 'PENDING'"),
        postgresql_where=sa.text("status = 'PENDING'"),
    ),
    sa.Index(
        "ix_khqr_payments_early",
        "earliest_check_ms",
        sqlite_where=sa.text("status = 'PENDING'"),
        postgresql_where=sa.text("status = 'PENDING'"),
    ),
    # The claim's first tier, watched and fresh QRs (migration 0007): a few rows at the top of
    # each, however large the backlog. The fresh index also serves the pending-by-age gauge
    # (range counts).
    sa.Index(
        "ix_khqr_payments_hot",
        "hot_until_ms",
        sqlite_where=sa.text("status = 'PENDING'"),
        postgresql_where=sa.text("status = 'PENDING'"),
    ),
    # Migration 0008: the ride-along claim (the longest unchecked first), by index rather than
    # by scanning every pending row.
    sa.Index(
        "ix_khqr_payments_pending_last_checked",
        "last_checked_ms",
        sqlite_where=sa.text("status = 'PENDING'"),
        postgresql_where=sa.text("status = 'PENDING'"),
    ),
    sa.Index(
        "ix_khqr_payments_fresh",
        "created_ms",
        sqlite_where=sa.text("status = 'PENDING'"),
        postgresql_where=sa.text("status = 'PENDING'"),
    ),
)

payment_evidence = sa.Table(
    "payment_evidence",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("payment_id", Id, sa.ForeignKey("khqr_payments.id")),
    # One Bakong transfer is evidence for one order only, ever.
    sa.Column("bakong_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("short_hash", sa.String(8), nullable=False, index=True),
    sa.Column("from_account", sa.String(128)),
    # NULL: Bakong did not state it (the md5 of our QR ties the payment to the shop).
    sa.Column("to_account", sa.String(128)),
    sa.Column("amount", ExactDecimal(), nullable=False),
    sa.Column("amount_minor", sa.BigInteger),
    sa.Column("currency", sa.String(8), nullable=False),
    sa.Column("paid_ms", EpochMs, nullable=False),
    # Where paid_ms comes from: Bakong's creation or acknowledgement time, or when we saw it.
    sa.Column("paid_time", sa.String(16), nullable=False, server_default=PaidTime.CREATED.value),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("matched", sa.Boolean, nullable=False),
    sa.Column("mismatch_reason", sa.Text),
    sa.Column("recorded_ms", EpochMs, nullable=False),
    _one_of("source", EvidenceSource, "source"),
    _one_of("paid_time", PaidTime, "paid_time"),
    # The staff dashboard's figures of the last day.
    sa.Index("ix_payment_evidence_recorded_ms", "recorded_ms"),
)

# Append-only: nothing updates or deletes it; triggers (created by the migration) refuse to.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id")),
    sa.Column("at_ms", EpochMs, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16)),
    sa.Column("reason", sa.Text),
    sa.Column("details", Json, nullable=False),
    sa.Index("ix_audit_log_order_id_id", "order_id", "id"),
)

verification_attempts = sa.Table(
    "verification_attempts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("payment_id", Id, sa.ForeignKey("khqr_payments.id"), nullable=False),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("at_ms", EpochMs, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("latency_ms", sa.Integer),
    sa.Column("detail", sa.Text),
    _one_of("source", EvidenceSource, "source"),
    _one_of("outcome", AttemptOutcome, "outcome"),
    sa.Index("ix_verification_attempts_payment_id_id", "payment_id", "id"),
    sa.Index("ix_verification_attempts_order_id_id", "order_id", "id"),
)

# Every attempt ever recorded, counted per payment and outcome; the rows above keep the last few.
verification_attempt_totals = sa.Table(
    "verification_attempt_totals",
    metadata,
    sa.Column("payment_id", Id, sa.ForeignKey("khqr_payments.id"), primary_key=True),
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("last_ms", EpochMs, nullable=False),
    _one_of("outcome", AttemptOutcome, "outcome"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id")),
    sa.Column("payload", Json, nullable=False),
    sa.Column("published_ms", EpochMs),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # The relay's query: unpublished events in id order.
    sa.Index(
        "ix_outbox_unpublished",
        "id",
        sqlite_where=sa.text("published_ms IS NULL"),
        postgresql_where=sa.text("published_ms IS NULL"),
    ),
)

# The keys of the JSON API's clients, stored as their SHA-256 (the key itself is shown once).
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("client", sa.String(48), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("shown", sa.String(16), nullable=False),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("revoked_ms", EpochMs),
    # One active key per client; revoked ones stay, for the record.
    sa.Index(
        "ix_api_keys_active_client",
        "client",
        unique=True,
        sqlite_where=sa.text("revoked_ms IS NULL"),
        postgresql_where=sa.text("revoked_ms IS NULL"),
    ),
)

# Idempotency-Key of API requests that create orders: the same key and body give the same order.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("client", sa.String(48), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    # Set in the transaction that claims the key, so no one ever sees it NULL once committed.
    sa.Column("order_id", Id, sa.ForeignKey("orders.id")),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.UniqueConstraint("client", "key"),
)

# One row per check → apply round (a verifier cycle, a Verify Instantly): how many Bakong calls
# it made and what the QRs' answers were. Unlike the attempts above (only the last few of each QR
# are kept) every round is here, for a while: the staff dashboard counts the last hour's calls.
verification_rounds = sa.Table(
    "verification_rounds",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("at_ms", EpochMs, nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("checks", sa.Integer, nullable=False),
    # Checks Bakong gave no answer for (an error of any kind: the schedule's `ErrorKind`s).
    sa.Column("errors", sa.Integer, nullable=False),
    # How many QRs got each outcome: {"not_found": 12, "paid": 1}.
    sa.Column("outcomes", Json, nullable=False),
    _one_of("source", EvidenceSource, "source"),
)

# Migration 0008: jobs one worker at a time runs (the expiry sweep and the gauges): a lease
# each, taken by whoever finds it free or ended, so a killed worker holds it no longer than that.
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("until_ms", EpochMs, nullable=False),
)

# The accounts of the staff console. Names are stored lower case; passwords as argon2 hashes.
staff_users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(32), nullable=False, unique=True),
    sa.Column("role", sa.String(8), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("sessions_valid_from_ms", EpochMs, nullable=False),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("updated_ms", EpochMs, nullable=False),
    _one_of("role", Role, "role"),
)

# Failed staff logins of the last minutes, for throttling by user name and by client address
# (shared by every web process; old rows are deleted as new ones come).
staff_login_failures = sa.Table(
    "staff_login_failures",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("at_ms", EpochMs, nullable=False),
    sa.Column("user_name", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Index("ix_staff_login_failures_user_name_at_ms", "user_name", "at_ms"),
    sa.Index("ix_staff_login_failures_address_at_ms", "address", "at_ms"),
)

# --- outbound: webhooks and Telegram alerts (docs/webhooks.md) -------------------------------


def _delivery_columns() -> list[sa.Column[Any] | sa.CheckConstraint]:
    """What every outbound message to one recipient carries: its state, its tries and the lease
    of the worker sending it (`khqrpay.orders.notices.DeliveryState`)."""
    return [
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_ms", EpochMs, nullable=False),
        sa.Column("started_ms", EpochMs, nullable=False),
        sa.Column("next_attempt_ms", EpochMs, nullable=False),
        sa.Column("last_attempt_ms", EpochMs),
        sa.Column("last_error", sa.Text),
        sa.Column("done_ms", EpochMs),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until_ms", EpochMs),
        _one_of("status", DeliveryStatus, "status"),
    ]


def _pending_index(table: str, *columns: str) -> sa.Index:
    return sa.Index(
        f"ix_{table}_pending_{'_'.join(columns)}",
        *columns,
        sqlite_where=sa.text("status = 'PENDING'"),
        postgresql_where=sa.text("status = 'PENDING'"),
    )


webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    # Kept to sign every delivery (Standard Webhooks); shown to the owner once, when added.
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("allow_private", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("removed_ms", EpochMs),
)

webhook_endpoint_events = sa.Table(
    "webhook_endpoint_events",
    metadata,
    sa.Column("endpoint_id", Id, sa.ForeignKey("webhook_endpoints.id"), primary_key=True),
    sa.Column("event_type", sa.String(32), primary_key=True),
    _one_of("event_type", WebhookEventType, "event_type"),
    sa.Index("ix_webhook_endpoint_events_event_type", "event_type"),
)

# One message per event announced (its body is built once, when first sent).
webhook_messages = sa.Table(
    "webhook_messages",
    metadata,
    sa.Column("id", Id, primary_key=True),
    # The `webhook-id` header: the same on every try and replay, for receivers to deduplicate.
    sa.Column("public_id", sa.String(40), nullable=False, unique=True),
    sa.Column("outbox_id", Id, sa.ForeignKey("outbox.id"), nullable=False, unique=True),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("body", sa.Text),
    _one_of("event_type", WebhookEventType, "event_type"),
)

# One row per message per endpoint, written with the change (see OutboxRepository.add_event).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("message_id", Id, sa.ForeignKey("webhook_messages.id"), nullable=False),
    sa.Column("endpoint_id", Id, sa.ForeignKey("webhook_endpoints.id"), nullable=False),
    # The message's order, here too: an endpoint gets one order's messages in order.
    sa.Column("order_id", Id, sa.ForeignKey("orders.id"), nullable=False),
    *_delivery_columns(),
    sa.UniqueConstraint("message_id", "endpoint_id"),
    # The delivery log of an endpoint; its pending deliveries in order (what a worker claims);
    # those due; and the earlier pending one about the same order (which a delivery waits for).
    sa.Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    _pending_index("webhook_deliveries", "endpoint_id", "id"),
    _pending_index("webhook_deliveries", "next_attempt_ms"),
    _pending_index("webhook_deliveries", "endpoint_id", "order_id", "id"),
)

# The delivery log: every HTTP try, its answer's code and how long it took.
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("delivery_id", Id, sa.ForeignKey("webhook_deliveries.id"), nullable=False),
    sa.Column("at_ms", EpochMs, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),
)

# One alert per event people should hear of, written with the change; the worker writes its
# messages, one per chat in the settings, when it first sees it.
telegram_alerts = sa.Table(
    "telegram_alerts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("outbox_id", Id, sa.ForeignKey("outbox.id"), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("order_id", Id, sa.ForeignKey("orders.id")),
    # Alerts with the same key are sent once (Bakong news repeated by every worker cycle).
    sa.Column("dedupe_key", sa.String(96), unique=True),
    sa.Column("created_ms", EpochMs, nullable=False),
    sa.Column("expanded_ms", EpochMs),
    _one_of("kind", AlertKind, "kind"),
    sa.Index(
        "ix_telegram_alerts_unexpanded",
        "id",
        sqlite_where=sa.text("expanded_ms IS NULL"),
        postgresql_where=sa.text("expanded_ms IS NULL"),
    ),
)

telegram_messages = sa.Table(
    "telegram_messages",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("alert_id", Id, sa.ForeignKey("telegram_alerts.id"), nullable=False),
    sa.Column("chat_id", sa.String(64), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    *_delivery_columns(),
    sa.UniqueConstraint("alert_id", "chat_id"),
    _pending_index("telegram_messages", "next_attempt_ms"),
    _pending_index("telegram_messages", "chat_id", "id"),
)

# The Bakong request budget shared by every process (migration 0007): payment-check calls counted
# in one-second slots (`khqrpay.orders.budget`), pruned after a minute.
bakong_calls = sa.Table(
    "bakong_calls",
    metadata,
    sa.Column("slot_ms", EpochMs, primary_key=True, autoincrement=False),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.CheckConstraint("calls > 0", name="calls_positive"),
)

# One row: locked by each grant so that two processes never both take the last call, and the
# md5-list refusal every process should know of.
bakong_budget = sa.Table(
    "bakong_budget",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("list_refused_until_ms", EpochMs),
    sa.CheckConstraint("id = 1", name="one_row"),
)
