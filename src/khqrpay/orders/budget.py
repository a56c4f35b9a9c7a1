"""The Bakong request budget: how many payment-check calls may go out a minute, shared by every
process using the same database (workers, web processes).

Pure arithmetic: no I/O and no clock. Calls are counted in one-second slots; a call counts against
the budget from its slot until a whole minute after the slot ended (`counted_since_ms`), so no 60 s
stretch, aligned or not, ever holds more than `calls_per_min` calls. The calls are also paced: no
10 s stretch holds more than a sixth of a caller's share (staff excepted), so a busy verifier
spends its minute evenly (a call every second or so) instead of all of it at once and then
nothing for most of a minute, which would leave a watched QR unchecked that long.

Who may use what, so that a flood from one side never starves another:
- staff (Verify Instantly, Check Payment Status, a hash check for Mark as Paid) may use it all;
- the verifier all but `staff_reserved` calls (a staff click is never refused for the verifier's
  or the customers' calls);
- customers ("I have paid") only the first half of what the verifier may use: presses, reload
  loops and many tabs are deferred to the verifier (which checks watched QRs first) long before
  they could crowd out its schedule.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

WINDOW_MS = 60_000
PACE_MS = 10_000
SLOT_MS = 1_000


class CallPriority(enum.StrEnum):
    """Who is asking Bakong: decides how much of the budget the call may use."""

    STAFF = "staff"
    VERIFIER = "verifier"
    CUSTOMER = "customer"


def slot_of(now_ms: int) -> int:
    """The one-second slot a call made at `now_ms` is counted in."""
    return now_ms - now_ms % SLOT_MS


def counted_since_ms(now_ms: int, window_ms: int = WINDOW_MS) -> int:
    """Slots starting after this still count at `now_ms` in a window of `window_ms` (the
    minute, or the pace's 10 s): a call counts for the window plus up to a second."""
    return now_ms - window_ms - SLOT_MS


@dataclass(frozen=True, slots=True)
class CallBudget:
    """`calls_per_min` payment-check calls a minute in all, `staff_reserved` of them kept for
    staff."""

    calls_per_min: int
    staff_reserved: int

    def __post_init__(self) -> None:
        if self.calls_per_min < 1:
            raise ValueError("calls_per_min must be at least 1")
        if not 0 <= self.staff_reserved < self.calls_per_min:
            raise ValueError("staff_reserved must be at least 0 and less than calls_per_min")

    def ceiling(self, priority: CallPriority) -> int:
        """How many calls the window may hold, at most, when a call of `priority` is granted."""
        if priority is CallPriority.STAFF:
            return self.calls_per_min
        shared = self.calls_per_min - self.staff_reserved
        return shared if priority is CallPriority.VERIFIER else shared // 2

    def pace(self, priority: CallPriority) -> int:
        """How many calls the last 10 s may hold when a call of `priority` is granted."""
        ceiling = self.ceiling(priority)
        if priority is CallPriority.STAFF:
            return ceiling  # a click is never held back to smooth the others' calls
        return max(1, -(-ceiling * PACE_MS // WINDOW_MS))

    def grant(self, asked: int, *, used: int, recent: int, priority: CallPriority) -> int:
        """How many of `asked` calls may go out now, with `used` already in the minute and
        `recent` of them in the last 10 s."""
        if asked < 0 or used < 0 or recent < 0:
            raise ValueError("asked, used and recent must not be negative")
        left = min(self.ceiling(priority) - used, self.pace(priority) - recent)
        return max(0, min(asked, left))

    def md5s_affordable(
        self, *, used: int, recent: int, per_call: int, priority: CallPriority
    ) -> int:
        """How many QRs the calls still allowed can check, `per_call` a call (50 with the md5
        list, 1 with single checks)."""
        if per_call < 1:
            raise ValueError("per_call must be at least 1")
        allowed = self.grant(self.calls_per_min, used=used, recent=recent, priority=priority)
        return allowed * per_call
