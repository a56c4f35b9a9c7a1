"""The Bakong request budget shared by every process, and the claim's watched/fresh tier.

`bakong_calls`: payment-check calls per one-second slot; `bakong_budget`: one row, locked by each
grant, holding until when Bakong refuses the md5 list. Two partial indexes let the claim find
watched (`hot_until_ms`) and fresh (`created_ms`) pending QRs before the backlog.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'PENDING'")


def upgrade() -> None:
    op.create_table(
        "bakong_calls",
        sa.Column("slot_ms", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.CheckConstraint("calls > 0", name=op.f("ck_bakong_calls_calls_positive")),
        sa.PrimaryKeyConstraint("slot_ms", name=op.f("pk_bakong_calls")),
    )
    budget = op.create_table(
        "bakong_budget",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("list_refused_until_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_bakong_budget_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bakong_budget")),
    )
    op.bulk_insert(budget, [{"id": 1, "list_refused_until_ms": None}])
    for name, column in (("hot", "hot_until_ms"), ("fresh", "created_ms")):
        op.create_index(
            f"ix_khqr_payments_{name}",
            "khqr_payments",
            [column],
            sqlite_where=PENDING,
            postgresql_where=PENDING,
        )


def downgrade() -> None:
    op.drop_index("ix_khqr_payments_fresh", table_name="khqr_payments")
    op.drop_index("ix_khqr_payments_hot", table_name="khqr_payments")
    op.drop_table("bakong_budget")
    op.drop_table("bakong_calls")
