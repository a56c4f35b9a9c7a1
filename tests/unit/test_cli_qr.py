"""`khqrpay qr ...`: the scripted contract (flags, JSON keys, exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from khqrpay.cli.main import app

NOW_MS = 1_795_651_200_000
EXPIRES_MS = 4_102_444_800_000
runner = CliRunner()

# The SDK's own string for these arguments (vector ind-dyn-usd-1.5).
SDK_USD_1_50 = (
    "00020101021229190015john_smith@devb52045999530384054041.505802KH5910John Smith"
    "6010Phnom Penh99340013179565120000001134102444800000630444CD"
)


def run(*arguments: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["qr", *arguments], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def encode_usd(*extra: str) -> list[str]:
    return [
        "encode",
        "--account",
        "john_smith@devb",
        "--name",
        "John Smith",
        "--currency",
        "USD",
        "--amount",
        "1.5",
        "--expires-at-ms",
        str(EXPIRES_MS),
        "--now-ms",
        str(NOW_MS),
        *extra,
    ]


def test_encode_prints_the_sdks_string() -> None:
    assert run(*encode_usd()) == (0, SDK_USD_1_50 + "\n", "")


def test_encode_takes_every_optional_field() -> None:
    code, qr, _ = run(
        "encode",
        "--account",
        "coffee_klaing@devb",
        "--name",
        "Coffee Klaing",
        "--city",
        "Siem Reap",
        "--merchant-id",
        "CK0001",
        "--acquiring-bank",
        "DEVBKHPPXXX",
        "--mcc",
        "5812",
        "--amount",
        "4000",
        "--expires-at-ms",
        str(EXPIRES_MS),
        "--now-ms",
        str(NOW_MS),
        "--bill-number",
        "INV-7",
        "--mobile-number",
        "85512345678",
        "--store-label",
        "Riverside",
        "--terminal-label",
        "POS-1",
        "--purpose",
        "Coffee",
        "--language-preference",
        "km",
        "--name-alt",
        "កាហ្វេ ក្លាំង",
        "--city-alt",
        "សៀមរាប",
        "--upi-merchant-account",
        "6200000000000000",
    )
    assert code == 0
    code, output, _ = run("decode", qr.strip())
    decoded = json.loads(output)
    assert decoded["merchant_id"] == "CK0001"
    assert decoded["amount"] == "4000"
    assert decoded["currency"] == "KHR"
    assert decoded["terminal_label"] == "POS-1"
    assert decoded["merchant_name_alt"] == "កាហ្វេ ក្លាំង"
    assert decoded["upi_merchant_account"] == "6200000000000000"


def test_encode_without_a_time_uses_the_clock() -> None:
    code, qr, _ = run("encode", "--account", "a@b", "--name", "Static Shop")
    assert code == 0
    assert run("verify", qr.strip())[:2] == (0, "valid\n")


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (encode_usd("--account-information", "x" * 33), "account_information"),
        (["encode", "--account", "nobank", "--name", "N"], "name@bank"),
        (["encode", "--account", "a@b", "--name", "N", "--amount", "1.5"], "rounding"),
        (["encode", "--account", "a@b", "--name", "N", "--amount", "abc"], "plain"),
        (["encode", "--account", "a@b", "--name", "N", "--currency", "EUR"], "currency"),
        (["encode", "--account", "a@b", "--name", "N", "--amount", "100"], "expiration"),
    ],
)
def test_invalid_input_prints_the_reason_on_stderr_and_exits_2(
    arguments: list[str], reason: str
) -> None:
    code, output, error = run(*arguments)
    assert (code, output) == (2, "")
    assert error.startswith("error: ")
    assert reason in error


def test_decode_prints_the_contract_keys() -> None:
    code, output, _ = run("decode", SDK_USD_1_50)
    assert code == 0
    decoded = json.loads(output)
    expected = {
        "md5": "afdfe0802352c3cbdfba0ddcb8515a1e",
        "crc": "44CD",
        "bakong_account_id": "john_smith@devb",
        "merchant_id": None,
        "acquiring_bank": None,
        "merchant_name": "John Smith",
        "merchant_city": "Phnom Penh",
        "currency": "USD",
        "amount": "1.50",
        "bill_number": None,
        "mobile_number": None,
        "store_label": None,
        "terminal_label": None,
        "creation_ms": NOW_MS,
        "expiration_ms": EXPIRES_MS,
        "dynamic": True,
    }
    assert {key: decoded[key] for key in expected} == expected


def test_decode_of_a_broken_string_exits_2_with_the_reason() -> None:
    code, output, error = run("decode", "hello world 6304ABCD")
    assert (code, output) == (2, "")
    assert "not 2 digits" in error


def test_verify_prints_valid_or_the_reason() -> None:
    assert run("verify", SDK_USD_1_50, "--now-ms", str(NOW_MS)) == (0, "valid\n", "")
    code, output, _ = run("verify", SDK_USD_1_50, "--now-ms", str(EXPIRES_MS + 1))
    assert code == 1
    assert output.startswith("tag 99/01: this dynamic KHQR expired")
    code, output, _ = run("verify", SDK_USD_1_50[:-4] + "0000", "--now-ms", str(NOW_MS))
    assert code == 1
    assert "CRC" in output


@pytest.mark.parametrize(("name", "card"), [("code.svg", False), ("card.svg", True)])
def test_image_writes_svg(tmp_path: Path, name: str, card: bool) -> None:
    target = tmp_path / name
    arguments = ["image", SDK_USD_1_50, "-o", str(target)]
    code, _, _ = run(*arguments, *(["--card"] if card else []))
    assert code == 0
    assert target.read_bytes().startswith(b"<?xml")
    assert (b"KHQR</text>" in target.read_bytes()) is card


# The bare code: 49 modules (version 8) and 4 of quiet zone each side, 8 pixels each.
@pytest.mark.parametrize(("name", "card", "size"), [("c.png", False, 57 * 8), ("k.png", True, 640)])
def test_image_writes_png(tmp_path: Path, name: str, card: bool, size: int) -> None:
    target = tmp_path / name
    code, _, _ = run("image", SDK_USD_1_50, "-o", str(target), *(["--card"] if card else []))
    assert code == 0
    with Image.open(target) as picture:
        assert picture.width == size


def test_image_refuses_other_formats_and_broken_strings(tmp_path: Path) -> None:
    code, _, error = run("image", SDK_USD_1_50, "-o", str(tmp_path / "x.gif"))
    assert code == 2
    assert ".svg or .png" in error
    code, _, error = run("image", "nonsense", "-o", str(tmp_path / "x.png"))
    assert code == 2
    assert not (tmp_path / "x.png").exists()


def test_verify_and_decode_accept_an_aba_merchant_qr_with_a_reference_label() -> None:
    bank_qrs = Path(__file__).parent.parent / "data" / "khqr-bank-qrs.jsonl"
    records = [json.loads(line) for line in bank_qrs.read_text(encoding="utf-8").splitlines()]
    aba = next(r for r in records if r["id"] == "aba-merchant-dynamic-usd-62-05-reference-label")
    assert run("verify", aba["qr"], "--now-ms", str(aba["verify_at_ms"])) == (0, "valid\n", "")
    code, output, _ = run("decode", aba["qr"])
    assert code == 0
    assert json.loads(output)["unknown_tags"]["62/05"] == "0126094"


def test_decode_and_verify_read_the_qr_from_stdin_with_a_dash() -> None:
    piped = f"{SDK_USD_1_50}\n".encode()  # as `echo` writes it
    code, output, error = run("decode", "-", stdin=piped)
    assert (code, error) == (0, "")
    assert json.loads(output)["md5"] == "afdfe0802352c3cbdfba0ddcb8515a1e"
    assert run("verify", "-", "--now-ms", str(NOW_MS), stdin=piped) == (0, "valid\n", "")


def test_image_reads_the_qr_from_stdin(tmp_path: Path) -> None:
    target = tmp_path / "piped.png"
    code, _, _ = run("image", "-", "-o", str(target), stdin=SDK_USD_1_50.encode())
    assert code == 0
    assert Image.open(target).size[0] > 0


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [(b"", "nothing on stdin"), (b"\xff\xfe", "stdin is not UTF-8 text"), (b"0" * 70_000, "bytes")],
)
def test_stdin_that_holds_no_qr_text_is_refused_in_one_line(stdin: bytes, reason: str) -> None:
    code, output, error = run("decode", "-", stdin=stdin)
    assert (code, output) == (2, "")
    assert error.startswith("error: ")
    assert reason in error
    assert error.count("\n") == 1


def test_an_argument_starting_with_a_dash_is_one_error_line_with_the_way_out() -> None:
    code, output, error = run("verify", "-STRING")
    assert (code, output) == (2, "")
    assert error == (
        "error: No such option: -S (an argument that starts with '-' goes after '--'); "
        "see 'khqrpay qr verify --help'\n"
    )
    assert run("verify", "--", "-STRING")[0] == 1  # verified, and not valid
