"""The composition root: the one place that builds khqrpay's parts from the settings.

Entry points (the CLI, the worker, the demo, the web app) get their parts from here and wire
nothing by hand:

    with bootstrap() as app:                      # settings, database, clock, schedule
        details = order_details(app.database, 7)
        async with app.bakong() as bakong:        # the Bakong client and the services using it
            await bakong.staff.verify_instantly(7, actor="staff:dara")

One process may host the web app, the worker and the outbox relay on one event bus
(`app.event_bus()`, in-process on SQLite, LISTEN/NOTIFY on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx

from khqrpay.bakong import BakongClient, BakongMetrics
from khqrpay.clock import Clock, SystemClock
from khqrpay.db import Database, migrate
from khqrpay.events import EventBus, create_event_bus
from khqrpay.orders.schedule import SchedulePolicy
from khqrpay.services.checking import PaymentChecker
from khqrpay.services.manual import ManualActions
from khqrpay.services.verification import Verifier
from khqrpay.settings import Settings, load_settings


@dataclass(frozen=True, slots=True)
class BakongServices:
    """The services that talk to Bakong, sharing one client (its rate limit, breaker, token)."""

    client: BakongClient
    checker: PaymentChecker
    staff: ManualActions


@dataclass(frozen=True, slots=True)
class App:
    """The parts of one khqrpay process, built once from the settings."""

    settings: Settings
    database: Database
    clock: Clock

    @property
    def policy(self) -> SchedulePolicy:
        return self.settings.schedule_policy()

    @asynccontextmanager
    async def bakong(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: BakongMetrics | None = None,
    ) -> AsyncIterator[BakongServices]:
        """The Bakong client (closed on exit) and the services built on it. `metrics`: count
        this client's calls in a registry of their own (default: the process's)."""
        async with BakongClient(
            settings=self.settings, clock=self.clock, transport=transport, metrics=metrics
        ) as client:
            yield self.services_on(client)

    def services_on(self, client: BakongClient) -> BakongServices:
        """The Bakong services on a client the caller opened (and closes)."""
        checker = PaymentChecker.configured(self.database, client, self.settings, self.clock)
        staff = ManualActions(
            database=self.database, client=client, checker=checker, clock=self.clock
        )
        return BakongServices(client, checker, staff)

    def verifier(self, bakong: BakongServices, *, worker_id: str) -> Verifier:
        return Verifier(
            database=self.database,
            client=bakong.client,
            settings=self.settings,
            clock=self.clock,
            worker_id=worker_id,
        )

    def event_bus(self) -> EventBus:
        """A new bus for this process: publish and subscribe on it, close it on exit."""
        return create_event_bus(self.settings.database_url)


@contextmanager
def bootstrap(
    settings: Settings | None = None, *, clock: Clock | None = None, migrated: bool = True
) -> Iterator[App]:
    """The app's parts from `settings` (default: the environment), the database disposed on exit.
    `migrated`: refuse a database that is not at the latest schema."""
    settings = load_settings() if settings is None else settings
    database = Database.from_url(settings.database_url)
    try:
        if migrated:
            migrate.require_current(database)
        yield App(settings=settings, database=database, clock=clock or SystemClock())
    finally:
        database.dispose()
