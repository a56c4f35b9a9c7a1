"""Initial schema: products, orders and lines, KHQR payments, evidence, audit, attempts, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in `khqrpay.db.tables` as they were at this revision.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EXACT_DECIMAL = sa.Numeric().with_variant(sa.String(64), "sqlite")
CURRENCIES = "currency IN ('KHR', 'USD')"
OUTCOMES = (
    "outcome IN ('paid', 'not_found', 'failed', 'static_qr', 'unauthorized', 'blocked', "
    "'rate_limited', 'unavailable', 'bad_response')"
)
SOURCES = "source IN ('verifier', 'verify_instantly', 'mark_paid')"
PENDING = sa.text("status = 'PENDING'")
UNPUBLISHED = sa.text("published_ms IS NULL")

APPEND_ONLY_SQLITE = """
CREATE TRIGGER audit_log_no_{verb} BEFORE {verb} ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
"""
APPEND_ONLY_POSTGRESQL = (
    """
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
    """,
)


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, nullable=False)


def _ref(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, ID, nullable=nullable)


def _ms(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "products",
        _id(),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        _ms("created_ms"),
        _ms("updated_ms"),
        sa.CheckConstraint(CURRENCIES, name=op.f("ck_products_currency")),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_products_price_not_negative")),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_products_stock_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
    )

    op.create_table(
        "orders",
        _id(),
        sa.Column("public_token", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("customer_phone", sa.String(16), nullable=True),
        _ms("created_ms"),
        _ms("window_end_ms"),
        _ms("completed_ms", nullable=True),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("refund_flag", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("refund_reason", sa.Text(), nullable=True),
        sa.Column(
            "paid_manually_without_hash", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        _ms("updated_ms"),
        sa.CheckConstraint(CURRENCIES, name=op.f("ck_orders_currency")),
        sa.CheckConstraint(
            "status IN ('PENDING', 'COMPLETED', 'NEEDS_REVIEW', 'EXPIRED', 'CANCELLED', "
            "'REFUNDED')",
            name=op.f("ck_orders_status"),
        ),
        sa.CheckConstraint("total_minor > 0", name=op.f("ck_orders_total_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("public_token", name=op.f("uq_orders_public_token")),
    )
    op.create_index("ix_orders_status_id", "orders", ["status", "id"])
    op.create_index(
        "ix_orders_pending_window_end",
        "orders",
        ["window_end_ms"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )

    op.create_table(
        "order_lines",
        _id(),
        _ref("order_id"),
        _ref("product_id"),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_lines_quantity_positive")),
        sa.CheckConstraint(
            "unit_price_minor >= 0", name=op.f("ck_order_lines_unit_price_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_order_lines_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
        sa.UniqueConstraint(
            "order_id", "product_id", name=op.f("uq_order_lines_order_id_product_id")
        ),
    )

    op.create_table(
        "khqr_payments",
        _id(),
        _ref("order_id"),
        sa.Column("qr", sa.Text(), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("to_account", sa.String(64), nullable=False),
        _ms("created_ms"),
        _ms("expires_ms"),
        sa.Column("status", sa.String(8), nullable=False),
        _ms("next_check_ms", nullable=True),
        _ms("earliest_check_ms", nullable=True),
        _ms("hot_until_ms", nullable=True),
        sa.Column("consecutive_errors", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _ms("lease_until_ms", nullable=True),
        sa.Column("check_count", sa.Integer(), server_default="0", nullable=False),
        _ms("last_checked_ms", nullable=True),
        sa.Column("last_outcome", sa.String(16), nullable=True),
        sa.CheckConstraint(CURRENCIES, name=op.f("ck_khqr_payments_currency")),
        sa.CheckConstraint(
            OUTCOMES.replace("outcome IN", "last_outcome IN", 1),
            name=op.f("ck_khqr_payments_last_outcome"),
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'PAID', 'EXPIRED')", name=op.f("ck_khqr_payments_status")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_khqr_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_khqr_payments_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_khqr_payments")),
        sa.UniqueConstraint("md5", name=op.f("uq_khqr_payments_md5")),
    )
    op.create_index(op.f("ix_khqr_payments_order_id"), "khqr_payments", ["order_id"])
    op.create_index(
        "ix_khqr_payments_due",
        "khqr_payments",
        ["next_check_ms"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_khqr_payments_early",
        "khqr_payments",
        ["earliest_check_ms"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )

    op.create_table(
        "payment_evidence",
        _id(),
        _ref("order_id"),
        _ref("payment_id", nullable=True),
        sa.Column("bakong_hash", sa.String(64), nullable=False),
        sa.Column("short_hash", sa.String(8), nullable=False),
        sa.Column("from_account", sa.String(128), nullable=True),
        sa.Column("to_account", sa.String(128), nullable=False),
        sa.Column("amount", EXACT_DECIMAL, nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(8), nullable=False),
        _ms("paid_ms"),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.Column("mismatch_reason", sa.Text(), nullable=True),
        _ms("recorded_ms"),
        sa.CheckConstraint(SOURCES, name=op.f("ck_payment_evidence_source")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_payment_evidence_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["khqr_payments.id"],
            name=op.f("fk_payment_evidence_payment_id_khqr_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_evidence")),
        sa.UniqueConstraint("bakong_hash", name=op.f("uq_payment_evidence_bakong_hash")),
    )
    op.create_index(op.f("ix_payment_evidence_order_id"), "payment_evidence", ["order_id"])
    op.create_index(op.f("ix_payment_evidence_short_hash"), "payment_evidence", ["short_hash"])

    op.create_table(
        "audit_log",
        _id(),
        _ref("order_id", nullable=True),
        _ms("at_ms"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_audit_log_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_order_id_id", "audit_log", ["order_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in APPEND_ONLY_POSTGRESQL:
            op.execute(statement)
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(APPEND_ONLY_SQLITE.format(verb=verb))

    op.create_table(
        "verification_attempts",
        _id(),
        _ref("payment_id"),
        _ref("order_id"),
        _ms("at_ms"),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(OUTCOMES, name=op.f("ck_verification_attempts_outcome")),
        sa.CheckConstraint(SOURCES, name=op.f("ck_verification_attempts_source")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_verification_attempts_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["khqr_payments.id"],
            name=op.f("fk_verification_attempts_payment_id_khqr_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_attempts")),
    )
    op.create_index(
        "ix_verification_attempts_payment_id_id", "verification_attempts", ["payment_id", "id"]
    )
    op.create_index(
        "ix_verification_attempts_order_id_id", "verification_attempts", ["order_id", "id"]
    )

    op.create_table(
        "verification_attempt_totals",
        _ref("payment_id"),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        _ms("last_ms"),
        sa.CheckConstraint(OUTCOMES, name=op.f("ck_verification_attempt_totals_outcome")),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["khqr_payments.id"],
            name=op.f("fk_verification_attempt_totals_payment_id_khqr_payments"),
        ),
        sa.PrimaryKeyConstraint(
            "payment_id", "outcome", name=op.f("pk_verification_attempt_totals")
        ),
    )

    op.create_table(
        "outbox",
        _id(),
        _ms("created_ms"),
        sa.Column("topic", sa.String(64), nullable=False),
        _ref("order_id", nullable=True),
        sa.Column("payload", JSON, nullable=False),
        _ms("published_ms", nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_outbox_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        sqlite_where=UNPUBLISHED,
        postgresql_where=UNPUBLISHED,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    # Indexes and SQLite's triggers go with their tables; children before parents.
    for table in (
        "outbox",
        "verification_attempt_totals",
        "verification_attempts",
        "audit_log",
        "payment_evidence",
        "khqr_payments",
        "order_lines",
        "orders",
        "products",
    ):
        op.drop_table(table)
