"""The engine's parts built one way wherever a test needs them: a verifier (a worker's claim →
check → apply) and the staff actions, on one database, Bakong client, settings and clock."""

from __future__ import annotations

from khqrpay.bakong import BakongClient
from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.services.manual import ManualActions
from khqrpay.services.verification import Verifier
from khqrpay.settings import Settings


def new_verifier(
    database: Database, client: BakongClient, settings: Settings, clock: Clock, worker_id: str
) -> Verifier:
    return Verifier(
        database=database, client=client, settings=settings, clock=clock, worker_id=worker_id
    )


def new_staff_actions(
    database: Database, client: BakongClient, settings: Settings, clock: Clock
) -> ManualActions:
    """Staff actions; Verify Instantly uses a verifier of its own (`staff-tool`)."""
    return ManualActions(
        database=database,
        client=client,
        verifier=new_verifier(database, client, settings, clock, "staff-tool"),
        clock=clock,
    )
