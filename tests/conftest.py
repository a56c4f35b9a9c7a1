"""Shared fixtures: migrated databases on SQLite and PostgreSQL, a fake clock, settings, a shop.

`database` is parametrised over both backends and gives each test a fresh, migrated database:
SQLite copies a template file migrated once per session; PostgreSQL clones a template database
(`CREATE DATABASE ... TEMPLATE`) migrated once per session, and drops the clone afterwards. The
PostgreSQL server is `KHQRPAY_TEST_POSTGRES_URL` (default `postgres@127.0.0.1:5432`); if it is
unreachable those tests skip, unless `KHQRPAY_REQUIRE_POSTGRES=1` (CI), when they fail.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from khqrpay.clock import FakeClock
from khqrpay.db import Database, migrate
from khqrpay.money import Currency, Money
from khqrpay.orders.model import Evidence, EvidenceSource, KhqrPayment, LineRequest, Product
from khqrpay.services.checkout import CreatedOrder, create_order
from khqrpay.services.completion import CompletionResult, record_payment
from khqrpay.services.products import add_product
from khqrpay.settings import Settings

POSTGRES_SERVER_URL = os.environ.get(
    "KHQRPAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MERCHANT_ACCOUNT = "shop@devb"
BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as libpq conninfo (psycopg connects without SQLAlchemy's driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """A reachable PostgreSQL server (its maintenance database), or skip / fail per CI policy."""
    try:
        psycopg.connect(_libpq(POSTGRES_SERVER_URL), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("KHQRPAY_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                f"PostgreSQL is required (KHQRPAY_REQUIRE_POSTGRES=1) but unreachable: {exc}"
            )
        shown = make_url(POSTGRES_SERVER_URL).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL unreachable at {shown}: {exc}")
    return POSTGRES_SERVER_URL


class PostgresServer:
    """Creates and drops uniquely named databases on the test server."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(_libpq(self.server_url), autocommit=True)

    def create(self, *, template: str | None = None) -> str:
        name = f"khqrpay_test_{uuid.uuid4().hex[:12]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._admin() as admin:
            admin.execute(statement)
        return name

    def drop(self, name: str) -> None:
        with self._admin() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def url(self, name: str) -> str:
        return _with_database(self.server_url, name)


@pytest.fixture(scope="session")
def postgres(postgres_server_url: str) -> PostgresServer:
    return PostgresServer(postgres_server_url)


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresServer) -> Iterator[str]:
    """A database migrated once per session, cloned by each test."""
    name = postgres.create()
    database = Database.from_url(postgres.url(name))
    try:
        migrate.upgrade(database)
    finally:
        database.dispose()
    yield name
    postgres.drop(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    database = Database.from_url(f"sqlite:///{path}")
    migrate.upgrade(database)
    database.dispose()
    return path


@contextmanager
def _fresh_database_url(request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database on the backend `request.param`, removed after."""
    if request.param == "sqlite":
        path = folder / "khqrpay.sqlite3"
        # SQLite's backup API copies the database whole, whatever is still in the WAL file.
        with (
            closing(sqlite3.connect(request.getfixturevalue("sqlite_template"))) as template,
            closing(sqlite3.connect(path)) as copy,
        ):
            template.backup(copy)
        yield f"sqlite:///{path}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = postgres.create(template=request.getfixturevalue("postgres_template"))
    try:
        yield postgres.url(name)
    finally:
        postgres.drop(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database on each backend, removed after the test."""
    with _fresh_database_url(request, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One fresh database on each backend for a whole module, whose tests each keep to rows of
    their own (creating a PostgreSQL database costs a second or two on a loaded machine)."""
    with _fresh_database_url(request, tmp_path_factory.mktemp("module-db")) as url:
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    yield database
    database.dispose()


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database with no tables at all, for migration tests."""
    if request.param == "sqlite":
        database = Database.from_url(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        yield database
        database.dispose()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = postgres.create()
    database = Database.from_url(postgres.url(name))
    try:
        yield database
    finally:
        database.dispose()
        postgres.drop(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        merchant_account=MERCHANT_ACCOUNT,
        merchant_name="Test Shop",
        merchant_city="Phnom Penh",
    )


_hash_numbers = itertools.count(1)
_sku_numbers = itertools.count(1)


def bakong_hash() -> str:
    """A new, unique 64-hex Bakong transaction hash."""
    return hashlib.sha256(f"test-transfer-{next(_hash_numbers)}".encode()).hexdigest()


@dataclass
class Shop:
    """Builds the data tests need through the real services."""

    database: Database
    settings: Settings
    clock: FakeClock

    def product(self, *, price: str = "1.50", currency: str = "USD", stock: int = 10) -> Product:
        return add_product(
            self.database,
            # Unique in the session, so that shops may share a database.
            sku=f"SKU-{next(_sku_numbers)}",
            name="Test product",
            price=Money(Decimal(price), Currency(currency)),
            stock=stock,
            now_ms=self.clock.now_ms(),
        )

    def order(self, *lines: tuple[Product, int], phone: str | None = None) -> CreatedOrder:
        return create_order(
            self.database,
            lines=[LineRequest(product.sku, quantity) for product, quantity in lines],
            phone=phone,
            settings=self.settings,
            clock=self.clock,
        )

    def record(
        self,
        order_id: int,
        evidence: Evidence | None,
        *,
        source: EvidenceSource = EvidenceSource.VERIFIER,
        payment_id: int | None = None,
    ) -> CompletionResult:
        """Record a payment through the completion function now: from a worker, or from staff
        (`MARK_PAID`, with a reason)."""
        staff = source is EvidenceSource.MARK_PAID
        with self.database.write() as uow:
            return record_payment(
                uow,
                order_id=order_id,
                evidence=evidence,
                source=source,
                actor="staff:sok" if staff else "worker:test",
                reason="customer showed a receipt" if staff else None,
                payment_id=payment_id,
                now_ms=self.clock.now_ms(),
            )

    def evidence(
        self,
        payment: KhqrPayment,
        *,
        transfer_hash: str | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        to_account: str | None = None,
        paid_ms: int | None = None,
    ) -> Evidence:
        """What Bakong would say for a payment of `payment`'s QR, with any detail changed."""
        return Evidence(
            bakong_hash=transfer_hash or bakong_hash(),
            from_account="customer@aba",
            to_account=to_account or payment.to_account,
            amount=payment.amount.amount if amount is None else amount,
            currency=currency or payment.amount.currency.value,
            paid_ms=self.clock.now_ms() if paid_ms is None else paid_ms,
        )


@pytest.fixture
def shop(database: Database, settings: Settings, clock: FakeClock) -> Shop:
    return Shop(database, settings, clock)
