"""Named mutations of the payment engine: each is a textual patch applied to a temporary copy of
the tree (never to the working tree), then the tests meant to catch it run there with `-x`. A
mutation the tests do not catch "survived": the guarantee it breaks is not guarded.

    .venv/bin/python bench/mutations.py                # every mutation, its listed tests
    .venv/bin/python bench/mutations.py NAME [NAME]    # some of them
    .venv/bin/python bench/mutations.py --full         # the whole suite (-x) for each instead
    .venv/bin/python bench/mutations.py --list

PostgreSQL is required (`KHQRPAY_REQUIRE_POSTGRES=1` is set for the runs: a skipped test must not
count as a kill). The copy is imported instead of the installed package (`PYTHONPATH`), which the
script checks before it starts. It first runs all the listed tests on the unmutated copy: they
must pass, or a "kill" would mean nothing. Exit status 1 if a mutation survived or no longer
applies (its text was not found exactly once: the code changed, update the mutation).
Not part of CI: it takes several minutes. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RACES_ON_POSTGRES = ("tests/integration/test_same_order_races.py", "-k", "postgresql")
RACES_ON_SQLITE = ("tests/integration/test_same_order_races.py", "-k", "sqlite")
COMPETITION = ("tests/integration/test_worker_competition.py",)
PARTIAL_ANSWERS = ("tests/integration/test_partial_answers.py",)
STATE_MACHINE = ("tests/integration/test_completion_stateful.py",)
COMPLETION = ("tests/integration/test_completion.py",)


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    path: str
    # (text, replacement) pairs; each text must occur exactly once in the file.
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


ORDER_LOCK = ("        if lock:\n            query = query.with_for_update()\n", "")

MUTATIONS = (
    Mutation(
        "order-lock-without-for-update",
        "the order lock reads the order without FOR UPDATE",
        "src/khqrpay/db/repositories/orders.py",
        (ORDER_LOCK,),
        RACES_ON_POSTGRES,
    ),
    Mutation(
        "transition-without-lock-or-status-guard",
        "no order lock, and the status update no longer requires the expected status",
        "src/khqrpay/db/repositories/orders.py",
        (
            ORDER_LOCK,
            (
                ".where(t.orders.c.id == order_id, t.orders.c.status == expected.value)",
                ".where(t.orders.c.id == order_id)",
            ),
        ),
        RACES_ON_POSTGRES,
    ),
    Mutation(
        "claim-without-skip-locked",
        "workers claim due QRs without FOR UPDATE SKIP LOCKED",
        "src/khqrpay/db/repositories/payments.py",
        (
            (
                "            .limit(limit)\n            .with_for_update(skip_locked=True)\n",
                "            .limit(limit)\n",
            ),
        ),
        COMPETITION,
    ),
    Mutation(
        "missing-md5-read-as-not-found",
        "an md5 missing from an md5-list answer is read as NOT_FOUND, not a bad answer",
        "src/khqrpay/services/bakong_answers.py",
        (
            (
                '    return BadResponse(f"the md5 list answer left out {md5[:8]}")',
                "    return NotFound()  # type: ignore[return-value]",
            ),
        ),
        PARTIAL_ANSWERS,
    ),
    Mutation(
        "expiry-ignores-pending-qrs",
        "expiry expires an order although another of its QRs is still pending",
        "src/khqrpay/services/expiry.py",
        (
            (
                "    if any(p.status is PaymentStatus.PENDING for p in "
                "uow.payments.for_order(order_id)):\n        return False\n",
                "",
            ),
        ),
        (*PARTIAL_ANSWERS, *STATE_MACHINE),
    ),
    Mutation(
        "cancel-reads-the-order-unlocked",
        "a staff cancel reads the order without locking it",
        "src/khqrpay/services/staff.py",
        (
            (
                "        order = uow.orders.lock(order_id)\n"
                "        target = staff_target(StaffAction.CANCEL",
                "        order = uow.orders.get(order_id)\n"
                "        target = staff_target(StaffAction.CANCEL",
            ),
        ),
        ("tests/integration/test_same_order_races.py", "-k", "postgresql and cancel"),
    ),
    Mutation(
        "sqlite-writes-begin-deferred",
        "SQLite write transactions start DEFERRED (the write lock taken late)",
        "src/khqrpay/db/engine.py",
        (('"BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE"', '"BEGIN DEFERRED"'),),
        RACES_ON_SQLITE,
    ),
    Mutation(
        "claim-ignores-live-leases",
        "a claim takes QRs whose lease has not ended",
        "src/khqrpay/db/repositories/payments.py",
        (
            (
                "                sa.or_(payments.lease_until_ms.is_(None), "
                "payments.lease_until_ms <= now_ms),\n",
                "",
            ),
        ),
        COMPETITION,
    ),
    Mutation(
        "record-check-ignores-the-lease",
        "a worker whose lease ran out still records its check and reschedules the QR",
        "src/khqrpay/db/repositories/payments.py",
        (("            conditions.append(payments.lease_owner == lease_owner)\n", ""),),
        COMPETITION,
    ),
    Mutation(
        "paid-qr-left-pending",
        "the completion function never marks the paid QR PAID",
        "src/khqrpay/services/completion.py",
        (
            (
                "            self.uow.payments.mark_paid(self.payment.id, now_ms=self.now_ms)",
                "            pass",
            ),
        ),
        STATE_MACHINE,
    ),
    Mutation(
        "stock-taken-without-enough-check",
        "stock is decremented without checking that enough is left",
        "src/khqrpay/db/repositories/products.py",
        (
            (
                ".where(t.products.c.id == product_id, t.products.c.stock >= quantity)",
                ".where(t.products.c.id == product_id)",
            ),
        ),
        COMPLETION,
    ),
    Mutation(
        "conflict-locks-own-order-first",
        "a conflict locks the order being paid before the other one, not in id order",
        "src/khqrpay/services/completion.py",
        (
            (
                "for locked_id in sorted(lock_ids)}",
                "for locked_id in sorted(lock_ids, key=lambda i: i != order_id)}",
            ),
        ),
        ("tests/integration/test_payment_conflict.py",),
    ),
    Mutation(
        "errors-count-as-not-paid",
        "a Bakong error other than a refused token moves the schedule on like a not-paid answer",
        "src/khqrpay/services/checking.py",
        (
            (
                "        if isinstance(answer, BakongError):\n"
                "            next_check_ms = self._back_off(target, answer)",
                "        if isinstance(answer, Unauthorized):\n"
                "            next_check_ms = self._back_off(target, answer)",
            ),
        ),
        (*PARTIAL_ANSWERS, "tests/integration/test_faults.py"),
    ),
    Mutation(
        "same-transfer-not-recognised",
        "a transfer already recorded for the order is decided as if it were new",
        "src/khqrpay/orders/model.py",
        (
            (
                "    if evidence.bakong_hash in facts.recorded_hashes:\n"
                "        if staff and facts.status is OrderStatus.NEEDS_REVIEW:",
                "    if False:\n        if staff and facts.status is OrderStatus.NEEDS_REVIEW:",
            ),
        ),
        ("tests/unit/test_order_model.py", *COMPLETION),
    ),
    Mutation(
        "payment-at-window-end-is-late",
        "a payment made exactly at the window end is read as after it",
        "src/khqrpay/orders/model.py",
        (
            (
                "if evidence.paid_ms > facts.window_end_ms:",
                "if evidence.paid_ms >= facts.window_end_ms:",
            ),
        ),
        ("tests/unit/test_order_model.py",),
    ),
    Mutation(
        "final-check-made-early",
        "checks after the window end may ride along early, the final one too",
        "src/khqrpay/orders/schedule.py",
        (("        if next_check_ms > window_end_ms:\n            return next_check_ms\n", ""),),
        ("tests/unit/test_schedule.py", "tests/unit/test_schedule_properties.py"),
    ),
    Mutation(
        "list-answer-missing-key-read-as-not-found",
        "the Bakong client reads a key missing from a list answer as NOT_FOUND",
        "src/khqrpay/bakong/envelope.py",
        (
            (
                'results[key] = BadResponse(f"no item for {key_field} {key[:8]}", '
                "endpoint=endpoint)",
                "results[key] = NotFound()",
            ),
        ),
        ("tests/unit/test_bakong_envelope.py",),
    ),
)


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    result: str  # killed | survived | not applicable | error
    seconds: float
    detail: str


def _copy_tree(destination: Path) -> None:
    """The tracked and untracked (not ignored) files of the working tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy / "src"), env.get("PYTHONPATH")]))
    env["KHQRPAY_REQUIRE_POSTGRES"] = "1"
    return env


def _check_the_copy_is_imported(copy: Path, env: dict[str, str]) -> None:
    imported = subprocess.run(
        [sys.executable, "-c", "import khqrpay; print(khqrpay.__file__)"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(imported).is_relative_to(copy):
        raise SystemExit(f"the copy is not the package imported (got {imported})")


def _pytest(copy: Path, env: dict[str, str], tests: tuple[str, ...]) -> tuple[int, str]:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    run = subprocess.run(command, check=False, cwd=copy, env=env, capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].removeprefix("FAILED ").removeprefix("ERROR ")
    timeout = re.search(r"Timeout.*", output)
    return timeout.group(0) if timeout else "see pytest output"


def _apply(copy: Path, mutation: Mutation) -> str | None:
    """Patch the copy; the original text of the file, or None if the mutation does not apply."""
    path = copy / mutation.path
    original = path.read_text()
    mutated = original
    for text, replacement in mutation.edits:
        if mutated.count(text) != 1:
            return None
        mutated = mutated.replace(text, replacement)
    path.write_text(mutated)
    return original


def _run(copy: Path, env: dict[str, str], mutation: Mutation, full: bool) -> Outcome:
    started = time.monotonic()
    original = _apply(copy, mutation)
    if original is None:
        return Outcome(mutation, "not applicable", 0.0, f"text not found in {mutation.path}")
    try:
        code, output = _pytest(copy, env, ("tests",) if full else mutation.tests)
    finally:
        (copy / mutation.path).write_text(original)
    seconds = time.monotonic() - started
    if code == 0:
        return Outcome(mutation, "survived", seconds, "every test passed")
    if code == 1:
        return Outcome(mutation, "killed", seconds, _first_failure(output))
    return Outcome(mutation, "error", seconds, f"pytest exit {code}: {output[-500:]}")


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
        ]
    if models:
        cpu = models[0]
    return f"{os.cpu_count()} cores (nproc), {cpu}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--full", action="store_true", help="run the whole suite with -x")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args()
    known = {mutation.name: mutation for mutation in MUTATIONS}
    if args.list:
        for mutation in MUTATIONS:
            print(f"{mutation.name}: {mutation.what} ({mutation.path})")
        return 0
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(unknown)}")
    chosen = [known[name] for name in args.names] if args.names else list(MUTATIONS)

    with tempfile.TemporaryDirectory(prefix="khqrpay-mutations-") as folder:
        copy = Path(folder)
        _copy_tree(copy)
        env = _environment(copy)
        _check_the_copy_is_imported(copy, env)
        baseline = ("tests",) if args.full else tuple(dict.fromkeys(_flat(chosen)))
        print(f"baseline: {' '.join(baseline)}", flush=True)
        code, output = _pytest(copy, env, baseline)
        if code != 0:
            print(output[-3000:])
            print("the unmutated copy fails its tests: no mutation result would mean anything")
            return 2
        outcomes = []
        for mutation in chosen:
            outcome = _run(copy, env, mutation, args.full)
            outcomes.append(outcome)
            print(f"{outcome.result:>14}  {mutation.name}  ({outcome.seconds:.0f} s)", flush=True)
    _report(outcomes, full=args.full)
    return 0 if all(outcome.result == "killed" for outcome in outcomes) else 1


def _flat(mutations: list[Mutation]) -> list[str]:
    """The listed tests of all the mutations as one pytest command line (`-k` filters dropped:
    the baseline runs every listed file whole)."""
    names: list[str] = []
    for mutation in mutations:
        tests = list(mutation.tests)
        while "-k" in tests:
            at = tests.index("-k")
            del tests[at : at + 2]
        names += tests
    return names


def _report(outcomes: list[Outcome], *, full: bool) -> None:
    survived = sum(1 for outcome in outcomes if outcome.result != "killed")
    print()
    print(f"machine: {_machine()}")
    print(f"tests run per mutation: {'the whole suite, -x' if full else 'the listed ones, -x'}")
    print()
    print("| mutation | what it breaks | result | caught by | s |")
    print("|---|---|---|---|---|")
    for outcome in outcomes:
        mutation = outcome.mutation
        caught = outcome.detail if outcome.result == "killed" else f"**{outcome.detail}**"
        print(
            f"| `{mutation.name}` | {mutation.what} (`{mutation.path.removeprefix('src/')}`) "
            f"| {outcome.result} | `{caught}` | {outcome.seconds:.0f} |"
        )
    print()
    rate = survived / len(outcomes) if outcomes else 0.0
    print(f"{len(outcomes) - survived} of {len(outcomes)} killed; survival rate {rate:.0%}")


if __name__ == "__main__":
    sys.exit(main())
