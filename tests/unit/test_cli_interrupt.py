"""Ctrl-C while `khqrpay` is still starting ends quietly: exit 130, no traceback."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from khqrpay.cli import entry
from khqrpay.cli.main import LazyCommand, app


class _Interrupted(ModuleType):
    """A command line whose loading is interrupted (Ctrl-C during its imports)."""

    def __getattr__(self, name: str) -> object:
        raise KeyboardInterrupt


def test_ctrl_c_while_the_command_line_loads_exits_130_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "khqrpay.cli.main", _Interrupted("khqrpay.cli.main"))
    with pytest.raises(SystemExit) as exited:
        entry()
    assert exited.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_ctrl_c_while_a_command_loads_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def interrupted(self: LazyCommand) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(LazyCommand, "load", interrupted)
    with pytest.raises(SystemExit) as exited:
        app(["demo"])
    # typer turns the KeyboardInterrupt into the shell's code for SIGINT, quietly.
    assert exited.value.code == 130
    assert "Traceback" not in capfd.readouterr().err
