"""A unit of work: one transaction and the repositories that run in it."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from khqrpay.db.repositories import (
    ApiKeyRepository,
    AttemptRepository,
    AuditRepository,
    BudgetRepository,
    EvidenceRepository,
    IdempotencyRepository,
    JobLeaseRepository,
    LoginFailureRepository,
    OrderRepository,
    OutboxRepository,
    PaymentRepository,
    ProductRepository,
    StaffUserRepository,
    TelegramRepository,
    WebhookRepository,
)


class UnitOfWork:
    """Made by `Database.write()` / `Database.read()`, which commit or roll back; never commits
    by itself, so a service can combine several repositories' writes atomically."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.products = ProductRepository(connection)
        self.orders = OrderRepository(connection)
        self.payments = PaymentRepository(connection)
        self.evidence = EvidenceRepository(connection)
        self.audit = AuditRepository(connection)
        self.webhooks = WebhookRepository(connection)
        self.telegram = TelegramRepository(connection)
        self.outbox = OutboxRepository(connection, self.webhooks, self.telegram)
        self.attempts = AttemptRepository(connection)
        self.api_keys = ApiKeyRepository(connection)
        self.idempotency = IdempotencyRepository(connection)
        self.staff_users = StaffUserRepository(connection)
        self.login_failures = LoginFailureRepository(connection)
        self.budget = BudgetRepository(connection)
        self.job_leases = JobLeaseRepository(connection)

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.connection.dialect.name
