"""The simulated Bakong as an ASGI app: the Open API under `/v1/`, the control API under `/_sim/`.

The control API (no token, JSON) is what the real service does not have: payments, pay-later
customers, faults, and a banking-app page for people.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from khqrpay.clock import Clock, SystemClock, ms_to_datetime
from khqrpay.khqr import DecodedKHQR
from khqrpay.money import Currency
from khqrpay.simulator.bakong_api import DEEPLINK_PATH, BakongApi, Endpoint, TokenVerdict
from khqrpay.simulator.config import SimulatorConfig
from khqrpay.simulator.customers import Customer, CustomerScheduler
from khqrpay.simulator.faults import Fault, FaultConfig, FaultInjector
from khqrpay.simulator.payments import Payer, PaymentOrder, PaymentRefused
from khqrpay.simulator.profiles import SHAPES, WireShape
from khqrpay.simulator.protocol import ErrorCode, Reply, failure, parse_json
from khqrpay.simulator.state import SimulatedTransaction, SimulatorState
from khqrpay.simulator.tokens import TokenIssuer

MD5_LIST_PATH = "/v1/check_transaction_by_md5_list"
HANG_POLL_S = 0.05
_TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _rng(seed: int | None, purpose: str) -> random.Random:
    """One independent random stream per purpose, so adding a draw in one keeps the others."""
    return random.Random(None if seed is None else f"{seed}:{purpose}")  # noqa: S311 - not security


class Simulator:
    """Everything one simulated Bakong holds; `create_app` puts it behind HTTP."""

    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.state = SimulatorState(config.known_accounts, journal=config.journal)
        issuer = TokenIssuer()
        self.token = (
            config.token.get_secret_value()
            if config.token is not None
            else issuer.issue("simulator", clock.now_ms())[0]
        )
        self.faults = FaultInjector(config.faults, config.seed)
        self.shape = SHAPES[config.profile]
        self.payer = Payer(self.state, clock, _rng(config.seed, "payer"), self.shape)
        self.customers = CustomerScheduler(
            self.payer,
            clock,
            rng=_rng(config.seed, "customers"),
            acceleration=config.acceleration,
        )
        self.api = BakongApi(
            self.state,
            clock,
            token=self.token,
            registered_emails=config.registered_emails,
            frozen_accounts=config.frozen_accounts,
            issuer=issuer,
            rng=_rng(config.seed, "api"),
            shape=self.shape,
        )
        # Set when the server stops, so requests hanging on a `timeout` fault end at once.
        self.stopping = threading.Event()
        # Open API requests by path, and the faults they met: what a benchmark counts as the
        # load on Bakong, whichever processes and retries made it (`GET /_sim/requests`).
        self.requests: collections.Counter[str] = collections.Counter()
        self.faults_met: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return f"Simulator(seed={self.config.seed!r}, acceleration={self.config.acceleration!r})"


def simulator_of(app: FastAPI) -> Simulator:
    sim = app.state.simulator
    assert isinstance(sim, Simulator)
    return sim


# --- faults -----------------------------------------------------------------------------------


def _html(status: int, title: str, text: str, headers: dict[str, str] | None = None) -> Response:
    page = (
        f"<html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{text}</p></body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=headers)


def _blocked() -> Response:
    return _html(403, "403 Forbidden", "Request rejected. Please contact the administrator.")


async def _wait(sim: Simulator, request: Request, seconds: float) -> bool:
    """Wait `seconds`; False if the client gives up or the server stops first."""
    deadline = time.monotonic() + seconds
    while not sim.stopping.is_set() and not await request.is_disconnected():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(HANG_POLL_S, remaining))
    return False


def _busy() -> Response:
    return _html(503, "503 Service Temporarily Unavailable", "The server is busy.")


def _gateway_timeout() -> Response:
    return _html(504, "504 Gateway Time-out", "The upstream server timed out.")


async def _fault_response(sim: Simulator, request: Request, path: str) -> Response | None:
    config = sim.faults.config
    if config.latency_s and not await _wait(sim, request, config.latency_s):
        return _busy()
    if config.md5_list_blocked and path == MD5_LIST_PATH:
        sim.faults_met["md5_list_blocked"] += 1
        return _blocked()
    fault = sim.faults.decide()
    if fault is not Fault.NONE:
        sim.faults_met[fault.value] += 1
    match fault:
        case Fault.NONE:
            return None
        case Fault.SERVER_ERROR:
            body = {"status": 500, "error": "Internal Server Error", "path": path}
            return JSONResponse({"timestamp": sim.clock.now_ms(), **body}, status_code=500)
        case Fault.SERVICE_UNAVAILABLE:
            return _busy()
        case Fault.GATEWAY_TIMEOUT:
            return _gateway_timeout()
        case Fault.RATE_LIMITED:
            retry_after = {"Retry-After": str(config.retry_after_s)}
            return _html(429, "429 Too Many Requests", "Slow down.", retry_after)
        case Fault.BLOCKED:
            return _blocked()
        case Fault.TIMEOUT:
            await _wait(sim, request, config.hang_s)
            return _gateway_timeout()
        case Fault.NOT_JSON:
            # A body cut short mid-envelope, still labelled JSON.
            return Response(
                b'{"responseCode":0,"responseMessage":"Getting transa',
                media_type="application/json",
            )


# --- the Bakong Open API ----------------------------------------------------------------------


def _reply(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status)


def _bakong_route(
    sim: Simulator, path: str, endpoint: Endpoint
) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        # Read the body first: watching for a disconnect while a fault waits consumes messages.
        raw = await request.body()
        sim.requests[path] += 1
        if not request.headers.get("user-agent", "").strip():
            return _blocked()  # the service's firewall refuses requests without a User-Agent
        faulted = await _fault_response(sim, request, path)
        if faulted is not None:
            return faulted
        if endpoint.needs_token:
            verdict = (
                TokenVerdict.EXPIRED
                if sim.faults.config.tokens_expired
                else sim.api.judge_token(request.headers.get("authorization"))
            )
            if verdict is not TokenVerdict.ACCEPTED:
                return _reply(sim.api.token_refusal(verdict))
        try:
            payload = parse_json(raw)
        except (ValueError, RecursionError):
            # Not JSON at all is a protocol error (400), unlike a JSON body of the wrong shape.
            return _reply(failure(ErrorCode.MISSING_FIELDS, status=400))
        if path == DEEPLINK_PATH and sim.config.app_links:
            app_page = f"{str(request.base_url).rstrip('/')}/_sim/app"
            return _reply(sim.api.generate_deeplink(payload, app_page=app_page))
        return _reply(endpoint.handler(payload))

    return route


# --- the control API --------------------------------------------------------------------------


class PayBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    qr: str = Field(min_length=1, max_length=2000)
    amount: Decimal | None = None
    currency: Currency | None = None
    delay_s: float = 0.0
    fail: bool = False
    description: str | None = Field(default=None, max_length=100)
    from_account_id: str | None = Field(default=None, min_length=3, max_length=32)
    external_ref: str | None = Field(default=None, min_length=1, max_length=64)
    instruction_ref: str | None = Field(default=None, min_length=1, max_length=64)


class CustomerBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    qr: str = Field(min_length=1, max_length=2000)
    amount: Decimal | None = None
    currency: Currency | None = None


class FaultsBody(FaultConfig):
    """A new fault config (fields left out are off) and, optionally, a new seed for the draws."""

    seed: int | None = None


_Body = TypeVar("_Body", bound=BaseModel)


def _error(status: int, message: str, detail: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


async def _control_body(request: Request, model: type[_Body]) -> _Body | JSONResponse:
    try:
        return model.model_validate(parse_json(await request.body()))
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            detail = exc.errors(include_url=False, include_context=False, include_input=False)
            return _error(400, "the request body is not valid", detail)
        return _error(400, "the request body is not JSON")


def _transaction_view(
    transaction: SimulatedTransaction, now_ms: int, shape: WireShape
) -> dict[str, Any]:
    return {
        "md5": transaction.md5,
        "short_hash": transaction.short_hash,
        "status": transaction.status.value,
        "visible": transaction.visible_at(now_ms),
        "visible_from_ms": transaction.visible_from_ms,
        "transaction": transaction.to_bakong(shape),
    }


def _customer_view(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "md5": customer.md5,
        "state": customer.state.value,
        "delay_s": customer.delay_s,
        "scheduled_ms": customer.scheduled_ms,
        "transaction_hash": customer.transaction_hash,
        "refusal": customer.refusal,
    }


def _payee_view(decoded: DecodedKHQR) -> dict[str, Any]:
    """What the banking page shows before the payer presses Pay."""
    expires = None
    if decoded.dynamic and decoded.expiration_ms is not None:
        expires = ms_to_datetime(decoded.expiration_ms).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "name": decoded.merchant_name,
        "account": decoded.bakong_account_id,
        "city": decoded.merchant_city,
        "amount": None if decoded.money is None else decoded.money.display(),
        "currency": decoded.currency.value,
        "bill_number": decoded.bill_number,
        "expires": expires,
        "md5": decoded.md5,
    }


def _add_control_routes(app: FastAPI, sim: Simulator) -> None:
    @app.post("/_sim/pay")
    async def pay(request: Request) -> Response:
        body = await _control_body(request, PayBody)
        if isinstance(body, JSONResponse):
            return body
        try:
            order = PaymentOrder(**body.model_dump())
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            transaction = sim.payer.pay(order)
        except PaymentRefused as exc:
            return _error(422, exc.reason)
        return JSONResponse(
            _transaction_view(transaction, sim.clock.now_ms(), sim.shape), status_code=201
        )

    @app.get("/_sim/transactions")
    async def transactions() -> Response:
        now_ms = sim.clock.now_ms()
        views = [_transaction_view(t, now_ms, sim.shape) for t in sim.state.transactions()]
        return JSONResponse({"transactions": views})

    @app.get("/_sim/requests")
    async def requests() -> Response:
        return JSONResponse(
            {
                "total": sum(sim.requests.values()),
                "by_path": dict(sim.requests),
                "faults": dict(sim.faults_met),
            }
        )

    @app.post("/_sim/customers")
    async def schedule_customer(request: Request) -> Response:
        body = await _control_body(request, CustomerBody)
        if isinstance(body, JSONResponse):
            return body
        try:
            customer = sim.customers.schedule(body.qr, amount=body.amount, currency=body.currency)
        except PaymentRefused as exc:
            return _error(422, exc.reason)
        return JSONResponse(_customer_view(customer), status_code=201)

    @app.get("/_sim/customers")
    async def customers() -> Response:
        return JSONResponse({"customers": [_customer_view(c) for c in sim.customers.customers()]})

    @app.get("/_sim/faults")
    async def faults() -> Response:
        return JSONResponse({"faults": sim.faults.config.model_dump()})

    @app.post("/_sim/faults")
    async def set_faults(request: Request) -> Response:
        body = await _control_body(request, FaultsBody)
        if isinstance(body, JSONResponse):
            return body
        config = FaultConfig(**body.model_dump(exclude={"seed"}))
        sim.faults.configure(config, body.seed)
        return JSONResponse({"faults": config.model_dump()})

    @app.get("/_sim/app", response_class=HTMLResponse)
    async def banking_app(request: Request, qr: str | None = None) -> Response:
        context: dict[str, Any] = {"qr": qr or "", "payee": None, "refusal": None}
        if qr:
            try:
                context["payee"] = _payee_view(sim.payer.inspect(qr))
            except PaymentRefused as exc:
                context["refusal"] = exc.reason
        return _TEMPLATES.TemplateResponse(request, "app.html", context)


def create_app(config: SimulatorConfig, *, clock: Clock | None = None) -> FastAPI:
    """A simulated Bakong; `clock` is its notion of now (default: the system clock)."""
    sim = Simulator(config, clock or SystemClock())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        customers = asyncio.create_task(sim.customers.run(), name="simulator-customers")
        try:
            yield
        finally:
            sim.stopping.set()
            customers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await customers

    app = FastAPI(
        title="khqrpay Bakong simulator",
        lifespan=lifespan,
        docs_url="/_sim/docs",
        redoc_url=None,
        openapi_url="/_sim/openapi.json",
    )
    app.state.simulator = sim
    for path, endpoint in sim.api.endpoints().items():
        app.add_api_route(path, _bakong_route(sim, path, endpoint), methods=["POST"])
    _add_control_routes(app, sim)
    return app
