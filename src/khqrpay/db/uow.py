"""A unit of work: one transaction and the repositories that run in it.

Each repository is made (and its module imported) the first time a service reaches it in the
transaction, so reading one order builds one repository, and a command imports only the SQL it
runs."""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from khqrpay.db.repositories.api_clients import ApiKeyRepository, IdempotencyRepository
    from khqrpay.db.repositories.attempts import AttemptRepository
    from khqrpay.db.repositories.audit import AuditRepository
    from khqrpay.db.repositories.budget import BudgetRepository
    from khqrpay.db.repositories.evidence import EvidenceRepository
    from khqrpay.db.repositories.job_leases import JobLeaseRepository
    from khqrpay.db.repositories.orders import OrderRepository
    from khqrpay.db.repositories.outbox import OutboxRepository
    from khqrpay.db.repositories.payments import PaymentRepository
    from khqrpay.db.repositories.products import ProductRepository
    from khqrpay.db.repositories.staff_users import LoginFailureRepository, StaffUserRepository
    from khqrpay.db.repositories.telegram import TelegramRepository
    from khqrpay.db.repositories.webhooks import WebhookRepository

Repository = TypeVar("Repository")


class _OnFirstUse(Generic[Repository]):
    """A repository class `name` of `khqrpay.db.repositories.<module>`, made with the unit of
    work's connection on first use and kept on it (the attribute then hides this descriptor)."""

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name
        self._attribute = ""

    def __set_name__(self, owner: type, attribute: str) -> None:
        self._attribute = attribute

    @overload
    def __get__(self, uow: None, owner: type) -> _OnFirstUse[Repository]: ...

    @overload
    def __get__(self, uow: UnitOfWork, owner: type) -> Repository: ...

    def __get__(self, uow: UnitOfWork | None, owner: type) -> Any:
        if uow is None:
            return self
        module = importlib.import_module(f"khqrpay.db.repositories.{self._module}")
        repository = getattr(module, self._name)(uow.connection)
        uow.__dict__[self._attribute] = repository
        return repository


class UnitOfWork:
    """Made by `Database.write()` / `Database.read()`, which commit or roll back; never commits
    by itself, so a service can combine several repositories' writes atomically."""

    products: _OnFirstUse[ProductRepository] = _OnFirstUse("products", "ProductRepository")
    orders: _OnFirstUse[OrderRepository] = _OnFirstUse("orders", "OrderRepository")
    payments: _OnFirstUse[PaymentRepository] = _OnFirstUse("payments", "PaymentRepository")
    evidence: _OnFirstUse[EvidenceRepository] = _OnFirstUse("evidence", "EvidenceRepository")
    audit: _OnFirstUse[AuditRepository] = _OnFirstUse("audit", "AuditRepository")
    webhooks: _OnFirstUse[WebhookRepository] = _OnFirstUse("webhooks", "WebhookRepository")
    telegram: _OnFirstUse[TelegramRepository] = _OnFirstUse("telegram", "TelegramRepository")
    attempts: _OnFirstUse[AttemptRepository] = _OnFirstUse("attempts", "AttemptRepository")
    api_keys: _OnFirstUse[ApiKeyRepository] = _OnFirstUse("api_clients", "ApiKeyRepository")
    idempotency: _OnFirstUse[IdempotencyRepository] = _OnFirstUse(
        "api_clients", "IdempotencyRepository"
    )
    staff_users: _OnFirstUse[StaffUserRepository] = _OnFirstUse(
        "staff_users", "StaffUserRepository"
    )
    login_failures: _OnFirstUse[LoginFailureRepository] = _OnFirstUse(
        "staff_users", "LoginFailureRepository"
    )
    budget: _OnFirstUse[BudgetRepository] = _OnFirstUse("budget", "BudgetRepository")
    job_leases: _OnFirstUse[JobLeaseRepository] = _OnFirstUse("job_leases", "JobLeaseRepository")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.connection.dialect.name

    @cached_property
    def outbox(self) -> OutboxRepository:
        from khqrpay.db.repositories.outbox import OutboxRepository

        # It fans events out to the webhook and Telegram tables, in the same transaction.
        return OutboxRepository(self.connection, self.webhooks, self.telegram)
