"""How fast `khqrpay` commands start (issue 9, section 4: `--help` and `orders show` under 0.6 s).

Runs each command several times as a fresh process against a migrated SQLite database holding one
order, and prints the median wall time and the median CPU time (user + system) of the process,
beside a bare `python -c pass` for scale. CPU time is the steadier figure on a loaded machine.

`--compiled` caches the bytecode (in a temporary folder, filled by a first run), as an installed
khqrpay runs (pip compiles it); without it, the environment decides: with
PYTHONDONTWRITEBYTECODE=1, as on the build machine, every run compiles khqrpay's sources again.

`--baseline PATH` is another tree's `khqrpay` script (e.g. `/work/main/.venv/bin/khqrpay`): each
command then runs from both, one after the other in every round, so that both see the same load,
and the ratio is printed.

    .venv/bin/python bench/startup_bench.py [--runs 9] [--compiled] \
        [--baseline OTHER/.venv/bin/khqrpay]
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


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--compiled", action="store_true", help="cache the bytecode")
    parser.add_argument("--baseline", help="another tree's khqrpay script, run side by side")
    options = parser.parse_args()
    runs, baseline = options.runs, options.baseline
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "KHQRPAY_DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
            "KHQRPAY_BAKONG_ACCOUNT_ID": "kampot_corner@aclb",
            "KHQRPAY_MERCHANT_NAME": "Kampot Corner Cafe",
        }
        if options.compiled:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = f"{folder}/bytecode"
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
        trees = {"": KHQRPAY} if baseline is None else {"this": KHQRPAY, "baseline": baseline}
        print(f"{'command':<24} {'tree':<9} {'wall median':>12} {'cpu median':>11}   ({runs} runs)")
        for name, command in COMMANDS.items():
            # `python -c pass` is the same whatever the tree.
            ran = (
                {tree: [path, *command[1:]] for tree, path in trees.items()}
                if command[0] == KHQRPAY
                else {"": command}
            )
            for each in ran.values():
                timed(each, env)  # warm the file cache
            samples: dict[str, list[tuple[float, float]]] = {tree: [] for tree in ran}
            for _ in range(runs):
                for tree, each in ran.items():
                    samples[tree].append(timed(each, env))
            for tree in ran:
                wall, cpu = medians(samples[tree])
                print(f"{name:<24} {tree:<9} {wall:>11.3f}s {cpu:>10.3f}s")
            if len(ran) == 2:
                (wall, cpu), (base_wall, base_cpu) = (
                    medians(samples["this"]),
                    medians(samples["baseline"]),
                )
                print(f"{'':<24} {'ratio':<9} {wall / base_wall:>11.2f}x {cpu / base_cpu:>10.2f}x")
        bytecode = "cached" if options.compiled else "as the environment says"
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; bytecode {bytecode}")


if __name__ == "__main__":
    main()
