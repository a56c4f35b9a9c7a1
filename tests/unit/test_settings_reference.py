"""The configuration reference (docs/configuration.md) is generated from the settings and kept
current: every variable, its type, default, secrecy and description."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from khqrpay.settings import (
    REFERENCE_COMMAND,
    Settings,
    configuration_reference,
    environment_variable,
)

REFERENCE = Path(__file__).parents[2] / "docs" / "configuration.md"


def _row(text: str, variable: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| `{variable}`")]
    assert len(rows) == 1, f"{variable} has {len(rows)} rows in the reference"
    return rows[0]


def test_the_checked_in_reference_is_what_the_settings_generate() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == configuration_reference(), (
        f"docs/configuration.md is out of date: run `{REFERENCE_COMMAND}`"
    )


def test_the_module_command_prints_the_reference() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "khqrpay.settings"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed == configuration_reference()


def test_every_setting_is_described_once_with_its_variable_and_default() -> None:
    text = configuration_reference()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        row = _row(text, environment_variable(name))
        assert field.description.replace("|", "\\|") in row
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 4, row
        assert all(cells), row


def test_secrets_and_only_secrets_are_marked_secret() -> None:
    text = configuration_reference()
    for name, field in Settings.model_fields.items():
        secret = field.annotation is SecretStr
        assert ("(secret)" in _row(text, environment_variable(name)).split(" | ")[0]) is secret


def test_defaults_are_shown_as_the_settings_apply_them() -> None:
    text = configuration_reference()
    assert "| `15` |" in _row(text, "KHQRPAY_BAKONG_TIMEOUT_S")
    assert "number (> 0, ≤ 60)" in _row(text, "KHQRPAY_BAKONG_TIMEOUT_S")
    assert "| `2592000` |" in _row(text, "KHQRPAY_PAYMENT_WINDOW_S")
    assert "| `true` |" in _row(text, "KHQRPAY_WEB_SECURE_COOKIES")
    assert "| empty |" in _row(text, "KHQRPAY_BAKONG_TOKEN")
    assert "text, optional | unset |" in _row(text, "KHQRPAY_MERCHANT_ID")
    assert "<working directory>/data/khqrpay.sqlite3" in _row(text, "KHQRPAY_DATABASE_URL")
