"""Repositories: the SQL for each table, returning immutable domain objects.

They run inside the caller's transaction (a `UnitOfWork`) and never commit. Writes that must not
race are guarded in SQL (`WHERE status = :expected`, `WHERE stock >= :quantity`) and report
whether they happened. One module per table group; services reach them as `uow.<name>`.

The names below are imported from their modules on first use, so that importing one repository
does not import them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from khqrpay.lazy import on_first_use

if TYPE_CHECKING:
    from khqrpay.db.repositories.api_clients import (
        ActiveKeyExists,
        ApiKeyRepository,
        IdempotencyRepository,
    )
    from khqrpay.db.repositories.attempts import AttemptRepository, CheckRound
    from khqrpay.db.repositories.audit import AuditRepository
    from khqrpay.db.repositories.budget import BudgetRepository
    from khqrpay.db.repositories.evidence import DuplicateHash, EvidenceRepository, NewEvidence
    from khqrpay.db.repositories.job_leases import JobLeaseRepository
    from khqrpay.db.repositories.orders import OrderQuery, OrderRepository, OrderSearch
    from khqrpay.db.repositories.outbox import OutboxRepository
    from khqrpay.db.repositories.payments import PaymentRepository
    from khqrpay.db.repositories.products import DuplicateSku, ProductRepository
    from khqrpay.db.repositories.staff_users import (
        DuplicateUserName,
        LoginFailureRepository,
        StaffUserRepository,
    )
    from khqrpay.db.repositories.telegram import TelegramRepository
    from khqrpay.db.repositories.webhooks import WebhookRepository

# Where each name of `__all__` is defined.
MODULE_OF = {
    "ActiveKeyExists": "api_clients",
    "ApiKeyRepository": "api_clients",
    "IdempotencyRepository": "api_clients",
    "AttemptRepository": "attempts",
    "CheckRound": "attempts",
    "AuditRepository": "audit",
    "BudgetRepository": "budget",
    "DuplicateHash": "evidence",
    "EvidenceRepository": "evidence",
    "NewEvidence": "evidence",
    "JobLeaseRepository": "job_leases",
    "OrderQuery": "orders",
    "OrderRepository": "orders",
    "OrderSearch": "orders",
    "OutboxRepository": "outbox",
    "PaymentRepository": "payments",
    "DuplicateSku": "products",
    "ProductRepository": "products",
    "DuplicateUserName": "staff_users",
    "LoginFailureRepository": "staff_users",
    "StaffUserRepository": "staff_users",
    "TelegramRepository": "telegram",
    "WebhookRepository": "webhooks",
}

__all__ = [
    "ActiveKeyExists",
    "ApiKeyRepository",
    "AttemptRepository",
    "AuditRepository",
    "BudgetRepository",
    "CheckRound",
    "DuplicateHash",
    "DuplicateSku",
    "DuplicateUserName",
    "EvidenceRepository",
    "IdempotencyRepository",
    "JobLeaseRepository",
    "LoginFailureRepository",
    "NewEvidence",
    "OrderQuery",
    "OrderRepository",
    "OrderSearch",
    "OutboxRepository",
    "PaymentRepository",
    "ProductRepository",
    "StaffUserRepository",
    "TelegramRepository",
    "WebhookRepository",
]


__getattr__ = on_first_use(__name__, MODULE_OF)
