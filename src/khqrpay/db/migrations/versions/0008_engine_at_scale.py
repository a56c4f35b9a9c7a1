"""The engine at scale: a partial index for the ride-along claim (the pending-by-age gauge uses
0007's `ix_khqr_payments_fresh`), and the leases of the jobs one worker at a time runs (expiry
sweep, gauges).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'PENDING'")


def upgrade() -> None:
    op.create_index(
        "ix_khqr_payments_pending_last_checked",
        "khqr_payments",
        ["last_checked_ms"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_index("ix_khqr_payments_pending_last_checked", table_name="khqr_payments")
