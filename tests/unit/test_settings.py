"""Settings from the environment: a wrong value is refused with the variable's name and why, and
never with the value itself (it may be the Bakong token or a password)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from limits import parse_many

from khqrpay.bakong.token import BakongToken
from khqrpay.settings import Settings, SettingsError, load_settings

SECRET = "hunter2-secret"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("KHQRPAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("KHQRPAY_BAKONG_TOKEN", f"{SECRET} x", "must not contain spaces or control characters"),
        ("KHQRPAY_BAKONG_TOKEN", f"{SECRET}\x07", "must not contain spaces or control characters"),
        ("KHQRPAY_BAKONG_TIMEOUT_S", SECRET, "valid number"),
        ("KHQRPAY_WORKER_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("KHQRPAY_DATABASE_URL", f"postgresql://shop:{SECRET}@db:port/shop", "not a database URL"),
        ("KHQRPAY_DATABASE_URL", f"{SECRET}-not-a-url", "not a database URL"),
        ("KHQRPAY_MERCHANT_NAME", f"{SECRET}\udcff", "is not UTF-8 text"),
        ("KHQRPAY_BAKONG_TOKEN", f"{SECRET}\udcff", "is not UTF-8 text"),
        ("KHQRPAY_WEB_RATE_LOOKUP", f"{SECRET}/minute", "is not a rate limit like 10/minute"),
    ],
)
def test_a_wrong_setting_is_named_with_the_reason_and_never_its_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, why: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"invalid settings: {variable}: ")
    assert why in message
    assert value not in message
    assert SECRET not in message
    assert refused.value.__cause__ is None  # the value is not carried along in a chained error
    assert "\n" not in message


def test_every_wrong_setting_is_named_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHQRPAY_BAKONG_TOKEN", "a b")
    monkeypatch.setenv("KHQRPAY_SCHEDULE_AGE_FACTOR", "-1")
    with pytest.raises(
        SettingsError, match=r"KHQRPAY_BAKONG_TOKEN: .*; KHQRPAY_SCHEDULE_AGE_FACTOR"
    ):
        load_settings()


def test_a_token_the_settings_accept_is_one_the_client_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KHQRPAY_BAKONG_TOKEN", "  eyJhbGciOiJIUzI1NiJ9.e30.c2ln  ")
    token = load_settings().bakong_token.get_secret_value()
    assert BakongToken(token).reveal() == "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"


def test_the_default_rate_limits_are_rate_limits() -> None:
    # The settings take the defaults without parsing them (so that loading them needs no
    # `limits`): they are checked here instead.
    rates = [name for name in Settings.model_fields if name.startswith("web_rate_")]
    assert len(rates) == 7
    for name in rates:
        assert parse_many(Settings.model_fields[name].default), name
