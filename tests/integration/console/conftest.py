"""The console's fixture: see `helpers.console`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.console import Console, running_console

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.settings import Settings


@pytest.fixture
def console(database: Database, settings: Settings, clock: FakeClock) -> Iterator[Console]:
    with running_console(database, settings, clock) as running:
        yield running
