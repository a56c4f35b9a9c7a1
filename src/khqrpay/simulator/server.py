"""Running the simulator: in a background thread on a free loopback port (tests, the demo), or in
the foreground for the CLI."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from khqrpay.clock import Clock
from khqrpay.serving import serve_in_thread, uvicorn_config
from khqrpay.simulator.app import Simulator, create_app, simulator_of
from khqrpay.simulator.config import SimulatorConfig


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator serving at `url`; `token` is the bearer token it accepts (kept out of reprs)."""

    url: str
    config: SimulatorConfig
    simulator: Simulator = field(repr=False)
    token: str = field(repr=False)


@contextlib.contextmanager
def run_simulator(
    config: SimulatorConfig | None = None, *, clock: Clock | None = None, port: int = 0
) -> Iterator[RunningSimulator]:
    """Serve a simulator on 127.0.0.1 in a background thread until the block ends, at `port`
    (0: a free one the system picks)."""
    config = config or SimulatorConfig()
    app = create_app(config, clock=clock)
    sim = simulator_of(app)
    with serve_in_thread(
        app, name="the Bakong simulator", port=port, on_stop=sim.stopping.set
    ) as url:
        yield RunningSimulator(url=url, config=config, simulator=sim, token=sim.token)


def serve(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8700,
    *,
    clock: Clock | None = None,
) -> None:
    """Serve in the foreground until interrupted (the `khqrpay simulator` command)."""
    uvicorn.Server(uvicorn_config(create_app(config, clock=clock), host, port)).run()
