"""Bad input through the installed `khqrpay` command, as a person or a script types it, on SQLite
and PostgreSQL: each is refused with exit code 2 and one `error: ...` line on stderr, never a
traceback, and nothing is written. Real processes: argv bytes, stdin and the environment go
through the operating system, as they do for users."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest
from khqrpay.services.checkout import create_order
from khqrpay.services.products import add_product
from khqrpay.settings import Settings

KHQRPAY = Path(sys.executable).with_name("khqrpay")
TOO_BIG_ID = "99999999999999999999"
# A secret-looking value in a setting: no error may print it.
SECRET = "hunter2-secret"
QR = (
    "00020101021229190015john_smith@devb52045999530384054041.505802KH5910John Smith"
    "6010Phnom Penh99340013179565120000001134102444800000630444CD"
)


@dataclass(frozen=True)
class BadInput:
    args: tuple[str | bytes, ...]
    # Words the error line must hold.
    words: str
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""


def _product(
    *, sku: str = "NEW-1", name: str | bytes = "New", price: str = "1.50"
) -> tuple[str | bytes, ...]:
    return ("products", "add", "--sku", sku, "--name", name, "--price", price, *NEW_PRODUCT)


NEW_PRODUCT = ("--currency", "USD", "--stock", "5")

# Run against each database: commands that read the settings and open the database.
WITH_A_DATABASE = {
    "order id beyond the column: show": BadInput(("orders", "show", TOO_BIG_ID), "order_id"),
    "order id beyond the column: verify": BadInput(("orders", "verify", TOO_BIG_ID), "order_id"),
    "order id beyond the column: check": BadInput(("orders", "check", TOO_BIG_ID), "order_id"),
    "order id beyond the column: mark-paid": BadInput(
        ("orders", "mark-paid", TOO_BIG_ID, "--reason", "r"), "order_id"
    ),
    "a 40-digit price": BadInput(_product(price="1" * 40), "more than a KHQR code can ask for"),
    "a price of 0": BadInput(_product(price="0.00"), "a price must be more than 0"),
    "a product name that is not UTF-8": BadInput(
        _product(name=b"Caf\xe9"), "the value of --name is not UTF-8 text"
    ),
    "a product name with a control character": BadInput(
        _product(name="Iced\x01tea"), "control characters"
    ),
    "a SKU with a line break": BadInput(_product(sku="TEA-2\n"), "SKU"),
    "a reason that is not UTF-8": BadInput(
        ("orders", "mark-paid", "1", "--reason", b"re\xe7u"), "the value of --reason"
    ),
    "a reason with a control character": BadInput(
        ("orders", "mark-paid", "1", "--reason", "seen\x1b[2J"), "control characters"
    ),
    "a staff name the audit trail refuses": BadInput(
        ("orders", "mark-paid", "1", "--reason", "r", "--staff", "!!bad!!"), "a staff name is"
    ),
    "a staff name longer than the actor column": BadInput(
        ("orders", "verify", "1", "--staff", "d" * 57), "a staff name is 1 to 56"
    ),
    "a quantity in another script's digits": BadInput(
        ("orders", "create", "--line", "TEA-1:²"), "SKU:QTY"
    ),
    "a quantity of 5000 digits": BadInput(
        ("orders", "create", "--line", "TEA-1:" + "9" * 5000), "between 1 and"
    ),
    "a phone in another script's digits": BadInput(
        ("orders", "create", "--line", "TEA-1:1", "--phone", "0١٢٣٤٥٦٧٨"), "Cambodian"
    ),
    "a Bakong token with a space: orders verify": BadInput(
        ("orders", "verify", "1"), "KHQRPAY_BAKONG_TOKEN", {"KHQRPAY_BAKONG_TOKEN": SECRET + " x"}
    ),
    "a Bakong token with a space: worker": BadInput(
        ("worker", "--once"), "KHQRPAY_BAKONG_TOKEN", {"KHQRPAY_BAKONG_TOKEN": SECRET + " x"}
    ),
    "a setting that is not a number": BadInput(
        ("orders", "list"), "KHQRPAY_BAKONG_TIMEOUT_S", {"KHQRPAY_BAKONG_TIMEOUT_S": SECRET}
    ),
}

# Run once: refused before any setting is read or any database opened.
WITHOUT_A_DATABASE = {
    "an unknown log level": BadInput(("worker", "--once", "--log-level", "LOUD"), "--log-level"),
    "a QR argument starting with '-'": BadInput(("qr", "verify", "-STRING"), "after '--'"),
    "a QR on stdin that is not UTF-8": BadInput(
        ("qr", "decode", "-"), "stdin is not UTF-8", stdin=b"000201\xff"
    ),
    "a QR argument that is not UTF-8": BadInput(("qr", "decode", b"\xff"), "not UTF-8 text"),
    "a database URL that is not one": BadInput(
        ("orders", "list"),
        "KHQRPAY_DATABASE_URL",
        {"KHQRPAY_DATABASE_URL": f"postgresql+psycopg://shop:{SECRET}@db:port/shop"},
    ),
    "a simulator token with a space": BadInput(
        ("simulator", "--port", "8799"), "--token", {"KHQRPAY_BAKONG_TOKEN": SECRET + " x"}
    ),
    "an image into a missing folder": BadInput(
        ("qr", "image", QR, "-o", "/nonexistent/qr.png"), "No such file or directory"
    ),
}


def _shop(database_url: str, settings: Settings) -> Database:
    """A product TEA-1 and a PENDING order 1, through the real services."""
    database = Database.from_url(database_url)
    clock = FakeClock()
    add_product(
        database,
        sku="TEA-1",
        name="Tea",
        price=Money.parse("1.50", Currency.USD),
        stock=5,
        now_ms=clock.now_ms(),
    )
    created = create_order(
        database, lines=[LineRequest("TEA-1", 1)], phone=None, settings=settings, clock=clock
    )
    assert created.order.id == 1
    return database


def _everything(database: Database) -> dict[str, list[tuple[object, ...]]]:
    with database.read() as uow:
        return {
            table.name: [
                tuple(row)
                for row in uow.connection.execute(
                    sa.select(table).order_by(*table.primary_key.columns)
                )
            ]
            for table in t.metadata.sorted_tables
        }


def _run(case: BadInput, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [KHQRPAY, *case.args],
        input=case.stdin,
        capture_output=True,
        env=env | case.env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _problem(case: BadInput, result: subprocess.CompletedProcess[bytes]) -> str | None:
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    lines = stderr.splitlines()
    if b"Traceback" in result.stderr:
        return f"traceback: {lines[-1] if lines else ''}"
    if result.returncode != 2:
        return f"exit code {result.returncode}: {stderr!r}"
    if result.stdout:
        return f"stdout: {result.stdout[:200]!r}"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"not one error line: {stderr!r}"
    if case.words not in lines[0]:
        return f"{case.words!r} not in {lines[0]!r}"
    if SECRET in stderr:
        return "the secret was printed"
    return None


def _problems(inputs: dict[str, BadInput], env: dict[str, str], cwd: Path) -> dict[str, str]:
    """What went wrong with each bad input, run as a real `khqrpay` process."""
    cases = list(inputs.items())
    # The command's start-up (imports) is most of each run: four at a time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda item: _run(item[1], env, cwd), cases))
    return {
        name: problem
        for (name, case), result in zip(cases, results, strict=True)
        if (problem := _problem(case, result)) is not None
    }


def _environment(database_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KHQRPAY_")}
    return env | {"KHQRPAY_DATABASE_URL": database_url, "KHQRPAY_BAKONG_URL": "http://127.0.0.1:9"}


def test_bad_input_is_one_error_line_and_exit_2_and_writes_nothing(
    database_url: str, settings: Settings, tmp_path: Path
) -> None:
    database = _shop(database_url, settings)
    before = _everything(database)
    assert _problems(WITH_A_DATABASE, _environment(database_url), tmp_path) == {}
    assert _everything(database) == before
    database.dispose()


def test_bad_arguments_are_one_error_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-created.sqlite3'}"
    assert _problems(WITHOUT_A_DATABASE, _environment(url), tmp_path) == {}
    assert not (tmp_path / "never-created.sqlite3").exists()


def test_a_qr_piped_on_stdin_is_read_with_dash(tmp_path: Path) -> None:
    result = subprocess.run(
        [KHQRPAY, "qr", "verify", "-", "--now-ms", "1795651200000"],
        input=(QR + "\n").encode(),
        capture_output=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"valid\n", b"")
