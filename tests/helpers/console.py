"""The staff console in-process, for tests: the real web app (FastAPI's TestClient, lifespan run)
with its Bakong client talking to an in-process simulator (no sockets), time from a FakeClock, and
two accounts: the owner `olivia` and the staff member `sam`."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from khqrpay.accounts import Role
from khqrpay.bootstrap import App
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest, Product
from khqrpay.services import accounts
from khqrpay.services.accounts import create_user
from khqrpay.services.checkout import CreatedOrder, create_order
from khqrpay.services.products import add_product
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig
from khqrpay.simulator.app import create_app, simulator_of
from khqrpay.web.app import CSRF_COOKIE, create_web_app

OWNER = ("olivia", "owner-password-1")
STAFF = ("sam", "staff-password-1")
BAKONG_URL = "http://bakong.test"
_skus = itertools.count(1)
_CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')


@dataclass
class Console:
    """A browser on the console: log in, get pages, post forms with their CSRF token; and the
    simulated banking app, to pay QRs."""

    client: TestClient
    bank: TestClient
    app: App
    clock: FakeClock

    def csrf(self) -> str:
        """The CSRF token forms carry (the login page is fetched first when there is none)."""
        token = self.client.cookies.get(CSRF_COOKIE)
        if token is None:
            page = self.client.get("/admin/login")
            match = _CSRF_FIELD.search(page.text)
            assert match is not None, page.text[:500]
            token = match.group(1)
        return token

    def login(self, name: str, password: str, *, next_path: str | None = None) -> httpx.Response:
        form = {"name": name, "password": password, "csrftoken": self.csrf()}
        if next_path is not None:
            form["next"] = next_path
        return self.client.post("/admin/login", data=form, follow_redirects=False)

    def as_owner(self) -> Console:
        assert self.login(*OWNER).status_code == 303
        return self

    def as_staff(self) -> Console:
        assert self.login(*STAFF).status_code == 303
        return self

    def post(self, path: str, *, script: bool = True, **form: Any) -> httpx.Response:
        """A form post as the page's script sends it (a JSON answer), or as a plain form."""
        accept = "application/json" if script else "text/html"
        return self.client.post(
            path,
            data={**form, "csrftoken": self.csrf()},
            headers={"accept": accept},
            follow_redirects=False,
        )

    def page(self, path: str) -> httpx.Response:
        return self.client.get(path, headers={"accept": "text/html"}, follow_redirects=False)

    def product(
        self, *, price: str = "1.50", currency: str = "USD", stock: int = 10, name: str = "Tea"
    ) -> Product:
        return add_product(
            self.app.database,
            sku=f"SKU-{next(_skus)}",
            name=name,
            price=Money(Decimal(price), Currency(currency)),
            stock=stock,
            now_ms=self.clock.now_ms(),
        )

    def order(self, *lines: tuple[Product, int], phone: str | None = None) -> CreatedOrder:
        return create_order(
            self.app.database,
            lines=[LineRequest(product.sku, quantity) for product, quantity in lines],
            phone=phone,
            settings=self.app.settings,
            clock=self.clock,
        )

    def pay(self, qr: str, **overrides: Any) -> dict[str, Any]:
        """Pay a QR in the simulated banking app; the transaction as Bakong will show it."""
        body = {
            "qr": qr,
            **{k: str(v) if isinstance(v, Decimal) else v for k, v in overrides.items()},
        }
        response = self.bank.post("/_sim/pay", json=body)
        assert response.status_code == 201, response.text
        transaction: dict[str, Any] = response.json()["transaction"]
        return transaction


def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 with its cheapest parameters: a test logs in many times."""
    monkeypatch.setattr(accounts, "HASHER", PasswordHasher.from_parameters(profiles.CHEAPEST))
    accounts.decoy_hash.cache_clear()


def console_settings(settings: Settings, token: str, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "bakong_url": BAKONG_URL,
            "bakong_token": SecretStr(token),
            "bakong_max_retries": 0,
            "bakong_rate_limit_per_s": 10_000.0,
            "web_secret_key": SecretStr("console-test-secret-0123456789"),
            "web_secure_cookies": False,
            "web_staff_session_idle_minutes": 30.0,
            **changes,
        }
    )


def console_apps(
    database: Database, settings: Settings, clock: FakeClock, **changes: Any
) -> tuple[FastAPI, FastAPI, App]:
    """The web app on `database` with the accounts made, the simulated Bakong it talks to (in
    process, no sockets), and the app's parts."""
    bakong: FastAPI = create_app(SimulatorConfig(seed=3), clock=clock)
    token = simulator_of(bakong).token
    app = App(settings=console_settings(settings, token, **changes), database=database, clock=clock)
    for (name, password), role in ((OWNER, Role.OWNER), (STAFF, Role.STAFF)):
        create_user(database, name=name, role=role, password=password, clock=clock, actor="cli")
    web = create_web_app(app, bakong_transport=httpx.ASGITransport(app=bakong))
    return web, bakong, app


@contextmanager
def running_console(
    database: Database, settings: Settings, clock: FakeClock, **changes: Any
) -> Iterator[Console]:
    """The console in-process until the block ends."""
    web, bakong, app = console_apps(database, settings, clock, **changes)
    with TestClient(bakong) as bank, TestClient(web, base_url="http://testserver") as client:
        yield Console(client, bank, app, clock)
