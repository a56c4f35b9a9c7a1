"""Alembic migrations, shipped inside the package so `khqrpay db upgrade` works when installed."""
