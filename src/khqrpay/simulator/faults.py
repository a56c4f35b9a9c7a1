"""Faults on demand: which fraction of Bakong requests misbehave, and how, decided per request."""

from __future__ import annotations

import enum
import random
import threading

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Fault(enum.Enum):
    """What a single Bakong request suffers instead of (or before) its normal answer."""

    NONE = "none"
    SERVER_ERROR = "500"
    SERVICE_UNAVAILABLE = "503"
    GATEWAY_TIMEOUT = "504"
    RATE_LIMITED = "429"
    BLOCKED = "403"
    TIMEOUT = "timeout"
    NOT_JSON = "not_json"


class FaultConfig(BaseModel):
    """Fractions (0..1) of Bakong requests that fail each way; together at most 1.

    `latency_s` is added to every Bakong request; `hang_s` is how long a `timeout` request hangs
    (longer than the client's timeout); `md5_list_blocked` makes the md5 list endpoint answer 403
    HTML as it has in production; `tokens_expired` makes every token answer 401/errorCode 6.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_error: float = Field(default=0.0, ge=0, le=1)
    service_unavailable: float = Field(default=0.0, ge=0, le=1)
    gateway_timeout: float = Field(default=0.0, ge=0, le=1)
    rate_limited: float = Field(default=0.0, ge=0, le=1)
    blocked: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=0.0, ge=0, le=1)
    not_json: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: int = Field(default=1, ge=0, le=3600)
    hang_s: float = Field(default=30.0, gt=0, le=3600)
    latency_s: float = Field(default=0.0, ge=0, le=60)
    md5_list_blocked: bool = False
    tokens_expired: bool = False

    @model_validator(mode="after")
    def _fractions_fit(self) -> FaultConfig:
        if sum(fraction for _, fraction in self.fractions()) > 1:
            raise ValueError("the fault fractions add up to more than 1")
        return self

    def fractions(self) -> tuple[tuple[Fault, float], ...]:
        """Each random fault with its fraction, in the fixed order the draw walks them."""
        return (
            (Fault.SERVER_ERROR, self.server_error),
            (Fault.SERVICE_UNAVAILABLE, self.service_unavailable),
            (Fault.GATEWAY_TIMEOUT, self.gateway_timeout),
            (Fault.RATE_LIMITED, self.rate_limited),
            (Fault.BLOCKED, self.blocked),
            (Fault.TIMEOUT, self.timeout),
            (Fault.NOT_JSON, self.not_json),
        )


class FaultInjector:
    """The current fault config and a seedable random source; thread-safe.

    One uniform draw per request picks at most one fault, so a given seed and request order always
    produce the same faults.
    """

    def __init__(self, config: FaultConfig, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._rng = random.Random(seed)  # noqa: S311 - fault injection, not security

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def configure(self, config: FaultConfig, seed: int | None = None) -> None:
        """Replace the config; reseed when a seed is given."""
        with self._lock:
            self._config = config
            if seed is not None:
                self._rng.seed(seed)

    def decide(self) -> Fault:
        with self._lock:
            draw = self._rng.random()
            for fault, fraction in self._config.fractions():
                if draw < fraction:
                    return fault
                draw -= fraction
            return Fault.NONE
