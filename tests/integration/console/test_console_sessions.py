"""Logging in and staying in: CSRF on every form, sessions that rotate, expire when idle and end
with the account, and logins throttled by user name and by address."""

from __future__ import annotations

import pytest

from helpers.console import OWNER, STAFF, Console
from khqrpay.orders.model import OrderStatus
from khqrpay.services.accounts import set_disabled, set_password
from khqrpay.services.orders import order_details
from khqrpay.web.app import CSRF_COOKIE

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MINUTE_MS = 60_000


def signed_in(console: Console) -> bool:
    """Whether the dashboard opens (else the login page is where it sends the browser)."""
    answer = console.page("/admin")
    if answer.status_code == 303:
        assert answer.headers["location"].startswith("/admin/login")
        return False
    assert answer.status_code == 200
    return True


# CSRF -------------------------------------------------------------------------------------------


def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    console: Console,
) -> None:
    console.as_staff()
    created = console.order((console.product(), 1))
    path = f"/admin/orders/{created.order.id}/mark-paid"
    for token in (None, "forged-token"):
        form = {"reason": "paid in cash"} | ({} if token is None else {"csrftoken": token})
        answer = console.client.post(path, data=form, headers={"accept": "application/json"})
        assert answer.status_code == 403
    details = order_details(console.app.database, created.order.id)
    assert details.order.status is OrderStatus.PENDING
    assert [entry.action for entry in details.audit] == ["order_created"]


def test_the_pages_script_sends_the_token_in_a_header(console: Console) -> None:
    console.as_staff()
    created = console.order((console.product(), 1))
    answer = console.client.post(
        f"/admin/orders/{created.order.id}/mark-paid",
        data={"reason": "paid in cash"},
        headers={"accept": "application/json", "x-csrftoken": console.csrf()},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["status"] == "COMPLETED"


def test_a_login_needs_the_login_forms_token(console: Console) -> None:
    """No cookie at all would pass the CSRF middleware: the login itself insists."""
    answer = console.client.post(
        "/admin/login", data={"name": STAFF[0], "password": STAFF[1]}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert not signed_in(console)


# Sessions ---------------------------------------------------------------------------------------


def test_a_visitor_is_sent_to_log_in_and_comes_back_where_they_were(console: Console) -> None:
    created = console.order((console.product(), 1))
    path = f"/admin/orders/{created.order.id}"
    answer = console.page(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/admin/login?next={path}"
    logged_in = console.login(*STAFF, next_path=path)
    assert logged_in.headers["location"] == path


def test_login_never_sends_a_browser_to_another_site(console: Console) -> None:
    for target in ("https://evil.example/", "//evil.example/admin", "/shop"):
        console.client.cookies.clear()
        assert console.login(*STAFF, next_path=target).headers["location"] == "/admin"


def test_logging_in_starts_a_new_session_and_a_new_csrf_token(console: Console) -> None:
    console.as_staff()
    console.clock.advance(ms=31 * MINUTE_MS)
    assert not signed_in(console)  # leaves "your session has ended" in the session
    token_before = console.csrf()  # the login page's
    answer = console.login(*OWNER)
    assert answer.status_code == 303
    assert CSRF_COOKIE not in console.client.cookies  # deleted: the next page sets a new one
    page = console.page("/admin")
    assert "Your session has ended" not in page.text  # nothing carried over the login
    assert console.client.cookies[CSRF_COOKIE] != token_before


def test_a_session_ends_after_the_idle_time_without_a_request(console: Console) -> None:
    console.as_staff()  # idle time: 30 minutes
    for _ in range(3):
        console.clock.advance(ms=29 * MINUTE_MS)
        assert signed_in(console)  # each request keeps it alive
    console.clock.advance(ms=31 * MINUTE_MS)
    assert not signed_in(console)
    login_page = console.client.get("/admin/login")
    assert "Your session has ended. Please log in again." in login_page.text


def test_live_updates_do_not_keep_a_session_alive(console: Console) -> None:
    console.as_staff()
    console.clock.advance(ms=20 * MINUTE_MS)
    live = console.client.get("/admin/dashboard/live", headers={"accept": "application/json"})
    assert live.status_code == 200
    assert "Waiting for payment" in live.json()["html"]
    console.clock.advance(ms=11 * MINUTE_MS)
    assert not signed_in(console)
    refused = console.client.get("/admin/dashboard/live", headers={"accept": "application/json"})
    assert refused.status_code == 401


def test_logging_out_ends_the_session(console: Console) -> None:
    console.as_staff()
    answer = console.post("/admin/logout", script=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login"
    assert not signed_in(console)


def test_a_disabled_account_is_signed_out_at_its_next_request(console: Console) -> None:
    console.as_staff()
    set_disabled(console.app.database, "sam", disabled=True, clock=console.clock, actor="cli")
    assert not signed_in(console)
    refused = console.login(*STAFF)
    assert refused.status_code == 401
    assert "This account is disabled" in refused.text


def test_a_new_password_ends_the_accounts_sessions(console: Console) -> None:
    console.as_staff()
    console.clock.advance(ms=1000)
    set_password(
        console.app.database, "sam", password="a-new-password-2", clock=console.clock, actor="cli"
    )
    assert not signed_in(console)
    assert console.login("sam", "a-new-password-2").status_code == 303


# Throttling -------------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_user_name_for_a_while(console: Console) -> None:
    for _ in range(5):
        answer = console.login("sam", "not-the-password")
        assert answer.status_code == 401
        assert "Wrong user name or password." in answer.text
    locked = console.login(*STAFF)  # even the right password
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60
    assert console.login(*OWNER).status_code == 303  # another name from this address: fine
    console.client.cookies.clear()
    console.clock.advance(ms=15 * MINUTE_MS)
    assert console.login(*STAFF).status_code == 303


def test_a_successful_login_forgets_the_names_failures(console: Console) -> None:
    for _ in range(4):
        console.login("sam", "not-the-password")
    assert console.login(*STAFF).status_code == 303
    console.client.cookies.clear()
    for _ in range(4):
        assert console.login("sam", "not-the-password").status_code == 401
    assert console.login(*STAFF).status_code == 303


def test_twenty_failures_from_one_address_lock_every_name_from_it(console: Console) -> None:
    for number in range(20):
        assert console.login(f"guess{number}", "not-the-password").status_code == 401
    assert console.login(*OWNER).status_code == 429
