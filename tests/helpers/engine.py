"""The engine's parts built one way wherever a test needs them: a verifier (a worker's claim →
check → apply) and the staff actions, on one database, Bakong client, settings and clock; and a
Bakong client with an event loop of its own, for a thread that acts as a worker or staff."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import SecretStr

from khqrpay.bakong import BakongClient
from khqrpay.bootstrap import App
from khqrpay.clock import Clock, SystemClock
from khqrpay.db import Database
from khqrpay.services.budget import SharedCallBudget
from khqrpay.services.manual import ManualActions
from khqrpay.services.verification import Verifier
from khqrpay.settings import Settings
from khqrpay.simulator.server import RunningSimulator


def new_verifier(
    database: Database,
    client: BakongClient,
    settings: Settings,
    clock: Clock,
    worker_id: str,
    budget: SharedCallBudget | None = None,
) -> Verifier:
    return Verifier(
        database=database,
        client=client,
        settings=settings,
        clock=clock,
        worker_id=worker_id,
        budget=budget,
    )


def new_staff_actions(
    database: Database, client: BakongClient, settings: Settings, clock: Clock
) -> ManualActions:
    """Staff actions as the composition root builds them."""
    return App(settings=settings, database=database, clock=clock).services_on(client).staff


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA certificates takes ~0.1 s: once per process, not once per client.
    return ssl.create_default_context()


def in_own_loop(
    settings: Settings,
    work: Callable[[BakongClient], Awaitable[None]],
    client_class: type[BakongClient] = BakongClient,
) -> None:
    """Run `work` with a Bakong client of its own, in a new event loop (one per thread)."""

    async def main() -> None:
        transport = httpx.AsyncHTTPTransport(verify=_tls_context())
        async with client_class(
            settings=settings, clock=SystemClock(), transport=transport
        ) as client:
            await work(client)

    asyncio.run(main())


def engine_settings(base: Settings, simulator: RunningSimulator, **changes: Any) -> Settings:
    """Settings pointing at the simulator, with waits short enough for tests."""
    return base.model_copy(
        update={
            "bakong_url": simulator.url,
            "bakong_token": SecretStr(simulator.token),
            "bakong_timeout_s": 0.5,
            "bakong_max_retries": 1,
            "bakong_backoff_base_s": 0.01,
            "bakong_backoff_max_s": 0.02,
            "bakong_rate_limit_per_s": 10_000.0,
            "bakong_breaker_reset_s": 0.05,
            "worker_unauthorized_pause_s": 60.0,
            **changes,
        }
    )
