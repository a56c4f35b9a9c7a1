"""Prometheus metrics of the verifier worker, in the default registry beside the Bakong client's
(which has the circuit breaker state, `khqrpay_bakong_circuit_state`, and calls by outcome)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHECKS = Counter(
    "khqrpay_verifier_checks_total",
    "Payments checked against Bakong, by outcome (paid, not_found, ..., or the error kind).",
    ["outcome"],
)
ERRORS = Counter(
    "khqrpay_verifier_errors_total",
    "Bakong errors met by the verifier, by type (unauthorized, rate_limited, unavailable, ...).",
    ["type"],
)
BATCH_SIZE = Histogram(
    "khqrpay_verifier_batch_size",
    "Payments carried by one md5-list call.",
    buckets=(1, 2, 5, 10, 20, 30, 40, 50),
)
CLAIMED = Histogram(
    "khqrpay_verifier_claimed_payments",
    "Payments claimed (leased) by one verifier cycle.",
    buckets=(1, 10, 50, 100, 200, 500, 1000),
)
DETECTION_LATENCY = Histogram(
    "khqrpay_detection_latency_seconds",
    "From the payment time in Bakong's evidence to the order COMPLETED.",
    buckets=(0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900, 1800, 3600, 6 * 3600, 86400),
)
PENDING_PAYMENTS = Gauge(
    "khqrpay_pending_payments",
    "Payments still waiting for their money, by age band.",
    ["age_band"],
)
COMPLETIONS = Counter(
    "khqrpay_verifier_completions_total",
    "What the completion function did with payments the verifier found paid, by result.",
    ["result"],
)
EXPIRED_ORDERS = Counter("khqrpay_orders_expired_total", "Orders expired after their final check.")
BAKONG_PAUSED = Gauge(
    "khqrpay_worker_bakong_paused",
    "1 while the worker has stopped calling Bakong (token refused or rate limited), else 0.",
)
CYCLE_SECONDS = Histogram(
    "khqrpay_worker_cycle_seconds",
    "Wall time of one claim → check → apply cycle.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
OUTBOX_RELAYED = Counter("khqrpay_outbox_relayed_total", "Outbox events published to the bus.")
BUDGET_LIMIT = Gauge(
    "khqrpay_bakong_budget_calls_per_minute",
    "The request budget: payment-check calls to Bakong allowed a minute, all processes together.",
)
BUDGET_USED = Gauge(
    "khqrpay_bakong_budget_calls_used",
    "Payment-check calls made in the last minute by all processes, as the last cycle saw it.",
)
CHECK_MODE = Gauge(
    "khqrpay_bakong_check_mode",
    "1 for the mode in use: list (the md5 list, 50 QRs a call) or single (one QR a call: Bakong "
    "refuses the list).",
    ["mode"],
)
DEFERRED = Counter(
    "khqrpay_verifier_deferred_total",
    "QR checks deferred because the request budget had no call left (checked later, never "
    "dropped).",
)
HEDGED_CALLS = Counter(
    "khqrpay_verifier_hedged_calls_total",
    "md5-list calls asked a second time because Bakong had not answered within "
    "KHQRPAY_BAKONG_HEDGE_AFTER_S while a customer watched one of their QRs.",
)
BEHIND_SCHEDULE = Gauge(
    "khqrpay_orders_behind_schedule",
    "Orders with a QR whose check is more than 30 s late (the budget cannot keep up).",
)
