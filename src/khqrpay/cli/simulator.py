"""`khqrpay simulator`: serve a simulated Bakong Open API for development and the demo."""

from __future__ import annotations

import socket
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError

from khqrpay.cli.common import reported_errors
from khqrpay.settings import bakong_token_problem, load_settings
from khqrpay.simulator.config import SimulatorConfig
from khqrpay.simulator.faults import FaultConfig
from khqrpay.simulator.profiles import SimulatorProfile
from khqrpay.simulator.server import serve

_FRACTION = {"min": 0.0, "max": 1.0}


def run(
    *,
    token: Annotated[
        str,
        typer.Option(
            envvar="KHQRPAY_BAKONG_TOKEN",
            help="The bearer token to accept (default: $KHQRPAY_BAKONG_TOKEN).",
            show_default=False,
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    profile: Annotated[
        SimulatorProfile,
        typer.Option(help="Answer as production answers (default) or as the SIT service does."),
    ] = SimulatorProfile.PRODUCTION,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8700,
    seed: Annotated[
        int | None, typer.Option(help="Seed for repeatable hashes, faults, delays.")
    ] = None,
    acceleration: Annotated[
        float, typer.Option(help="Customers' delays run this much faster (> 0).")
    ] = 1.0,
    email: Annotated[
        list[str] | None, typer.Option(help="An e-mail allowed to renew tokens (repeatable).")
    ] = None,
    account: Annotated[
        list[str] | None,
        typer.Option(help="A Bakong account the account check finds (repeatable; default: ours)."),
    ] = None,
    server_error: Annotated[float, typer.Option(**_FRACTION, help="Share answering 500.")] = 0.0,
    service_unavailable: Annotated[
        float, typer.Option(**_FRACTION, help="Share answering 503.")
    ] = 0.0,
    gateway_timeout: Annotated[float, typer.Option(**_FRACTION, help="Share answering 504.")] = 0.0,
    rate_limited: Annotated[float, typer.Option(**_FRACTION, help="Share answering 429.")] = 0.0,
    blocked: Annotated[float, typer.Option(**_FRACTION, help="Share answering 403 HTML.")] = 0.0,
    timeout: Annotated[
        float, typer.Option(**_FRACTION, help="Share hanging --hang seconds.")
    ] = 0.0,
    not_json: Annotated[float, typer.Option(**_FRACTION, help="Share with a non-JSON body.")] = 0.0,
    retry_after: Annotated[int, typer.Option(min=0, help="Retry-After of a 429, seconds.")] = 1,
    hang: Annotated[float, typer.Option(help="A timeout's hang, s.")] = 30.0,
    latency: Annotated[float, typer.Option(min=0.0, help="Seconds added to every call.")] = 0.0,
    md5_list_blocked: Annotated[
        bool, typer.Option(help="The md5 list endpoint answers 403.")
    ] = False,
    tokens_expired: Annotated[bool, typer.Option(help="Every token answers 401.")] = False,
) -> None:
    """Serve a simulated Bakong Open API, with its control API and banking page under /_sim/."""
    # FastAPI and uvicorn: imported when the simulator runs, not for every command.

    if not token.strip():
        raise typer.BadParameter("the token must not be empty", param_hint="--token")
    # A token the engine could not send is refused here too (the message never quotes it).
    if (problem := bakong_token_problem(token)) is not None:
        raise typer.BadParameter(problem, param_hint="--token")
    if not account:
        with reported_errors():
            account = [load_settings().merchant_account]
    try:
        config = SimulatorConfig(
            token=SecretStr(token.strip()),
            registered_emails=frozenset(email) if email else SimulatorConfig().registered_emails,
            known_accounts=frozenset(account),
            faults=FaultConfig(
                server_error=server_error,
                service_unavailable=service_unavailable,
                gateway_timeout=gateway_timeout,
                rate_limited=rate_limited,
                blocked=blocked,
                timeout=timeout,
                not_json=not_json,
                retry_after_s=retry_after,
                hang_s=hang,
                latency_s=latency,
                md5_list_blocked=md5_list_blocked,
                tokens_expired=tokens_expired,
            ),
            seed=seed,
            acceleration=acceleration,
            profile=profile,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "options"
        raise typer.BadParameter(f"{where}: {error['msg']}") from exc
    _check_address(host, port)
    typer.echo(
        f"Bakong simulator ({profile.value} profile) on http://{host}:{port} "
        "(banking app: /_sim/app)"
    )
    serve(config, host, port)


def _check_address(host: str, port: int) -> None:
    """Bind the address once first: uvicorn logs an unknown host or a port in use and exits 3;
    here the OSError becomes the command's one error line."""
    family, kind, protocol, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
