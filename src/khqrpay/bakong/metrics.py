"""Prometheus metrics of the Bakong client."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from khqrpay.bakong.resilience import CircuitState


class BakongMetrics:
    """One set of collectors per registry; the process-wide one comes from `default_metrics()`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "khqrpay_bakong_calls_total",
            "Bakong API calls (after retries) by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.list_items = Counter(
            "khqrpay_bakong_list_items_total",
            "Keys answered by the list endpoints (or their single-check fallback), by outcome",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "khqrpay_bakong_retries_total",
            "Attempts repeated after a transient error, by endpoint and error",
            ["endpoint", "error"],
            registry=registry,
        )
        self.latency = Histogram(
            "khqrpay_bakong_call_seconds",
            "Duration of a Bakong API call including retries and waits",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 60),
            registry=registry,
        )
        self.circuit_state = Gauge(
            "khqrpay_bakong_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            registry=registry,
        )
        self.token_expiry = Gauge(
            "khqrpay_bakong_token_expiry_timestamp_seconds",
            "When the configured Bakong token expires (JWT exp), 0 if unknown",
            registry=registry,
        )

    def set_circuit_state(self, state: CircuitState) -> None:
        self.circuit_state.set(state.value)


_default: BakongMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> BakongMetrics:
    """The collectors in prometheus-client's global registry, created once per process."""
    global _default  # noqa: PLW0603 - a registry accepts each metric name only once
    with _default_lock:
        if _default is None:
            _default = BakongMetrics(REGISTRY)
        return _default
