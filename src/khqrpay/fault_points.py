"""Fault points: named places in the code where a test stops the process, to prove that a crash
there loses and doubles nothing (e.g. SIGKILL inside the completion transaction).

Armed only by the environment variable `KHQRPAY_FAULT_POINT=<point>`, read once at import and
deliberately not a setting (no `.env` or deployment option can arm it): the process logs that it
reached the point and waits there until it is killed. Unarmed, `reached` compares one string.
"""

from __future__ import annotations

import os
import threading

from khqrpay.logging import get_logger

ENVIRONMENT_VARIABLE = "KHQRPAY_FAULT_POINT"
# The completion function's writes are done and its transaction is not yet committed.
COMPLETION_BEFORE_COMMIT = "completion.before_commit"

_armed = os.environ.get(ENVIRONMENT_VARIABLE) or None
_log = get_logger(__name__)


def reached(point: str) -> None:
    """Wait here until killed if `point` is the armed fault point; otherwise return at once."""
    if point == _armed:
        _log.warning("fault point reached: waiting to be killed", point=point)
        threading.Event().wait()
