"""`khqrpay demo`: the whole thing working on one screen, on SQLite, with nothing to set up.

A Bakong simulator on loopback, a demo café with a small catalogue, orders made through the real
checkout service, pay-later customers (the simulator's, on the shops' reported pattern, their
delays compressed by `acceleration`), a few customers who get it wrong (wrong amount; an old
screenshot paid on top of the new code), and the real worker (verifier, expiry sweep, outbox
relay) in this process, on the real clock. Status changes come from the event bus; the dashboard
reads through the services. Nothing here decides anything about payments: that is the engine's.

- `scenario`: the café, its catalogue and customers, what each does and when;
- `read_model`: what the demo shows, read through the services;
- `dashboard`: the terminal output;
- `runtime`: the simulator, the database, the worker and the customers on one event loop.
"""

from khqrpay.demo.dashboard import DemoScreen, describe_event, render_dashboard
from khqrpay.demo.read_model import OrderRow, Snapshot
from khqrpay.demo.runtime import (
    DATABASE_FILE,
    LOG_FILE,
    DemoOptions,
    choose_port,
    fresh_database_url,
    run_demo,
    serve_simulator,
)
from khqrpay.demo.scenario import (
    CATALOGUE,
    MIN_ORDERS,
    CustomerKind,
    DemoError,
    DemoOrder,
    SimulatorEndpoint,
    banking_app_url,
    customer_note,
    describe_delay,
    draw_cart,
    draw_phone,
    plan_customers,
    script_payments,
    wrong_amount,
)

__all__ = [
    "CATALOGUE",
    "DATABASE_FILE",
    "LOG_FILE",
    "MIN_ORDERS",
    "CustomerKind",
    "DemoError",
    "DemoOptions",
    "DemoOrder",
    "DemoScreen",
    "OrderRow",
    "SimulatorEndpoint",
    "Snapshot",
    "banking_app_url",
    "choose_port",
    "customer_note",
    "describe_delay",
    "describe_event",
    "draw_cart",
    "draw_phone",
    "fresh_database_url",
    "plan_customers",
    "render_dashboard",
    "run_demo",
    "script_payments",
    "serve_simulator",
    "wrong_amount",
]
