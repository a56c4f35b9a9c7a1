"""Serving an ASGI app with uvicorn: in the foreground (commands) or in a background thread on a
loopback port (tests, the demo)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import LOGGING_CONFIG

STARTUP_TIMEOUT_S = 10.0
# In-flight requests get this long to finish at shutdown; hanging ones are released at once.
GRACEFUL_SHUTDOWN_S = 1


def uvicorn_config(
    app: ASGIApp, host: str, port: int, *, lifespan: str = "auto", own_log_handlers: bool = True
) -> uvicorn.Config:
    """`own_log_handlers=False`: uvicorn leaves the `uvicorn` loggers' handlers to the caller."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=LOGGING_CONFIG if own_log_handlers else None,
        access_log=False,
        lifespan=lifespan,  # type: ignore[arg-type]
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp,
    *,
    name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    on_stop: Callable[[], None] | None = None,
    own_log_handlers: bool = True,
) -> Iterator[str]:
    """Serve `app` in a background thread until the block ends; its base URL. Port 0: a free one
    the system picks. `on_stop` runs first at shutdown (e.g. to end long-lived streams);
    `own_log_handlers=False` leaves where uvicorn's messages go to the caller."""
    # uvicorn binds the socket itself: a socket handed to it loses TCP_NODELAY (~40 ms a
    # keep-alive request), so the port chosen for port 0 is read back once it listens.
    server = uvicorn.Server(uvicorn_config(app, host, port, own_log_handlers=own_log_handlers))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        if on_stop is not None:
            on_stop()
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
