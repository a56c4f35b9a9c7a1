"""The console's fixtures: see `helpers.console`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.console import Console, fast_password_hashing, running_console
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.settings import Settings


@pytest.fixture(autouse=True)
def _fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@pytest.fixture
def console(database: Database, settings: Settings, clock: FakeClock) -> Iterator[Console]:
    with running_console(database, settings, clock) as running:
        yield running
