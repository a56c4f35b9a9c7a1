"""The staff console: staff accounts, failed logins for throttling, one row per check round for
the dashboard's Bakong figures, and the indexes of the dashboard's figures of the day.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in `khqrpay.db.tables` as they are at this revision.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SOURCES = "source IN ('verifier', 'verify_instantly', 'mark_paid')"
ROLES = "role IN ('owner', 'staff')"


def upgrade() -> None:
    op.create_index("ix_payment_evidence_recorded_ms", "payment_evidence", ["recorded_ms"])
    op.create_index("ix_orders_completed_ms", "orders", ["completed_ms"])
    op.create_table(
        "verification_rounds",
        sa.Column("id", ID, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("checks", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("outcomes", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_rounds")),
        sa.CheckConstraint(SOURCES, name=op.f("ck_verification_rounds_source")),
    )
    op.create_index(op.f("ix_verification_rounds_at_ms"), "verification_rounds", ["at_ms"])
    op.create_table(
        "staff_users",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, server_default=sa.false(), nullable=False),
        sa.Column("sessions_valid_from_ms", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
        sa.UniqueConstraint("name", name=op.f("uq_staff_users_name")),
        sa.CheckConstraint(ROLES, name=op.f("ck_staff_users_role")),
    )
    op.create_table(
        "staff_login_failures",
        sa.Column("id", ID, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_login_failures")),
    )
    op.create_index(
        "ix_staff_login_failures_user_name_at_ms", "staff_login_failures", ["user_name", "at_ms"]
    )
    op.create_index(
        "ix_staff_login_failures_address_at_ms", "staff_login_failures", ["address", "at_ms"]
    )


def downgrade() -> None:
    op.drop_table("staff_login_failures")
    op.drop_table("staff_users")
    op.drop_index(op.f("ix_verification_rounds_at_ms"), table_name="verification_rounds")
    op.drop_table("verification_rounds")
    op.drop_index("ix_orders_completed_ms", table_name="orders")
    op.drop_index("ix_payment_evidence_recorded_ms", table_name="payment_evidence")
