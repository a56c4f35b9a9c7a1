"""The simulator as a real server on a loopback port: startup, hanging requests, customers."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import httpx
import pytest

from khqrpay.clock import FakeClock
from khqrpay.khqr import KHQRInput, encode
from khqrpay.money import Currency
from khqrpay.simulator import FaultConfig, SimulatorConfig, run_simulator


def order_qr(clock: FakeClock, bill: str) -> str:
    data = KHQRInput(
        bakong_account_id="shop@devb",
        merchant_name="Sok Coffee",
        currency=Currency.KHR,
        amount=Decimal(12_000),
        bill_number=bill,
        expires_ms=clock.now_ms() + 40 * 24 * 3_600_000,
    )
    return encode(data, now_ms=clock.now_ms()).qr


def test_it_serves_on_a_free_loopback_port_with_a_jwt_token() -> None:
    with run_simulator() as sim:
        assert sim.url.startswith("http://127.0.0.1:")
        assert sim.token.count(".") == 2
        assert sim.token not in repr(sim)
        response = httpx.post(
            f"{sim.url}/v1/check_transaction_by_md5",
            json={"md5": "0" * 32},
            headers={"Authorization": f"Bearer {sim.token}"},
        )
        assert response.json()["errorCode"] == 1
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{sim.url}/v1/check_transaction_by_md5", json={"md5": "0" * 32})


def test_a_hanging_request_times_the_client_out_and_does_not_delay_shutdown() -> None:
    config = SimulatorConfig(faults=FaultConfig(timeout=1.0, hang_s=30))
    hung: list[BaseException] = []

    def wait_forever(url: str, token: str) -> None:
        try:
            httpx.post(
                f"{url}/v1/check_transaction_by_md5",
                json={"md5": "0" * 32},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
        except httpx.HTTPError as exc:
            hung.append(exc)

    with run_simulator(config) as sim:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{sim.url}/v1/check_transaction_by_md5",
                json={"md5": "0" * 32},
                headers={"Authorization": f"Bearer {sim.token}"},
                timeout=0.2,
            )
        waiter = threading.Thread(target=wait_forever, args=(sim.url, sim.token))
        waiter.start()
        time.sleep(0.2)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 2.5
    waiter.join(timeout=5)
    assert not waiter.is_alive()


def test_customers_scheduled_over_http_pay_and_never_customers_do_not() -> None:
    clock = FakeClock()
    config = SimulatorConfig(seed=12, acceleration=1e7)  # a month in 0.26 s
    with run_simulator(config, clock=clock) as sim, httpx.Client(base_url=sim.url) as http:
        scheduled = []
        for n in range(40):
            response = http.post("/_sim/customers", json={"qr": order_qr(clock, f"c{n}")})
            assert response.status_code == 201, response.text
            scheduled.append(response.json())
        refused = http.post("/_sim/customers", json={"qr": "000201"})
        assert refused.status_code == 422

        deadline = time.monotonic() + 5
        while True:
            customers = http.get("/_sim/customers").json()["customers"]
            if all(c["state"] != "waiting" for c in customers):
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)

        never = [c for c in customers if c["delay_s"] is None]
        payers = [c for c in customers if c["delay_s"] is not None]
        assert never, "this seed gives at least one never-paying customer"
        assert all(c["state"] == "never" and c["transaction_hash"] is None for c in never)
        assert all(c["state"] == "paid" for c in payers)
        auth = {"Authorization": f"Bearer {sim.token}"}
        for customer in customers:
            check = http.post(
                "/v1/check_transaction_by_md5", json={"md5": customer["md5"]}, headers=auth
            ).json()
            if customer in payers:
                assert check["data"]["hash"] == customer["transaction_hash"]
                assert check["data"]["amount"] == 12_000
            else:
                assert check["errorCode"] == 1
        listed = http.get("/_sim/transactions").json()["transactions"]
        assert len(listed) == len(payers)


def test_latency_slows_the_answer_without_changing_it() -> None:
    config = SimulatorConfig(faults=FaultConfig(latency_s=0.3))
    with run_simulator(config) as sim:
        started = time.monotonic()
        response = httpx.post(
            f"{sim.url}/v1/check_transaction_by_md5",
            json={"md5": "0" * 32},
            headers={"Authorization": f"Bearer {sim.token}"},
        )
        elapsed = time.monotonic() - started
    assert elapsed >= 0.3
    assert response.json()["errorCode"] == 1
