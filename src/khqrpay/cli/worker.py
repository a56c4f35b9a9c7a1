"""`khqrpay worker [--metrics-port N] [--once]`: the verifier, the expiry sweep, the outbox
relay, webhooks and Telegram alerts, until SIGTERM or SIGINT (then a clean exit, code 0). It
first asks Bakong whether the receiving account can take payments, and refuses to start (exit 2)
when it cannot."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from khqrpay.cli.common import LogLevel, LogLevelOption, fail, open_app
from khqrpay.logging import configure_logging

if TYPE_CHECKING:
    from khqrpay.bootstrap import App


def run(
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port."),
    ] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="One cycle, sweep, relay and send of each kind; then exit."),
    ] = False,
    log_level: LogLevelOption = LogLevel.INFO,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="One JSON object a line.")] = False,
) -> None:
    """Run the payment verifier worker."""
    from khqrpay.worker.runtime import ReceivingAccountRefused

    configure_logging(log_level, json_output=json_logs)
    with open_app() as app:
        try:
            asyncio.run(_serve(app, metrics_port=metrics_port, once=once))
        except ReceivingAccountRefused as refused:
            fail(str(refused))


async def _serve(app: App, *, metrics_port: int | None, once: bool) -> None:
    # The metrics server and the worker: imported when the worker runs.
    from prometheus_client import start_http_server

    from khqrpay.logging import get_logger
    from khqrpay.worker import Worker
    from khqrpay.worker.runtime import refuse_an_account_that_cannot_receive

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics_server = None
    if metrics_port is not None:
        host = app.settings.worker_metrics_host
        metrics_server, _thread = start_http_server(metrics_port, addr=host)
        get_logger(__name__).info("metrics served", host=host, port=metrics_port)
    bus = app.event_bus()
    try:
        async with app.bakong() as bakong:
            await refuse_an_account_that_cannot_receive(bakong.client, app.settings)
            await Worker(app=app, bakong=bakong, bus=bus).run(stop, once=once)
    finally:
        await bus.aclose()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(run)

if __name__ == "__main__":  # `python -m khqrpay.cli.worker`, before the command is mounted
    app()
