"""What a `khqrpay` command line imports, run as a fresh process: the start-up tests assert that
a command does not load what it does not run on (a timing test would be flaky on a shared
machine; a module list cannot silently regress)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Runs the command line as the `khqrpay` script does, then reports on stderr every module
# imported and every view of `services.schemas` whose pydantic schema was built.
_SCRIPT = """
import sys
from khqrpay.cli import entry
sys.argv = ["khqrpay", *sys.argv[1:]]
code = 0
try:
    entry()
except SystemExit as exit:
    code = exit.code
schemas = sys.modules.get("khqrpay.services.schemas")
built = [
    name
    for name, view in vars(schemas).items()
    if isinstance(view, type) and issubclass(view, schemas.Schema) and view.__pydantic_complete__
] if schemas else []
sys.stderr.write("\\nimported: " + " ".join(sorted(sys.modules)))
sys.stderr.write("\\nbuilt: " + " ".join(sorted(built)) + "\\n")
sys.exit(code)
"""


@dataclass(frozen=True)
class Started:
    stdout: str
    imported: frozenset[str]
    built: frozenset[str]  # the views whose schema was built

    def loaded(self, modules: Iterable[str]) -> list[str]:
        """Which of `modules` (a package counts with any of its modules) were imported."""
        return [
            module
            for module in modules
            if any(name == module or name.startswith(f"{module}.") for name in self.imported)
        ]


def start(*arguments: str, env: Mapping[str, str] | None = None) -> Started:
    """Run `khqrpay ARGUMENTS` in a fresh interpreter; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *arguments],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = result.stderr.rsplit("\nimported: ", 1)[1]
    imported, built = report.split("\nbuilt: ")
    return Started(result.stdout, frozenset(imported.split()), frozenset(built.split()))
