"""Evidence as Bakong gives it: the receiving account may be absent, and the paid time's source.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAID_TIMES = "paid_time IN ('created', 'acknowledged', 'seen')"


def upgrade() -> None:
    # Batch mode: SQLite changes a column's nullability by copying the table.
    with op.batch_alter_table("payment_evidence") as batch:
        batch.alter_column("to_account", existing_type=sa.String(128), nullable=True)
        # Every row so far was recorded from Bakong's createdDateMs.
        batch.add_column(
            sa.Column("paid_time", sa.String(16), server_default="created", nullable=False)
        )
        batch.create_check_constraint(op.f("ck_payment_evidence_paid_time"), PAID_TIMES)


def downgrade() -> None:
    with op.batch_alter_table("payment_evidence") as batch:
        batch.drop_constraint(op.f("ck_payment_evidence_paid_time"), type_="check")
        batch.drop_column("paid_time")
        batch.alter_column("to_account", existing_type=sa.String(128), nullable=False)
