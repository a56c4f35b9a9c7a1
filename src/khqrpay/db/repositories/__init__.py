"""Repositories: the SQL for each table, returning immutable domain objects.

They run inside the caller's transaction (a `UnitOfWork`) and never commit. Writes that must not
race are guarded in SQL (`WHERE status = :expected`, `WHERE stock >= :quantity`) and report
whether they happened. One module per table group; services reach them as `uow.<name>`.
"""

from khqrpay.db.repositories.attempts import AttemptRepository
from khqrpay.db.repositories.audit import AuditRepository
from khqrpay.db.repositories.evidence import DuplicateHash, EvidenceRepository
from khqrpay.db.repositories.orders import OrderRepository
from khqrpay.db.repositories.outbox import OutboxRepository
from khqrpay.db.repositories.payments import PaymentRepository
from khqrpay.db.repositories.products import DuplicateSku, ProductRepository
from khqrpay.db.repositories.telegram import TelegramRepository
from khqrpay.db.repositories.webhooks import WebhookRepository

__all__ = [
    "AttemptRepository",
    "AuditRepository",
    "DuplicateHash",
    "DuplicateSku",
    "EvidenceRepository",
    "OrderRepository",
    "OutboxRepository",
    "PaymentRepository",
    "ProductRepository",
    "TelegramRepository",
    "WebhookRepository",
]
