"""Products with a Khmer name beside the English one, and order lines keeping it as ordered.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
# 0007-0009 are reserved for other branches; whoever merges them chains this one after them.
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns with no default: instant on both backends, no table copy; existing
    # products and order lines simply have no Khmer name.
    op.add_column("products", sa.Column("name_km", sa.String(200), nullable=True))
    op.add_column("order_lines", sa.Column("name_km", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("order_lines", "name_km")
    op.drop_column("products", "name_km")
