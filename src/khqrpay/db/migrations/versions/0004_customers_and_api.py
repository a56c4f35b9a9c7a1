"""The customer side and the JSON API: the customer's name, orders by amount made by API clients
(their reference), the clients' keys (hashed) and their Idempotency-Keys; indexes for finding a
customer's orders by phone and a client's orders.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in `khqrpay.db.tables` as they were at this revision.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = sa.text("revoked_ms IS NULL")


def upgrade() -> None:
    # Nullable columns with no default: instant on both backends, no table copy.
    op.add_column("orders", sa.Column("customer_name", sa.String(100), nullable=True))
    op.add_column("orders", sa.Column("reference", sa.String(64), nullable=True))
    op.add_column("orders", sa.Column("api_client", sa.String(48), nullable=True))
    op.create_index("ix_orders_customer_phone", "orders", ["customer_phone"])
    op.create_index("ix_orders_api_client_id", "orders", ["api_client", "id"])

    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("client", sa.String(48), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("shown", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(
        "ix_api_keys_active_client",
        "api_keys",
        ["client"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("client", sa.String(48), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("order_id", ID, nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_idempotency_keys_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("client", "key", name=op.f("uq_idempotency_keys_client_key")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("ix_api_keys_active_client", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index("ix_orders_api_client_id", table_name="orders")
    op.drop_index("ix_orders_customer_phone", table_name="orders")
    # SQLite (3.35+) drops a column that no index or constraint uses in place, like PostgreSQL.
    op.drop_column("orders", "api_client")
    op.drop_column("orders", "reference")
    op.drop_column("orders", "customer_name")
