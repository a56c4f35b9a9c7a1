"""The composition root: the one place that builds khqrpay's parts from the settings.

Entry points (the CLI, the worker, the demo, the web app) get their parts from here and wire
nothing by hand:

    with bootstrap() as app:                      # settings, database, clock, schedule
        details = order_details(app.database, 7)
        async with app.bakong() as bakong:        # the Bakong client and the services using it
            await bakong.staff.verify_instantly(7, actor="staff:dara")

One process may host the web app, the worker and the outbox relay on one event bus
(`app.event_bus()`, in-process on SQLite, LISTEN/NOTIFY on PostgreSQL). The worker sends webhooks
and Telegram alerts through `app.dispatchers(owner=...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from khqrpay.clock import Clock, SystemClock
from khqrpay.db import Database, migrate
from khqrpay.orders.schedule import SchedulePolicy
from khqrpay.settings import Settings, load_settings

# The parts for Bakong, the event bus and the outbound senders are imported by the methods that
# build them: a command that only reads the database (`khqrpay orders show`) starts without them.
if TYPE_CHECKING:
    import httpx

    from khqrpay.bakong import BakongClient, BakongMetrics
    from khqrpay.events import EventBus
    from khqrpay.outbound.addresses import Resolver
    from khqrpay.services.budget import SharedCallBudget
    from khqrpay.services.checking import PaymentChecker
    from khqrpay.services.dispatch import Dispatcher
    from khqrpay.services.manual import ManualActions
    from khqrpay.services.verification import Verifier

# Claimed webhooks and alerts stay a worker's for their tries and this long more.
LEASE_MARGIN_S = 30.0


@dataclass(frozen=True, slots=True)
class BakongServices:
    """The services that talk to Bakong, sharing one client (its rate limit, breaker, token)
    and the request budget every process shares (None on a client opened without it)."""

    client: BakongClient
    checker: PaymentChecker
    staff: ManualActions
    budget: SharedCallBudget | None = None


@dataclass(frozen=True, slots=True)
class App:
    """The parts of one khqrpay process, built once from the settings."""

    settings: Settings
    database: Database
    clock: Clock

    @property
    def policy(self) -> SchedulePolicy:
        return self.settings.schedule_policy()

    def call_budget(self) -> SharedCallBudget:
        """The Bakong request budget, shared through the database with every other process."""
        from khqrpay.services.budget import SharedCallBudget

        return SharedCallBudget(self.database, self.settings.call_budget(), self.clock)

    @asynccontextmanager
    async def bakong(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: BakongMetrics | None = None,
    ) -> AsyncIterator[BakongServices]:
        """The Bakong client (closed on exit) and the services built on it. `metrics`: count
        this client's calls in a registry of their own (default: the process's). Every payment
        check takes from the request budget all processes share."""
        from khqrpay.bakong import BakongClient

        budget = self.call_budget()
        async with BakongClient(
            settings=self.settings,
            clock=self.clock,
            transport=transport,
            metrics=metrics,
            gate=budget,
        ) as client:
            yield self.services_on(client, budget=budget)

    def services_on(
        self, client: BakongClient, *, budget: SharedCallBudget | None = None
    ) -> BakongServices:
        """The Bakong services on a client the caller opened (and closes); `budget`: the one
        that client's gate is (the verifier plans with it)."""
        from khqrpay.services.checking import PaymentChecker
        from khqrpay.services.manual import ManualActions

        checker = PaymentChecker.configured(self.database, client, self.settings, self.clock)
        staff = ManualActions(
            database=self.database, client=client, checker=checker, clock=self.clock
        )
        return BakongServices(client, checker, staff, budget)

    def verifier(self, bakong: BakongServices, *, worker_id: str) -> Verifier:
        from khqrpay.services.verification import Verifier

        return Verifier(
            database=self.database,
            client=bakong.client,
            settings=self.settings,
            clock=self.clock,
            worker_id=worker_id,
            budget=bakong.budget,
        )

    @asynccontextmanager
    async def dispatchers(
        self,
        *,
        owner: str,
        resolver: Resolver | None = None,
        verifier_busy: Callable[[], bool] = lambda: False,
    ) -> AsyncIterator[list[Dispatcher[Any]]]:
        """The worker's outbound senders, their connections closed on exit: webhooks always,
        Telegram alerts when a bot token and chats are set. `resolver`: how webhook hosts are
        resolved (default: the system's); `verifier_busy`: whether payments are waiting, when
        sending holds back."""
        from khqrpay.outbound.telegram_bot import TelegramBotSender
        from khqrpay.outbound.webhook_http import HttpWebhookSender
        from khqrpay.services.alerts import TelegramChannel
        from khqrpay.services.dispatch import Dispatcher, QueueChannel, jitter_source, lease_ms
        from khqrpay.services.webhooks import WebhookChannel

        settings, clock = self.settings, self.clock
        schedule, jitter = settings.retry_schedule(), jitter_source()

        def dispatcher(
            kind: type[QueueChannel[Any]], concurrency: int, timeout_s: float, **own: Any
        ) -> Dispatcher[Any]:
            channel = kind(
                database=self.database,
                schedule=schedule,
                owner=owner,
                jitter=jitter,
                lease_ms=lease_ms(timeout_s, LEASE_MARGIN_S),
                **own,
            )
            return Dispatcher(
                channel,
                clock=clock,
                concurrency=concurrency,
                poll_interval_s=settings.worker_poll_interval_s,
                shutdown_grace_s=settings.worker_shutdown_grace_s,
                verifier_busy=verifier_busy,
            )

        async with AsyncExitStack() as stack:
            webhook_sender = await stack.enter_async_context(
                HttpWebhookSender(
                    clock=clock,
                    timeout_s=settings.webhook_timeout_s,
                    connections_per_endpoint=settings.webhook_endpoint_concurrency,
                    resolver=resolver,
                )
            )
            running = [
                dispatcher(
                    WebhookChannel,
                    settings.webhook_concurrency,
                    settings.webhook_timeout_s,
                    sender=webhook_sender,
                    per_target=settings.webhook_endpoint_concurrency,
                )
            ]
            if settings.telegram_enabled:
                bot = await stack.enter_async_context(
                    TelegramBotSender(
                        token=settings.telegram_bot_token.get_secret_value(),
                        api_url=settings.telegram_api_url,
                        timeout_s=settings.telegram_timeout_s,
                    )
                )
                chats = settings.telegram_chat_list()
                running.append(
                    dispatcher(
                        TelegramChannel,
                        len(chats),
                        settings.telegram_timeout_s,
                        sender=bot,
                        chats=chats,
                        public_url=settings.web_public_url,
                    )
                )
            yield running

    def event_bus(self) -> EventBus:
        """A new bus for this process: publish and subscribe on it, close it on exit."""
        from khqrpay.events import create_event_bus

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
