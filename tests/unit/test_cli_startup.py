"""The command line starts fast: each command imports what it runs on when it runs."""

from __future__ import annotations

import inspect
import subprocess
import sys

from typer.testing import CliRunner

from khqrpay.cli import demo
from khqrpay.cli.main import LAZY_COMMANDS, app

# What only the web stack, the simulator, the demo, the worker or a Bakong call need.
HEAVY_MODULES = ("fastapi", "uvicorn", "khqrpay.simulator", "khqrpay.demo", "httpx")

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


def test_the_demo_is_listed_with_its_own_help_and_loaded_only_to_run() -> None:
    lazy = LAZY_COMMANDS["demo"]
    assert lazy.short_help == inspect.getdoc(demo.run)
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--acceleration" in result.output
    refused = CliRunner().invoke(app, ["demo", "--orders", "2"])
    assert refused.exit_code == 2
