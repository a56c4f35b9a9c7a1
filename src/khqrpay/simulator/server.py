"""Running the simulator: in a background thread on a free loopback port (tests, the demo), or in
the foreground for the CLI."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI

from khqrpay.clock import Clock
from khqrpay.simulator.app import Simulator, create_app, simulator_of
from khqrpay.simulator.config import SimulatorConfig

STARTUP_TIMEOUT_S = 10.0
# In-flight requests get this long to finish at shutdown; hanging ones are released at once.
GRACEFUL_SHUTDOWN_S = 1


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator serving at `url`; `token` is the bearer token it accepts (kept out of reprs)."""

    url: str
    config: SimulatorConfig
    simulator: Simulator = field(repr=False)
    token: str = field(repr=False)


def _uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


@contextlib.contextmanager
def run_simulator(
    config: SimulatorConfig | None = None, *, clock: Clock | None = None, port: int = 0
) -> Iterator[RunningSimulator]:
    """Serve a simulator on 127.0.0.1 in a background thread until the block ends, at `port`
    (0: a free one the system picks)."""
    config = config or SimulatorConfig()
    app = create_app(config, clock=clock)
    sim = simulator_of(app)
    # With port 0 the system picks a free port, read back once the server listens. uvicorn binds
    # the socket itself: a socket handed to it loses TCP_NODELAY (~40 ms a keep-alive request).
    server = uvicorn.Server(_uvicorn_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, name="bakong-simulator", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Bakong simulator did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningSimulator(
            url=f"http://127.0.0.1:{port}", config=config, simulator=sim, token=sim.token
        )
    finally:
        sim.stopping.set()
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)


def serve(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8700,
    *,
    clock: Clock | None = None,
) -> None:
    """Serve in the foreground until interrupted (the `khqrpay simulator` command)."""
    uvicorn.Server(_uvicorn_config(create_app(config, clock=clock), host, port)).run()
