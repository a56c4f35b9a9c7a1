"""`khqrpay serve`: the web app (shop, staff console, JSON API) with uvicorn; by default with the
verifier worker in the same process (SQLite), `--no-worker` to leave it to `khqrpay worker`
processes (PostgreSQL, any number of each)."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from khqrpay.cli.common import open_app
from khqrpay.logging import configure_logging, get_logger
from khqrpay.serving import uvicorn_config

_log = get_logger(__name__)


def run(
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 8000,
    worker: Annotated[
        bool,
        typer.Option("--worker/--no-worker", help="Also run the verifier worker in this process."),
    ] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="One JSON object a line.")] = False,
) -> None:
    """Serve the shop, the staff console and the API (with the worker)."""
    from khqrpay.web.app import create_web_app
    from khqrpay.worker import run_worker

    configure_logging(log_level, json_output=json_logs)
    with open_app() as app:
        web = create_web_app(app, background=[run_worker] if worker else [])
        _log.info("web app serving", host=host, port=port, worker=worker)
        uvicorn.Server(uvicorn_config(web, host, port, lifespan="on")).run()
