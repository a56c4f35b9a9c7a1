"""How fast `khqrpay` commands start (issue 9, section 4: `--help` and `orders show` under 0.6 s).

Runs each command several times as a fresh process against a migrated SQLite database holding one
order, and prints the median wall time and the median CPU time (user + system) of the process,
beside a bare `python -c pass` for scale. CPU time is the steadier figure on a loaded machine.

    .venv/bin/python bench/startup_bench.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KHQRPAY = str(Path(sys.executable).with_name("khqrpay"))
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "khqrpay --help": [KHQRPAY, "--help"],
    "khqrpay orders show 1": [KHQRPAY, "orders", "show", "1"],
    "khqrpay orders list": [KHQRPAY, "orders", "list"],
}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "KHQRPAY_DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
            "KHQRPAY_BAKONG_ACCOUNT_ID": "kampot_corner@aclb",
            "KHQRPAY_MERCHANT_NAME": "Kampot Corner Cafe",
        }
        setup = [
            ["db", "upgrade"],
            [
                *["products", "add", "--sku", "COFFEE", "--name", "Iced coffee", "--price", "8000"],
                *["--currency", "KHR", "--stock", "5"],
            ],
            ["orders", "create", "--line", "COFFEE:1"],
        ]
        for arguments in setup:
            subprocess.run([KHQRPAY, *arguments], env=env, capture_output=True, check=True)
        print(f"{'command':<24} {'wall median':>12} {'cpu median':>11}   ({runs} runs each)")
        for name, command in COMMANDS.items():
            timed(command, env)  # warm the file cache
            samples = [timed(command, env) for _ in range(runs)]
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            print(f"{name:<24} {wall:>11.3f}s {cpu:>10.3f}s")
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
