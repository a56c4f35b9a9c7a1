"""`khqrpay worker [--metrics-port N] [--once]`: the verifier, the expiry sweep and the outbox
relay, until SIGTERM or SIGINT (then a clean exit, code 0)."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from khqrpay.cli.common import open_database
from khqrpay.clock import SystemClock

if TYPE_CHECKING:
    from khqrpay.db import Database
    from khqrpay.settings import Settings


def run(
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One cycle, one sweep, one relay; then exit.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="One JSON object a line.")] = False,
) -> None:
    """Run the payment verifier worker."""
    from khqrpay.logging import configure_logging  # structlog, and rich for its tracebacks

    configure_logging(log_level, json_output=json_logs)
    with open_database() as (database, settings):
        asyncio.run(_serve(database, settings, metrics_port=metrics_port, once=once))


async def _serve(
    database: Database, settings: Settings, *, metrics_port: int | None, once: bool
) -> None:
    # The HTTP client, the event bus and the metrics server: imported when the worker runs.
    from prometheus_client import start_http_server

    from khqrpay.bakong import BakongClient
    from khqrpay.events import create_event_bus
    from khqrpay.logging import get_logger
    from khqrpay.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics_server = None
    if metrics_port is not None:
        metrics_server, _thread = start_http_server(metrics_port, addr=settings.worker_metrics_host)
        get_logger(__name__).info(
            "metrics served", host=settings.worker_metrics_host, port=metrics_port
        )
    bus = create_event_bus(settings.database_url)
    clock = SystemClock()
    try:
        async with BakongClient(settings=settings, clock=clock) as client:
            worker = Worker(
                settings=settings, database=database, client=client, bus=bus, clock=clock
            )
            await worker.run(stop, once=once)
    finally:
        await bus.aclose()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(run)

if __name__ == "__main__":  # `python -m khqrpay.cli.worker`, before the command is mounted
    app()
