"""The simulator's fault config and its per-request, seedable fault draw."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from khqrpay.simulator.faults import Fault, FaultConfig, FaultInjector


def test_no_fault_is_drawn_when_every_fraction_is_zero() -> None:
    injector = FaultInjector(FaultConfig(), seed=1)
    assert {injector.decide() for _ in range(1000)} == {Fault.NONE}


@pytest.mark.parametrize(
    ("field", "fault"),
    [
        ("server_error", Fault.SERVER_ERROR),
        ("service_unavailable", Fault.SERVICE_UNAVAILABLE),
        ("gateway_timeout", Fault.GATEWAY_TIMEOUT),
        ("rate_limited", Fault.RATE_LIMITED),
        ("blocked", Fault.BLOCKED),
        ("timeout", Fault.TIMEOUT),
        ("not_json", Fault.NOT_JSON),
    ],
)
def test_a_fraction_of_one_makes_every_request_fail_that_way(field: str, fault: Fault) -> None:
    injector = FaultInjector(FaultConfig.model_validate({field: 1.0}), seed=2)
    assert {injector.decide() for _ in range(200)} == {fault}


def test_fractions_are_honoured_over_many_draws() -> None:
    config = FaultConfig(server_error=0.1, rate_limited=0.2, not_json=0.05)
    injector = FaultInjector(config, seed=3)
    counts = Counter(injector.decide() for _ in range(20_000))
    # Binomial standard error at n=20000 is at most 0.0036; 0.015 is over 4 of them.
    assert counts[Fault.SERVER_ERROR] / 20_000 == pytest.approx(0.1, abs=0.015)
    assert counts[Fault.RATE_LIMITED] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert counts[Fault.NOT_JSON] / 20_000 == pytest.approx(0.05, abs=0.015)
    assert counts[Fault.NONE] / 20_000 == pytest.approx(0.65, abs=0.015)


def test_the_same_seed_gives_the_same_faults_and_reseeding_restarts_them() -> None:
    config = FaultConfig(server_error=0.3, blocked=0.3)
    first = FaultInjector(config, seed=42)
    second = FaultInjector(config, seed=42)
    sequence = [first.decide() for _ in range(100)]
    assert [second.decide() for _ in range(100)] == sequence
    assert len(set(sequence)) == 3
    first.configure(config, seed=42)
    assert [first.decide() for _ in range(100)] == sequence


def test_configure_replaces_the_config() -> None:
    injector = FaultInjector(FaultConfig(server_error=1.0), seed=4)
    injector.configure(FaultConfig(md5_list_blocked=True))
    assert injector.config == FaultConfig(md5_list_blocked=True)
    assert injector.decide() is Fault.NONE


@pytest.mark.parametrize(
    "fields",
    [
        {"server_error": 0.6, "timeout": 0.5},
        {"blocked": -0.1},
        {"not_json": 1.5},
        {"hang_s": 0},
        {"latency_s": -1},
        {"retry_after_s": -1},
        {"teapot": 0.1},
    ],
)
def test_invalid_fault_configs_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        FaultConfig.model_validate(fields)


def test_a_fault_config_is_immutable() -> None:
    config = FaultConfig()
    with pytest.raises(ValidationError):
        config.server_error = 0.5  # type: ignore[misc]
