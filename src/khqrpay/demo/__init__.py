"""`khqrpay demo`: the whole thing working on one screen, on SQLite, with nothing to set up.

A Bakong simulator and the web app (shop, staff console, JSON API) on loopback, a demo café with a
dozen products, orders bought through the web app's JSON API, pay-later customers (the
simulator's, on the shops' reported pattern, their delays compressed by `acceleration`), a few
customers who get it wrong (wrong amount; an old screenshot paid on top of the new code), and the
real worker (verifier, expiry sweep, outbox relay) in this process, on the real clock. Everything
stays in the data folder between runs. Status changes come from the event bus; the dashboard reads
through the services. Nothing here decides anything about payments: that is the engine's.

- `scenario`: the café, its catalogue and customers, what each does and when;
- `read_model`: what the demo shows, read through the services;
- `dashboard`: the terminal output;
- `runtime`: the simulator, the web app, the database, the worker and the customers on one event
  loop.
"""

from khqrpay.demo.dashboard import DemoScreen, describe_event, render_dashboard
from khqrpay.demo.read_model import OrderRow, Snapshot
from khqrpay.demo.runtime import (
    DATABASE_FILE,
    LOG_FILE,
    DemoOptions,
    choose_port,
    database_url,
    load_secrets,
    run_demo,
    serve_simulator,
)
from khqrpay.demo.scenario import (
    CATALOGUE,
    MIN_ORDERS,
    CustomerKind,
    DemoError,
    DemoLinks,
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
    "DemoLinks",
    "DemoOptions",
    "DemoOrder",
    "DemoScreen",
    "OrderRow",
    "SimulatorEndpoint",
    "Snapshot",
    "banking_app_url",
    "choose_port",
    "customer_note",
    "database_url",
    "describe_delay",
    "describe_event",
    "draw_cart",
    "draw_phone",
    "load_secrets",
    "plan_customers",
    "render_dashboard",
    "run_demo",
    "script_payments",
    "serve_simulator",
    "wrong_amount",
]
