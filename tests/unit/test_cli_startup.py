"""The command line starts fast: each command imports what it runs on when it runs."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from khqrpay.cli import common
from khqrpay.cli.main import LAZY_COMMANDS, app

# What only the web stack, the simulator, the demo, the worker, a Bakong call or the database need.
HEAVY_MODULES = (
    "fastapi",
    "uvicorn",
    "khqrpay.simulator",
    "khqrpay.demo",
    "httpx",
    "sqlalchemy",
    "alembic",
    "pydantic_settings",
    "khqrpay.services",
)

IMPORTED_AFTER_HELP = """
import sys
from khqrpay.cli.main import app
sys.argv = ["khqrpay", "--help"]
try:
    app()
except SystemExit:
    pass
sys.stderr.write("\\nimported: " + " ".join(sorted(sys.modules)) + "\\n")
"""


def test_help_imports_neither_the_web_stack_nor_the_simulator_nor_the_demo() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED_AFTER_HELP],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "Commands" in result.stdout
    imported = set(result.stderr.rsplit("imported: ", 1)[1].split())
    assert "khqrpay.cli.main" in imported
    loaded = [m for m in HEAVY_MODULES if any(n == m or n.startswith(f"{m}.") for n in imported)]
    assert loaded == []


@pytest.mark.parametrize("name", list(LAZY_COMMANDS))
def test_each_command_is_listed_with_its_own_help(name: str) -> None:
    lazy = LAZY_COMMANDS[name]
    loaded = lazy.load()
    assert loaded.help is not None
    assert lazy.short_help == " ".join(loaded.help.split("\n\n")[0].split())


def test_a_lazily_loaded_command_validates_its_options() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--acceleration" in result.output
    refused = CliRunner().invoke(app, ["demo", "--orders", "2"])
    assert refused.exit_code == 2


def test_every_refused_error_class_named_by_the_cli_exists() -> None:
    for module, name in (*common._REFUSED, *common._DRIVER_REFUSED):
        refused = getattr(importlib.import_module(module), name)
        assert issubclass(refused, Exception), (module, name)
