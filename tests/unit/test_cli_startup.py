"""The command line starts fast: each command imports what it runs on when it runs."""

from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

from helpers.imports import start
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


def test_help_imports_neither_the_web_stack_nor_the_simulator_nor_the_demo() -> None:
    started = start("--help")
    assert "Commands" in started.stdout
    assert "khqrpay.cli.main" in started.imported
    assert started.loaded(HEAVY_MODULES) == []


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
