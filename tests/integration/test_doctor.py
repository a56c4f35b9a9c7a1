"""`khqrpay doctor` against the Bakong simulator (production profile): each kind of trouble is
found, reported as a failure (or a warning) with its fix, and the exit code follows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from khqrpay.bakong import BakongClient
from khqrpay.cli.main import app as cli
from khqrpay.clock import Clock, FakeClock, SystemClock
from khqrpay.db import Database, migrate
from khqrpay.orders.budget import CallPriority
from khqrpay.services.budget import SharedCallBudget, budget_status
from khqrpay.services.doctor import Check, Diagnosis, Level, diagnose
from khqrpay.settings import Settings, load_settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.faults import FaultConfig
from khqrpay.simulator.profiles import SimulatorProfile
from khqrpay.simulator.server import RunningSimulator
from khqrpay.simulator.tokens import TokenIssuer

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DAY_MS = 86_400_000
SECRET_KEY = SecretStr("a-web-secret-key-long-enough-for-tests")


def jwt_expiring_in(days: float) -> str:
    """A Bakong-shaped token whose `exp` is `days` from now (negative: in the past)."""
    now_ms = SystemClock().now_ms()
    token, _expires = TokenIssuer().issue(
        "doctor-test", now_ms - 90 * DAY_MS + round(days * DAY_MS)
    )
    return token


def start_simulator(settings: Settings, *, token: str | None = None, **config: Any) -> Any:
    """A production-profile simulator on the real clock that knows the shop's account."""
    return run_simulator(
        SimulatorConfig(
            token=SecretStr(token or jwt_expiring_in(80)),
            known_accounts=frozenset({settings.merchant_account}),
            profile=SimulatorProfile.PRODUCTION,
            **config,
        )
    )


def configured_for(settings: Settings, simulator: RunningSimulator, database_url: str) -> Settings:
    """A ready machine's settings against `simulator`, with waits short enough for tests."""
    return settings.model_copy(
        update={
            "database_url": database_url,
            "bakong_url": simulator.url,
            "bakong_token": SecretStr(simulator.token),
            "bakong_timeout_s": 2.0,
            "bakong_max_retries": 1,
            "bakong_backoff_base_s": 0.01,
            "bakong_backoff_max_s": 0.02,
            "web_secret_key": SECRET_KEY,
        }
    )


@pytest.fixture
def simulator(settings: Settings) -> Iterator[RunningSimulator]:
    with start_simulator(settings) as running:
        yield running


@pytest.fixture
def ready(settings: Settings, simulator: RunningSimulator, database_url: str) -> Settings:
    """Settings of a machine where all is well."""
    return configured_for(settings, simulator, database_url)


async def examine(settings: Settings, *, clock: Clock | None = None) -> Diagnosis:
    clock = clock or SystemClock()
    return await diagnose(
        lambda: settings,
        clock=clock,
        open_bakong=lambda configured, gate: BakongClient(
            settings=configured, clock=clock, gate=gate
        ),
    )


def expect(diagnosis: Diagnosis, check: Check, level: Level, says: str = "", fix: str = "") -> str:
    """Asserts the finding on `check`: its level, words of its message and of its fix."""
    (found,) = [f for f in diagnosis.findings if f.check is check]
    assert found.level is level, found
    assert says in found.message, found
    assert fix in (found.fix or ""), found
    return found.message


def levels(diagnosis: Diagnosis) -> dict[Check, Level]:
    return {f.check: f.level for f in diagnosis.findings}


async def test_a_ready_machine_passes_every_check(ready: Settings) -> None:
    diagnosis = await examine(ready)
    assert levels(diagnosis) == dict.fromkeys(Check, Level.OK), diagnosis
    assert diagnosis.healthy
    assert [f.check for f in diagnosis.findings] == list(Check)
    expect(diagnosis, Check.TOKEN, Level.OK, "in 80 days")


async def test_settings_that_do_not_load_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KHQRPAY_BAKONG_TIMEOUT_S", "600")
    diagnosis = await diagnose(
        load_settings, clock=SystemClock(), open_bakong=lambda _s, _g: pytest.fail("no client")
    )
    message = expect(diagnosis, Check.SETTINGS, Level.FAIL, "KHQRPAY_BAKONG_TIMEOUT_S", ".env")
    assert "600" not in message  # the values stay out: one of them could be a secret
    assert {f.level for f in diagnosis.findings[1:]} == {Level.SKIP}
    assert not diagnosis.healthy


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("account", "name", "why"),
    [
        ("a_very_long_account_name_for_khqr@aclb", "Shop", "Bakong account id"),
        ("shop@aclb", "A merchant name far too long for a KHQR", "merchant name"),
        ("shop-without-a-bank", "Shop", "name@bank"),
    ],
)
async def test_merchant_settings_that_make_no_khqr_fail(
    ready: Settings, account: str, name: str, why: str
) -> None:
    diagnosis = await examine(
        ready.model_copy(update={"merchant_account": account, "merchant_name": name})
    )
    expect(diagnosis, Check.MERCHANT, Level.FAIL, why, "KHQRPAY_MERCHANT_ACCOUNT")
    assert not diagnosis.healthy


@SQLITE_ONLY
async def test_a_missing_token_fails_and_skips_the_test_call(ready: Settings) -> None:
    diagnosis = await examine(ready.model_copy(update={"bakong_token": SecretStr("")}))
    expect(diagnosis, Check.TOKEN, Level.FAIL, "not set", "KHQRPAY_BAKONG_TOKEN")
    assert levels(diagnosis)[Check.BAKONG] is Level.SKIP
    # The account check needs no token: it still runs.
    assert levels(diagnosis)[Check.RECEIVING_ACCOUNT] is Level.OK
    assert not diagnosis.healthy


@SQLITE_ONLY
async def test_an_expired_token_fails_with_its_date(settings: Settings, database_url: str) -> None:
    token = jwt_expiring_in(-3)
    with start_simulator(settings, token=token) as simulator:
        configured = configured_for(settings, simulator, database_url)
        diagnosis = await examine(configured)
    expect(diagnosis, Check.TOKEN, Level.FAIL, "(3 days ago)", "renew")


@SQLITE_ONLY
async def test_a_token_expiring_within_the_warning_days_warns_and_passes(
    settings: Settings, database_url: str
) -> None:
    with start_simulator(settings, token=jwt_expiring_in(3)) as simulator:
        configured = configured_for(settings, simulator, database_url)
        diagnosis = await examine(configured)
    expect(diagnosis, Check.TOKEN, Level.WARN, "in 3.0 days", "renew")
    assert diagnosis.healthy  # warnings leave the exit code 0


@SQLITE_ONLY
@pytest.mark.parametrize("refusal", ["unknown token (401)", "expired on Bakong's side (403)"])
async def test_a_token_bakong_refuses_fails_as_a_token_problem(
    ready: Settings, simulator: RunningSimulator, refusal: str
) -> None:
    if refusal.startswith("unknown"):
        configured = ready.model_copy(update={"bakong_token": SecretStr(jwt_expiring_in(60))})
    else:
        simulator.simulator.faults.configure(FaultConfig(tokens_expired=True))
        configured = ready
    diagnosis = await examine(configured)
    expect(diagnosis, Check.BAKONG, Level.FAIL, "refused the token", "renew")
    assert levels(diagnosis)[Check.MD5_LIST] is Level.SKIP


# What Bakong does → what the doctor must say: (check, level, words of the message, of the fix).
BAKONG_TROUBLES = {
    "the firewall's 403": (
        FaultConfig(blocked=1.0),
        [
            (Check.BAKONG, Level.FAIL, "firewall", "Cambodian IP addresses"),
            (Check.RECEIVING_ACCOUNT, Level.WARN, "could not be checked", ""),
            (Check.CLOCK, Level.OK, "", ""),  # the 403 page carries a Date too
        ],
    ),
    "rate limits": (
        FaultConfig(rate_limited=1.0, retry_after_s=30),
        [(Check.BAKONG, Level.WARN, "retry after 30s", "RATE_LIMIT_PER_S")],
    ),
    "a refused md5 list": (
        FaultConfig(md5_list_blocked=True),
        [
            (Check.BAKONG, Level.OK, "accepted the token", ""),
            (Check.MD5_LIST, Level.WARN, "refused (HTTP 403)", "LIST_FALLBACK_S"),
        ],
    ),
    "answers that are not the Open API's": (
        FaultConfig(not_json=1.0),
        [(Check.BAKONG, Level.FAIL, "not answer as the Open API", "BAKONG_URL")],
    ),
}


@SQLITE_ONLY
@pytest.mark.parametrize("trouble", list(BAKONG_TROUBLES))
async def test_bakongs_troubles_are_named_with_their_fix_and_fail_only_when_fatal(
    ready: Settings, simulator: RunningSimulator, trouble: str
) -> None:
    faults, expected = BAKONG_TROUBLES[trouble]
    simulator.simulator.faults.configure(faults)
    diagnosis = await examine(ready)
    for check, level, says, fix in expected:
        expect(diagnosis, check, level, says, fix)
    assert diagnosis.healthy is all(level is not Level.FAIL for _c, level, _s, _f in expected)


def calls_used(settings: Settings) -> int:
    database = Database.from_url(settings.database_url)
    try:
        status = budget_status(database, settings.call_budget(), now_ms=SystemClock().now_ms())
    finally:
        database.dispose()
    return status.use.used


def md5_list_requests(simulator: RunningSimulator) -> int:
    return sum(
        count for path, count in simulator.simulator.requests.items() if "check_transaction" in path
    )


async def test_the_test_call_is_taken_from_the_shared_request_budget(
    ready: Settings, simulator: RunningSimulator
) -> None:
    before = calls_used(ready)
    diagnosis = await examine(ready)
    expect(diagnosis, Check.BAKONG, Level.OK, "accepted the token")
    assert calls_used(ready) == before + 1
    assert md5_list_requests(simulator) == 1


async def test_with_the_budget_spent_bakong_is_not_asked_and_that_is_a_warning(
    ready: Settings, simulator: RunningSimulator
) -> None:
    tight = ready.model_copy(update={"bakong_max_calls_per_min": 2})
    database = Database.from_url(tight.database_url)
    try:
        spent = SharedCallBudget(database, tight.call_budget(), SystemClock())
        assert spent.take(2, priority=CallPriority.STAFF) == 2
    finally:
        database.dispose()
    diagnosis = await examine(tight)
    expect(diagnosis, Check.BAKONG, Level.WARN, "not asked", "again in a minute")
    assert levels(diagnosis)[Check.MD5_LIST] is Level.SKIP
    assert md5_list_requests(simulator) == 0
    assert calls_used(tight) == 2


@SQLITE_ONLY
async def test_bakong_out_of_reach_fails_and_the_clock_is_skipped(ready: Settings) -> None:
    diagnosis = await examine(ready.model_copy(update={"bakong_url": "http://127.0.0.1:9"}))
    expect(diagnosis, Check.BAKONG, Level.FAIL, "gave no answer", "reaches it")
    assert levels(diagnosis)[Check.CLOCK] is Level.SKIP
    assert levels(diagnosis)[Check.RECEIVING_ACCOUNT] is Level.WARN


@SQLITE_ONLY
@pytest.mark.parametrize("trouble", ["frozen", "unknown to Bakong"])
async def test_a_receiving_account_bakong_cannot_pay_into_fails(
    settings: Settings, database_url: str, trouble: str
) -> None:
    extra: dict[str, Any] = (
        {"frozen_accounts": frozenset({settings.merchant_account})} if trouble == "frozen" else {}
    )
    with start_simulator(settings, **extra) as simulator:
        configured = configured_for(settings, simulator, database_url)
        if trouble != "frozen":
            configured = configured.model_copy(update={"merchant_account": "nobody@aclb"})
        diagnosis = await examine(configured)
    expect(diagnosis, Check.RECEIVING_ACCOUNT, Level.FAIL, "cannot receive", "MERCHANT_ACCOUNT")
    assert not diagnosis.healthy


@SQLITE_ONLY
@pytest.mark.parametrize(("ahead_s", "expected"), [(90, Level.WARN), (600, Level.FAIL)])
async def test_a_clock_out_of_step_with_bakongs_is_reported(
    ready: Settings, ahead_s: int, expected: Level
) -> None:
    skewed = FakeClock(SystemClock().now_ms() + ahead_s * 1000)
    diagnosis = await examine(ready, clock=skewed)
    message = expect(diagnosis, Check.CLOCK, expected, "ahead of Bakong's", "set-ntp")
    assert abs(float(message.split("clock is ")[1].split("s ")[0]) - ahead_s) < 3


@SQLITE_ONLY
async def test_an_unreachable_database_fails_and_skips_the_schema(ready: Settings) -> None:
    url = "postgresql+psycopg://khqrpay:not-shown-pw@127.0.0.1:9/khqrpay"
    diagnosis = await examine(ready.model_copy(update={"database_url": url}))
    expect(diagnosis, Check.DATABASE, Level.FAIL, "cannot reach", "KHQRPAY_DATABASE_URL")
    assert "not-shown-pw" not in json.dumps([f.message for f in diagnosis.findings])
    assert levels(diagnosis)[Check.SCHEMA] is Level.SKIP
    # Without a secret key, several processes on PostgreSQL cannot share sessions.
    no_key = await examine(
        ready.model_copy(update={"database_url": url, "web_secret_key": SecretStr("")})
    )
    expect(no_key, Check.WEB, Level.FAIL, "not set", "the same for every web process")


@SQLITE_ONLY
async def test_a_missing_sqlite_file_fails_and_is_not_created(
    ready: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "nowhere" / "khqrpay.sqlite3"
    diagnosis = await examine(ready.model_copy(update={"database_url": f"sqlite:///{path}"}))
    expect(diagnosis, Check.DATABASE, Level.FAIL, "no SQLite database", "khqrpay db upgrade")
    assert not path.parent.exists()
    # A single process on SQLite only loses its sessions at a restart: a warning.
    no_key = await examine(ready.model_copy(update={"web_secret_key": SecretStr("")}))
    expect(no_key, Check.WEB, Level.WARN, "restarts")


async def test_a_database_behind_the_code_fails_with_the_upgrade_command(ready: Settings) -> None:
    database = Database.from_url(ready.database_url)
    try:
        migrate.downgrade(database, "-1")
    finally:
        database.dispose()
    diagnosis = await examine(ready)
    expect(diagnosis, Check.SCHEMA, Level.FAIL, migrate.HEAD_REVISION, "khqrpay db upgrade")


# The command -----------------------------------------------------------------------------------


def environment(settings: Settings) -> dict[str, str]:
    return {
        "KHQRPAY_DATABASE_URL": settings.database_url,
        "KHQRPAY_BAKONG_URL": settings.bakong_url,
        "KHQRPAY_BAKONG_TOKEN": settings.bakong_token.get_secret_value(),
        "KHQRPAY_BAKONG_TIMEOUT_S": "2",
        "KHQRPAY_MERCHANT_ACCOUNT": settings.merchant_account,
        "KHQRPAY_WEB_SECRET_KEY": settings.web_secret_key.get_secret_value(),
    }


@SQLITE_ONLY
def test_the_command_exits_0_when_ready_and_prints_a_line_per_check(
    ready: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["doctor"], env=environment(ready))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["ok", check.value] for check in Check]
    assert lines[-1] == "ready: 0 failed, 0 warnings"
    assert ready.bakong_token.get_secret_value() not in result.output


@SQLITE_ONLY
def test_the_command_exits_1_on_a_failure_and_says_how_to_fix_it_in_json(
    ready: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    env = environment(ready) | {"KHQRPAY_BAKONG_TOKEN": jwt_expiring_in(40)}
    result = CliRunner().invoke(cli, ["doctor", "--json"], env=env)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    (bakong,) = [c for c in report["checks"] if c["check"] == "bakong"]
    assert bakong["level"] == "fail"
    assert "renew" in bakong["fix"]
    assert env["KHQRPAY_BAKONG_TOKEN"] not in result.output
