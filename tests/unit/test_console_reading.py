"""The console's pure helpers: what a search may mean, percentiles, the chart's scale, phone
numbers as people write them, a session cookie's staff part read defensively, and Verify
Instantly's sentence when the request budget deferred it."""

from __future__ import annotations

import pytest

from khqrpay.db import OrderSearch
from khqrpay.services.console import percentile, read_search
from khqrpay.services.schemas import VerifyView
from khqrpay.web.admin.access import StaffSession
from khqrpay.web.admin.charts import nice_ceiling
from khqrpay.web.admin.wording import phone, verify_summary

HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("12", OrderSearch(ids=(12,))),
        ("#12", OrderSearch(ids=(12,))),
        ("ORD-12", OrderSearch(ids=(12,))),
        ("ord12", OrderSearch(ids=(12,))),
        (
            "012 345 678",
            OrderSearch(phone="+85512345678", phone_digits="012345678"),
        ),
        ("+855 97 765 4321", OrderSearch(phone="+855977654321", phone_digits="855977654321")),
        ("345678", OrderSearch(ids=(345678,), phone_digits="345678")),
        ("9F86D081", OrderSearch(hex_prefix="9f86d081")),
        (HASH, OrderSearch(token=HASH, hex_prefix=HASH)),
        ("hello", OrderSearch()),
        ("Zx3_kT9-pq7LmN2vB8cR", OrderSearch(token="Zx3_kT9-pq7LmN2vB8cR")),
    ],
)
def test_a_search_is_read_as_everything_it_may_be(text: str, expected: OrderSearch | None) -> None:
    assert read_search(text) == expected


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 21))
    assert percentile(values, 0.5) == 10
    assert percentile(values, 0.95) == 19
    assert percentile([7], 0.95) == 7
    assert percentile([], 0.5) is None


def test_the_charts_scale_is_a_round_number_at_or_above_the_tallest_bar() -> None:
    assert [nice_ceiling(n) for n in (0, 1, 3, 5, 7, 11, 49, 51, 999)] == [
        1,
        1,
        5,
        5,
        10,
        20,
        50,
        100,
        1000,
    ]


def test_phone_numbers_are_written_the_cambodian_way() -> None:
    assert phone("+85512345678") == "012 345 678"
    assert phone("+855977654321") == "097 765 4321"
    assert phone(None) == "—"


@pytest.mark.parametrize(
    "data",
    [None, "x", {}, {"id": "1", "since": 1, "seen": 1}, {"id": True, "since": 1, "seen": 1}],
)
def test_a_session_in_a_shape_this_code_never_wrote_is_no_session(data: object) -> None:
    assert StaffSession.read(data) is None


def test_a_staff_session_reads_back_what_it_wrote() -> None:
    session = StaffSession(user_id=3, signed_in_ms=10, seen_ms=20)
    assert StaffSession.read(session.written()) == session


def test_verify_instantly_deferred_by_the_budget_says_so_not_that_nothing_waits() -> None:
    view = VerifyView(order_id=7, previous_status="PENDING", status="PENDING", checked=[])
    assert "No QR code" in verify_summary(view).text
    deferred = verify_summary(view.model_copy(update={"deferred": 1}))
    assert deferred.kind == "warn"
    assert "request budget has no call left" in deferred.text
