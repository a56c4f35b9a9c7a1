"""The database adapter: tables, engine, units of work, repositories and migrations."""

from khqrpay.db.engine import Database, DatabaseError, create_engine, redacted
from khqrpay.db.repositories import ActiveKeyExists, DuplicateHash, DuplicateSku
from khqrpay.db.uow import UnitOfWork

__all__ = [
    "ActiveKeyExists",
    "Database",
    "DatabaseError",
    "DuplicateHash",
    "DuplicateSku",
    "UnitOfWork",
    "create_engine",
    "redacted",
]
