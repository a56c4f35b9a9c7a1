"""The database adapter: tables, engine, units of work, repositories and migrations."""

from khqrpay.db.engine import Database, DatabaseError, create_engine, redacted
from khqrpay.db.repositories import (
    ActiveKeyExists,
    CheckRound,
    DuplicateHash,
    DuplicateSku,
    DuplicateUserName,
    NewEvidence,
    OrderQuery,
    OrderSearch,
)
from khqrpay.db.uow import UnitOfWork

__all__ = [
    "ActiveKeyExists",
    "CheckRound",
    "Database",
    "DatabaseError",
    "DuplicateHash",
    "DuplicateSku",
    "DuplicateUserName",
    "NewEvidence",
    "OrderQuery",
    "OrderSearch",
    "UnitOfWork",
    "create_engine",
    "redacted",
]
