"""Outbound news: webhook endpoints, messages, deliveries and their log; Telegram alerts and
messages.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types and value lists in `khqrpay.db.tables` as they are at this revision.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = sa.text("status = 'PENDING'")
UNEXPANDED = sa.text("expanded_ms IS NULL")
EVENT_TYPES = (
    "event_type IN ('order.created', 'order.completed', 'order.needs_review', "
    "'order.expired', 'order.cancelled', 'order.refund_flagged')"
)
ALERT_KINDS = (
    "kind IN ('payment', 'needs_review', 'refund_flag', 'bakong_unauthorized', 'token_expiring')"
)
DELIVERY_STATUSES = "status IN ('PENDING', 'DELIVERED', 'DEAD')"


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, nullable=False)


def _ref(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, ID, nullable=nullable)


def _ms(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def _delivery(table: str) -> list[sa.Column[Any] | sa.CheckConstraint]:
    return [
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _ms("created_ms"),
        _ms("started_ms"),
        _ms("next_attempt_ms"),
        _ms("last_attempt_ms", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ms("done_ms", nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _ms("lease_until_ms", nullable=True),
        sa.CheckConstraint(DELIVERY_STATUSES, name=op.f(f"ck_{table}_status")),
    ]


def _pending_index(table: str, *columns: str) -> None:
    op.create_index(
        f"ix_{table}_pending_{'_'.join(columns)}",
        table,
        list(columns),
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        _id(),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("allow_private", sa.Boolean(), server_default=sa.false(), nullable=False),
        _ms("created_ms"),
        _ms("removed_ms", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_endpoint_events",
        _ref("endpoint_id"),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.CheckConstraint(EVENT_TYPES, name=op.f("ck_webhook_endpoint_events_event_type")),
        _fk("webhook_endpoint_events", "endpoint_id", "webhook_endpoints"),
        sa.PrimaryKeyConstraint(
            "endpoint_id", "event_type", name=op.f("pk_webhook_endpoint_events")
        ),
    )
    op.create_index(
        "ix_webhook_endpoint_events_event_type", "webhook_endpoint_events", ["event_type"]
    )
    op.create_table(
        "webhook_messages",
        _id(),
        sa.Column("public_id", sa.String(40), nullable=False),
        _ref("outbox_id"),
        sa.Column("event_type", sa.String(32), nullable=False),
        _ref("order_id"),
        _ms("created_ms"),
        sa.Column("body", sa.Text(), nullable=True),
        sa.CheckConstraint(EVENT_TYPES, name=op.f("ck_webhook_messages_event_type")),
        _fk("webhook_messages", "outbox_id", "outbox"),
        _fk("webhook_messages", "order_id", "orders"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_messages")),
        sa.UniqueConstraint("public_id", name=op.f("uq_webhook_messages_public_id")),
        sa.UniqueConstraint("outbox_id", name=op.f("uq_webhook_messages_outbox_id")),
    )
    op.create_table(
        "webhook_deliveries",
        _id(),
        _ref("message_id"),
        _ref("endpoint_id"),
        _ref("order_id"),
        *_delivery("webhook_deliveries"),
        _fk("webhook_deliveries", "message_id", "webhook_messages"),
        _fk("webhook_deliveries", "endpoint_id", "webhook_endpoints"),
        _fk("webhook_deliveries", "order_id", "orders"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "message_id", "endpoint_id", name=op.f("uq_webhook_deliveries_message_id_endpoint_id")
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"]
    )
    _pending_index("webhook_deliveries", "endpoint_id", "id")
    _pending_index("webhook_deliveries", "next_attempt_ms")
    _pending_index("webhook_deliveries", "endpoint_id", "order_id", "id")
    op.create_table(
        "webhook_attempts",
        _id(),
        _ref("delivery_id"),
        _ms("at_ms"),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _fk("webhook_attempts", "delivery_id", "webhook_deliveries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery_id_id", "webhook_attempts", ["delivery_id", "id"])

    op.create_table(
        "telegram_alerts",
        _id(),
        _ref("outbox_id"),
        sa.Column("kind", sa.String(32), nullable=False),
        _ref("order_id", nullable=True),
        sa.Column("dedupe_key", sa.String(96), nullable=True),
        _ms("created_ms"),
        _ms("expanded_ms", nullable=True),
        sa.CheckConstraint(ALERT_KINDS, name=op.f("ck_telegram_alerts_kind")),
        _fk("telegram_alerts", "outbox_id", "outbox"),
        _fk("telegram_alerts", "order_id", "orders"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_alerts")),
        sa.UniqueConstraint("outbox_id", name=op.f("uq_telegram_alerts_outbox_id")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_telegram_alerts_dedupe_key")),
    )
    op.create_index(
        "ix_telegram_alerts_unexpanded",
        "telegram_alerts",
        ["id"],
        sqlite_where=UNEXPANDED,
        postgresql_where=UNEXPANDED,
    )
    op.create_table(
        "telegram_messages",
        _id(),
        _ref("alert_id"),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        *_delivery("telegram_messages"),
        _fk("telegram_messages", "alert_id", "telegram_alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_messages")),
        sa.UniqueConstraint(
            "alert_id", "chat_id", name=op.f("uq_telegram_messages_alert_id_chat_id")
        ),
    )
    _pending_index("telegram_messages", "next_attempt_ms")
    _pending_index("telegram_messages", "chat_id", "id")


def downgrade() -> None:
    for table in (
        "telegram_messages",
        "telegram_alerts",
        "webhook_attempts",
        "webhook_deliveries",
        "webhook_messages",
        "webhook_endpoint_events",
        "webhook_endpoints",
    ):
        # Dropping a table drops its indexes, on both backends.
        op.drop_table(table)
