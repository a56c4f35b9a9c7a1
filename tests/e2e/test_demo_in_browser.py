"""`khqrpay demo` as a person uses it: started as a subprocess on free ports, its printed links
followed in a browser (buy in the shop, pay on the banking-app page, watch the order complete in
the staff console), then Ctrl-C; and what a second run and `--reset` find in the data folder."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

KHQRPAY = Path(sys.executable).with_name("khqrpay")
SCREENSHOTS = Path(__file__).parent / "screenshots"
STARTUP_S = 30.0
LINKS = {
    "shop": re.compile(r"^Shop: (http://\S+)$", re.MULTILINE),
    "console": re.compile(
        r"^Staff console: (http://\S+) \(login (\S+), password (\S+)\)$", re.MULTILINE
    ),
    "banking_app": re.compile(r"^Banking app: (http://\S+)$", re.MULTILINE),
}
# The intro's line per order: `  #3 22,000 ៛: pays after 6.6 h = 0.0 s from now`.
CUSTOMER_LINE = re.compile(r"^  #(\d+) ", re.MULTILINE)


@dataclass
class RunningDemo:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def read_lines(self) -> None:
        """Drain stdout (a thread), so the demo never blocks on a full pipe."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float = STARTUP_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = pattern.search(line)
                if found:
                    return found
            if self.process.poll() is not None and not any(map(pattern.search, self.lines)):
                break
            time.sleep(0.05)
        pytest.fail(f"no {pattern.pattern!r} in the demo's output:\n" + "\n".join(self.lines))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def demo_env() -> dict[str, str]:
    """The caller's environment without any KHQRPAY_ setting, so the run is the demo's own."""
    return {key: value for key, value in os.environ.items() if not key.startswith("KHQRPAY_")}


def demo_command(data_dir: Path, *options: str) -> list[str]:
    return [str(KHQRPAY), "demo", "--sim-port", "0", "--data-dir", str(data_dir), *options]


def start_demo(data_dir: Path, *options: str) -> RunningDemo:
    process = subprocess.Popen(
        demo_command(data_dir, *options),
        env=demo_env(),
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    demo = RunningDemo(process)
    threading.Thread(target=demo.read_lines, daemon=True).start()
    return demo


def run_briefly(data_dir: Path, *options: str) -> str:
    """A short plain run to its end; what it printed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        demo_command(data_dir, "--duration", "1", "--orders", "4", *options),
        env=demo_env(),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=STARTUP_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def link(pattern: re.Pattern[str], output: str) -> re.Match[str]:
    found = pattern.search(output)
    assert found is not None, output
    return found


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc: psutil is not a dependency)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if re.search(rf"^PPid:\s+{pid}$", status, re.MULTILINE):
                found.add(int(entry.name))
    return found


def is_listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((parts.hostname, parts.port)) == 0


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningDemo]:
    running = start_demo(
        tmp_path / "data", "--port", "0", "--orders", "4", "--acceleration", "1000000"
    )
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait(10)


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_person_buys_in_the_shop_pays_in_the_banking_app_and_sees_it_in_the_console(
    browser: Browser, demo: RunningDemo
) -> None:
    shop = demo.wait_for(LINKS["shop"]).group(1)
    console, owner, password = demo.wait_for(LINKS["console"]).groups()
    banking_app = demo.wait_for(LINKS["banking_app"]).group(1)
    assert banking_app.endswith("/_sim/app")

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    page = phone.new_page()
    page.goto(shop)
    expect(page.locator("body")).to_contain_text("Iced coffee")
    expect(page.locator("body")).not_to_contain_text("កាហ្វេទឹកដោះគោទឹកកក")
    _shot(page, "demo-phone-shop")
    page.get_by_role("link", name="ខ្មែរ").click()
    expect(page.locator("html")).to_have_attribute("lang", "km")
    expect(page.locator("body")).to_contain_text("កាហ្វេទឹកដោះគោទឹកកក")
    expect(page.locator("body")).not_to_contain_text("Iced coffee")
    _shot(page, "demo-phone-shop-km")
    page.get_by_role("link", name="English").click()
    page.locator("form[data-add-to-cart]:has(input[value='AMOK-SET']) button").click()
    expect(page.locator("[data-in-cart='AMOK-SET']")).to_be_visible()
    page.get_by_role("link", name=re.compile("Cart")).click()
    page.get_by_role("button", name=re.compile("KHQR Payment")).click()
    expect(page.get_by_role("heading", name="Scan to pay")).to_be_visible()
    number = re.search(r"ORD-(\d+)", page.locator(".eyebrow").first.inner_text())
    assert number is not None
    order_id = number.group(1)

    # "Open in banking app": the simulator's deep link opens its banking-app page on the code.
    page.get_by_role("link", name="Open in banking app").click()
    expect(page).to_have_url(re.compile(re.escape(banking_app) + r"\?qr=000201"))
    expect(page.locator("#confirm")).to_contain_text("4.50")
    page.get_by_role("button", name="Pay").click()
    expect(page.locator("#receipt")).to_be_visible()
    phone.close()

    desktop = browser.new_context(viewport={"width": 1280, "height": 800})
    page = desktop.new_page()
    page.goto(console)
    page.get_by_label("User name").fill(owner)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{console}/orders/{order_id}")
    expect(page.locator(".order-head .badge").first).to_have_text("Completed", timeout=20_000)
    page.goto(f"{console}/orders")
    expect(page.get_by_role("link", name=f"#{order_id}", exact=True)).to_be_visible()
    _shot(page, "demo-desktop-console")
    page.goto(console)  # the dashboard's live stream stays open through Ctrl-C

    # The simulated customers bought through the API: their orders are there too.
    assert len(CUSTOMER_LINE.findall(demo.output)) == 4

    kids = children(demo.process.pid)
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(15) in (0, 130)
    desktop.close()
    assert demo.process.stderr is not None
    assert demo.process.stderr.read() == ""  # no traceback, nothing over the dashboard
    assert not any(Path(f"/proc/{pid}").exists() for pid in kids)
    assert not Path(f"/proc/{demo.process.pid}").exists()
    for url in (shop, banking_app):
        assert not is_listening(url), url


def test_the_data_is_kept_between_runs_and_reset_starts_from_empty(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = run_briefly(data_dir, "--port", "0")
    first_password = link(LINKS["console"], first).group(3)
    assert [int(n) for n in CUSTOMER_LINE.findall(first)] == [1, 2, 3, 4]

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        second = run_briefly(data_dir, "--port", str(busy))
    assert f"Note: port {busy} is taken (another web server?): using a free port instead" in (
        second.splitlines()
    )
    assert f":{busy}/" not in link(LINKS["shop"], second).group(1)
    # Same database (the catalogue not seeded twice, or the run fails), same owner password.
    assert [int(n) for n in CUSTOMER_LINE.findall(second)] == [5, 6, 7, 8]
    assert link(LINKS["console"], second).group(3) == first_password

    third = run_briefly(data_dir, "--port", "0", "--reset")
    assert [int(n) for n in CUSTOMER_LINE.findall(third)] == [1, 2, 3, 4]
    assert link(LINKS["console"], third).group(3) != first_password
