"""`khqrpay demo`: parse the options and run `khqrpay.demo` (the orchestration lives there)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from khqrpay.cli.common import fail
from khqrpay.demo.runtime import (
    DEFAULT_ACCELERATION,
    DEFAULT_DATA_DIR,
    DEFAULT_ORDERS,
    DEFAULT_PORT,
    DEFAULT_SIM_PORT,
    MAX_ORDERS,
    DemoOptions,
    run_demo,
)
from khqrpay.demo.scenario import MIN_ORDERS, DemoError

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def run(
    *,
    orders: Annotated[
        int,
        typer.Option(min=MIN_ORDERS, max=MAX_ORDERS, help="How many orders the demo shop gets."),
    ] = DEFAULT_ORDERS,
    acceleration: Annotated[
        float,
        typer.Option(
            help="Customers' pay-later delays run this much faster (default: a month in 5 min)."
        ),
    ] = DEFAULT_ACCELERATION,
    duration: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds (default: run until Ctrl-C)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Make the run repeatable.")] = None,
    port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="The web app's port: shop, staff console, API (0: any free one; taken: another).",
        ),
    ] = DEFAULT_PORT,
    sim_port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="The Bakong simulator's port (0: any free one; taken: another)."
        ),
    ] = DEFAULT_SIM_PORT,
    data_dir: Annotated[
        Path,
        typer.Option(help="Where the demo keeps its database, secrets and log between runs."),
    ] = DEFAULT_DATA_DIR,
    reset: Annotated[
        bool, typer.Option("--reset", help="Start from empty: forget every earlier run.")
    ] = False,
) -> None:
    """Show the whole thing working: simulator, shop, customers, verifier, live dashboard."""
    try:
        options = DemoOptions(
            orders=orders,
            acceleration=acceleration,
            duration_s=duration,
            seed=seed,
            sim_port=sim_port,
            data_dir=data_dir,
            port=port,
            reset=reset,
        )
        run_demo(options, Console())
    except DemoError as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # before the dashboard starts (it handles Ctrl-C itself)
        typer.echo("interrupted", err=True)
        raise typer.Exit(INTERRUPTED) from None
