"""What the engine tells the world: which events become webhooks and alerts, and the retry
schedule of their deliveries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khqrpay.orders.events import (
    BakongTokenExpiring,
    BakongUnauthorized,
    EvidenceAttached,
    OrderCreated,
    OrderStatusChanged,
    PaymentConflict,
    QrCreated,
    RefundFlagCleared,
    RefundFlagged,
)
from khqrpay.orders.model import OrderStatus
from khqrpay.orders.notices import (
    UNAUTHORIZED_ALERT_EVERY_MS,
    AlertKind,
    RetrySchedule,
    SigningSecret,
    TokenStage,
    WebhookEventType,
    alert_for,
    parse_event_types,
    token_stage,
    webhook_event_type,
)

AT = 1_795_651_200_000
DAY_MS = 86_400_000


def _changed(to: OrderStatus, frm: OrderStatus = OrderStatus.PENDING) -> OrderStatusChanged:
    return OrderStatusChanged(order_id=1, at_ms=AT, from_status=frm, to_status=to, reason=None)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (OrderCreated(order_id=1, at_ms=AT, status=OrderStatus.PENDING), "order.created"),
        (_changed(OrderStatus.COMPLETED), "order.completed"),
        (_changed(OrderStatus.NEEDS_REVIEW), "order.needs_review"),
        (_changed(OrderStatus.EXPIRED), "order.expired"),
        (_changed(OrderStatus.CANCELLED), "order.cancelled"),
        (_changed(OrderStatus.COMPLETED, OrderStatus.NEEDS_REVIEW), "order.completed"),
        (_changed(OrderStatus.NEEDS_REVIEW, OrderStatus.CANCELLED), "order.needs_review"),
        (RefundFlagged(order_id=1, at_ms=AT, reason="paid twice"), "order.refund_flagged"),
        # Not carried by webhooks:
        (_changed(OrderStatus.REFUNDED, OrderStatus.NEEDS_REVIEW), None),
        (QrCreated(order_id=1, at_ms=AT, payment_id=2), None),
        (EvidenceAttached(order_id=1, at_ms=AT, reason=None), None),
        (RefundFlagCleared(order_id=1, at_ms=AT, reason="x", reference="FT1"), None),
        (PaymentConflict(order_id=1, at_ms=AT, reason="x"), None),
        (BakongUnauthorized(at_ms=AT, error="401", worker="w"), None),
    ],
)
def test_each_domain_event_maps_to_at_most_one_public_event_type(
    event: object, expected: str | None
) -> None:
    found = webhook_event_type(event)  # type: ignore[arg-type]
    assert (None if found is None else found.value) == expected


def test_every_public_event_type_is_announced_by_some_event() -> None:
    events = [
        OrderCreated(order_id=1, at_ms=AT, status=OrderStatus.PENDING),
        *(_changed(status) for status in OrderStatus if status is not OrderStatus.PENDING),
        RefundFlagged(order_id=1, at_ms=AT, reason="x"),
    ]
    assert {webhook_event_type(event) for event in events} - {None} == set(WebhookEventType)


def test_event_types_are_parsed_in_order_once_each_and_unknown_ones_named() -> None:
    assert parse_event_types(" order.completed,order.created,order.completed ,") == (
        WebhookEventType.ORDER_COMPLETED,
        WebhookEventType.ORDER_CREATED,
    )
    with pytest.raises(ValueError, match=r"unknown event type 'order\.paid': use order\.created"):
        parse_event_types("order.completed,order.paid")
    with pytest.raises(ValueError, match="at least one"):
        parse_event_types(" , ")


def test_people_are_alerted_of_payments_reviews_refund_flags_and_token_trouble() -> None:
    assert alert_for(_changed(OrderStatus.COMPLETED)).kind is AlertKind.PAYMENT  # type: ignore[union-attr]
    assert alert_for(_changed(OrderStatus.NEEDS_REVIEW)).kind is AlertKind.NEEDS_REVIEW  # type: ignore[union-attr]
    flagged = alert_for(RefundFlagged(order_id=1, at_ms=AT, reason="x"))
    assert flagged is not None
    assert flagged.kind is AlertKind.REFUND_FLAG
    assert flagged.dedupe_key is None
    for quiet in (
        _changed(OrderStatus.EXPIRED),
        _changed(OrderStatus.CANCELLED),
        OrderCreated(order_id=1, at_ms=AT, status=OrderStatus.PENDING),
    ):
        assert alert_for(quiet) is None


def test_bakong_refusing_the_token_alerts_once_per_window() -> None:
    def key(at_ms: int) -> str | None:
        alert = alert_for(BakongUnauthorized(at_ms=at_ms, error="401", worker="w"))
        assert alert is not None
        assert alert.kind is AlertKind.BAKONG_UNAUTHORIZED
        return alert.dedupe_key

    start = (AT // UNAUTHORIZED_ALERT_EVERY_MS) * UNAUTHORIZED_ALERT_EVERY_MS
    assert key(start) == key(start + 300_000) == key(start + UNAUTHORIZED_ALERT_EVERY_MS - 1)
    assert key(start + UNAUTHORIZED_ALERT_EVERY_MS) != key(start)


def test_a_token_expiring_alerts_once_per_token_and_stage() -> None:
    expires = AT + 10 * DAY_MS

    def key(now_ms: int, expires_at_ms: int = expires) -> str | None:
        event = BakongTokenExpiring(at_ms=now_ms, expires_at_ms=expires_at_ms, worker="w")
        alert = alert_for(event)
        assert alert is not None
        return alert.dedupe_key

    soon = {key(expires - 7 * DAY_MS), key(expires - 2 * DAY_MS)}
    assert len(soon) == 1
    assert key(expires - DAY_MS) not in soon
    assert key(expires + 1) not in soon | {key(expires - DAY_MS)}
    assert key(expires - 7 * DAY_MS, expires + DAY_MS) not in soon  # a renewed token


def test_token_stages() -> None:
    expires = AT + 10 * DAY_MS
    assert token_stage(expires_at_ms=expires, now_ms=expires - 3 * DAY_MS) is TokenStage.SOON
    assert token_stage(expires_at_ms=expires, now_ms=expires - DAY_MS) is TokenStage.LAST_DAY
    assert token_stage(expires_at_ms=expires, now_ms=expires) is TokenStage.EXPIRED


SCHEDULE = RetrySchedule(first_ms=10_000, max_interval_ms=7_200_000, window_ms=3 * DAY_MS)


def test_retries_back_off_exponentially_to_the_longest_interval() -> None:
    highest = [SCHEDULE.interval_ms(n, jitter=0.9999999999) for n in range(1, 14)]
    lowest = [SCHEDULE.interval_ms(n, jitter=0.0) for n in range(1, 14)]
    assert highest[:4] == [10_000, 20_000, 40_000, 80_000]
    assert lowest[:4] == [5_000, 10_000, 20_000, 40_000]
    assert highest[-1] == 7_200_000
    assert lowest[-1] == 3_600_000


@given(failures=st.integers(1, 200), jitter=st.floats(0, 1, exclude_max=True))
def test_jitter_keeps_a_retry_within_the_upper_half_of_its_step(
    failures: int, jitter: float
) -> None:
    step = min(SCHEDULE.max_interval_ms, SCHEDULE.first_ms * 2 ** min(failures - 1, 40))
    assert step // 2 <= SCHEDULE.interval_ms(failures, jitter) <= step


def test_retries_stop_at_the_end_of_the_window_with_a_last_try_at_its_end() -> None:
    started = AT
    deadline = started + 3 * DAY_MS
    assert (
        SCHEDULE.next_attempt_ms(
            failures=30, now_ms=deadline - 60_000, started_ms=started, jitter=0.5
        )
        == deadline
    )
    assert (
        SCHEDULE.next_attempt_ms(failures=31, now_ms=deadline, started_ms=started, jitter=0.5)
        is None
    )


def test_a_requested_wait_is_honoured_when_longer_than_the_backoff() -> None:
    assert (
        SCHEDULE.next_attempt_ms(
            failures=1, now_ms=AT, started_ms=AT, jitter=0.0, not_before_ms=AT + 60_000
        )
        == AT + 60_000
    )
    assert (
        SCHEDULE.next_attempt_ms(
            failures=1, now_ms=AT, started_ms=AT, jitter=0.0, not_before_ms=AT + 1
        )
        == AT + 5_000
    )


def test_a_full_retry_window_tries_a_few_dozen_times() -> None:
    now, failures = AT, 0
    while (
        next_ms := SCHEDULE.next_attempt_ms(
            failures=failures + 1, now_ms=now, started_ms=AT, jitter=0.5
        )
    ) is not None:
        now, failures = next_ms, failures + 1
    assert now == AT + 3 * DAY_MS
    assert 35 <= failures <= 70


def test_a_bad_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="first retry"):
        RetrySchedule(first_ms=0, max_interval_ms=1, window_ms=1)
    with pytest.raises(ValueError, match="first retry"):
        RetrySchedule(first_ms=10, max_interval_ms=5, window_ms=1)
    with pytest.raises(ValueError, match="window"):
        RetrySchedule(first_ms=1, max_interval_ms=5, window_ms=0)


def test_a_signing_secret_never_shows_itself() -> None:
    secret = SigningSecret("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
    assert "c2Vj" not in repr(secret)
    assert "c2Vj" not in str(secret)
    assert "c2Vj" not in repr([secret])
    assert secret.reveal() == "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
    with pytest.raises(ValueError, match="whsec_"):
        SigningSecret("c2VjcmV0")
