"""`khqrpay doctor [--json]`: is this machine ready to take payments? One line per check (ok,
warn, fail or skip) with what is wrong and how to fix it.

Exit code 0 when nothing failed (warnings and skips allowed), 1 when a check failed, 2 for bad
usage. The checks are `khqrpay.services.doctor`'s; this command only wires and prints them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from khqrpay.cli.common import print_json
from khqrpay.clock import SystemClock
from khqrpay.logging import configure_logging
from khqrpay.services.doctor import Diagnosis, Level, diagnose
from khqrpay.settings import Settings, load_settings

if TYPE_CHECKING:
    from khqrpay.bakong import BakongClient
    from khqrpay.bakong.budget import CallGate

UNHEALTHY = 1


def run(
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object instead of lines of text.")
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="The Bakong client's log on stderr (the findings say it all).")
    ] = "CRITICAL",
) -> None:
    """Check the settings, the database, Bakong, the receiving account and the clock."""
    configure_logging(log_level)
    clock = SystemClock()

    def open_bakong(settings: Settings, gate: CallGate | None) -> BakongClient:
        from khqrpay.bakong import BakongClient  # httpx: only when the doctor asks Bakong

        return BakongClient(settings=settings, clock=clock, gate=gate)

    diagnosis = asyncio.run(diagnose(load_settings, clock=clock, open_bakong=open_bakong))
    if json_output:
        print_json(as_json(diagnosis))
    else:
        typer.echo(as_text(diagnosis))
    if not diagnosis.healthy:
        raise typer.Exit(UNHEALTHY)


def as_json(diagnosis: Diagnosis) -> dict[str, object]:
    return {
        "healthy": diagnosis.healthy,
        "checks": [
            {
                "check": finding.check.value,
                "level": finding.level.value,
                "message": finding.message,
                "fix": finding.fix,
            }
            for finding in diagnosis.findings
        ],
    }


def as_text(diagnosis: Diagnosis) -> str:
    width = max(len(finding.check.value) for finding in diagnosis.findings)
    lines = [
        f"{finding.level.value:<4}  {finding.check.value:<{width}}  {finding.message}"
        + (f". Fix: {finding.fix}" if finding.fix and finding.level is not Level.OK else "")
        for finding in diagnosis.findings
    ]
    failures, warnings = diagnosis.count(Level.FAIL), diagnosis.count(Level.WARN)
    verdict = "ready" if diagnosis.healthy else "not ready"
    lines.append(f"{verdict}: {failures} failed, {warnings} warning{'' if warnings == 1 else 's'}")
    return "\n".join(lines)
