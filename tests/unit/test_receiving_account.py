"""The receiving-account check the worker runs at start-up (and `khqrpay doctor` will show),
against the simulator's production profile through the real client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import SecretStr

from khqrpay.bakong import BakongClient
from khqrpay.clock import FakeClock
from khqrpay.services.receiving_account import AccountVerdict, check_receiving_account
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, create_app
from khqrpay.simulator.faults import FaultConfig
from khqrpay.worker.runtime import ReceivingAccountRefused, refuse_an_account_that_cannot_receive

TOKEN = "receiving-account-token"
READY = "shop@devb"
FROZEN = "frozen@devb"

MakeClient = Callable[..., BakongClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[BakongClient] = []

    def make(faults: FaultConfig | None = None, **settings: object) -> BakongClient:
        config = SimulatorConfig(
            token=SecretStr(TOKEN),
            known_accounts=frozenset({READY, FROZEN}),
            frozen_accounts=frozenset({FROZEN}),
            faults=faults or FaultConfig(),
        )
        app = create_app(config, clock=FakeClock())
        values: dict[str, object] = {
            "bakong_url": "http://bakong.test",
            "bakong_token": SecretStr(TOKEN),
            "bakong_max_retries": 0,
            **settings,
        }
        client = BakongClient(
            settings=Settings(_env_file=None, **values),  # type: ignore[call-arg]
            clock=FakeClock(),
            transport=httpx.ASGITransport(app=app),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_an_account_that_can_receive_is_ready(make_client: MakeClient) -> None:
    check = await check_receiving_account(make_client(), READY, within_s=5)
    assert check.verdict is AccountVerdict.READY
    assert check.can_receive
    assert check.status is not None
    assert check.status.can_receive is True
    assert check.describe() == "shop@devb can receive payments (its KYC status is 'FULL')"


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        (FROZEN, "cannot receive payments (canReceive false)"),
        ("nobody@devb", "Bakong does not know this account"),
        ("Shop@DEVB", "Bakong says this account id is invalid"),
        ("no-at-sign", "must look like name@bank"),
    ],
)
async def test_an_account_that_cannot_receive_is_refused_with_the_reason(
    make_client: MakeClient, account: str, reason: str
) -> None:
    check = await check_receiving_account(make_client(), account, within_s=5)
    assert check.verdict is AccountVerdict.CANNOT_RECEIVE
    assert not check.can_receive
    assert reason in check.describe()


@pytest.mark.parametrize(
    "faults",
    [
        FaultConfig(service_unavailable=1.0),
        FaultConfig(blocked=1.0),
        FaultConfig(not_json=1.0),
    ],
)
async def test_bakong_not_answering_leaves_the_account_unchecked_not_refused(
    make_client: MakeClient, faults: FaultConfig
) -> None:
    check = await check_receiving_account(make_client(faults), READY, within_s=5)
    assert check.verdict is AccountVerdict.UNCHECKED
    assert check.can_receive
    assert check.reasons


async def test_the_check_waits_no_longer_than_it_is_given(make_client: MakeClient) -> None:
    client = make_client(FaultConfig(latency_s=30), bakong_max_retries=3)
    started = time.monotonic()
    check = await check_receiving_account(client, READY, within_s=0.2)
    assert time.monotonic() - started < 2
    assert check.verdict is AccountVerdict.UNCHECKED
    assert "no answer within 0.2s" in check.describe()


async def test_the_worker_start_up_refuses_only_an_account_that_cannot_receive(
    make_client: MakeClient,
) -> None:
    settings = Settings(_env_file=None, merchant_account=FROZEN)  # type: ignore[call-arg]
    with pytest.raises(ReceivingAccountRefused, match="frozen@devb cannot receive"):
        await refuse_an_account_that_cannot_receive(make_client(), settings)
    ready = settings.model_copy(update={"merchant_account": READY})
    check = await refuse_an_account_that_cannot_receive(make_client(), ready)
    assert check.verdict is AccountVerdict.READY
    unchecked = await refuse_an_account_that_cannot_receive(
        make_client(FaultConfig(server_error=1.0)), ready
    )
    assert unchecked.verdict is AccountVerdict.UNCHECKED
