"""Virtual waiting: code under test sleeps on a FakeClock, so waits are checked, not waited."""

from __future__ import annotations

import asyncio

from khqrpay.clock import FakeClock


class VirtualSleep:
    """Records every wait and moves the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(ms=round(seconds * 1000))
        # Yield to the loop as a real sleep would, so concurrent waiters interleave.
        await asyncio.sleep(0)
