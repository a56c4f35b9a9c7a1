"""Staff use cases: the reference of a refund staff recorded, on the order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column with no default: an instant change on both backends, no table copy.
    op.add_column("orders", sa.Column("refund_reference", sa.String(128), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column that no index or constraint uses in place, like PostgreSQL.
    op.drop_column("orders", "refund_reference")
