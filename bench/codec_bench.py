"""KHQR codec benchmark: our encode, decode and verify beside PyPI `bakong-khqr`'s `create_qr`.

Both encoders get the same inputs: individual QRs, KHR and USD, static and dynamic, with and
without the additional data fields `create_qr` knows (bill number, phone, store, terminal). Each
figure is the best of many short rounds over all inputs, garbage collector off, the contenders
taking turns in each round.

    .venv/bin/python bench/codec_bench.py [--rounds 40] [--loops 8] [--markdown]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from bakong_khqr import KHQR

from khqrpay.khqr import KHQRInput, decode, encode, verify
from khqrpay.money import Currency

VECTORS = Path(__file__).parent.parent / "tests" / "data" / "khqr-vectors.jsonl"
NOW_MS = 1_795_651_200_000
EXPIRES_MS = NOW_MS + 24 * 3600 * 1000  # create_qr's fixed one-day expiry
GOAL_ENCODE_SPEEDUP = 8.0
GOAL_VERIFY_US = 30.0


@dataclass(frozen=True)
class Case:
    """One QR's fields, as our input and as `create_qr`'s keyword arguments."""

    ours: KHQRInput
    theirs: dict[str, object]


def cases() -> list[Case]:
    built = []
    names = ("John Smith", "Coffee Klaing", "Sok Dara Mini Mart")
    extras = (
        {},
        {"bill_number": "INV-2026-0001"},
        {
            "bill_number": "INV-2026-0002",
            "store_label": "Riverside",
            "terminal_label": "POS-1",
            "mobile_number": "85512345678",
        },
    )
    amounts = {Currency.KHR: (None, "100", "40000"), Currency.USD: (None, "0.01", "12.50")}
    for number, (name, extra, currency) in enumerate(itertools.product(names, extras, Currency)):
        for amount_text in amounts[currency]:
            amount = None if amount_text is None else Decimal(amount_text)
            ours = KHQRInput(
                bakong_account_id=f"shop_{number}@devb",
                merchant_name=name,
                currency=currency,
                amount=amount,
                expires_ms=None if amount is None else EXPIRES_MS,
                **extra,
            )
            theirs = {
                "account_id": ours.bakong_account_id,
                "merchant_name": name,
                "merchant_city": ours.merchant_city,
                "currency": currency.value,
                "amount": 0 if amount is None else float(amount),
                "static": amount is None,
                "bill_number": extra.get("bill_number"),
                "store_label": extra.get("store_label"),
                "terminal_label": extra.get("terminal_label"),
                "phone_number": extra.get("mobile_number"),
            }
            built.append(Case(ours, theirs))
    return built


def best_us_per_item(
    works: dict[str, tuple[Callable[[], None], int]], rounds: int
) -> dict[str, float]:
    """Each work's best time over `rounds` rounds, in µs a QR. The works take turns within a
    round, so that a busy moment on the machine does not favour one of them."""
    best_s = dict.fromkeys(works, float("inf"))
    gc.disable()
    try:
        for _ in range(rounds):
            for name, (work, _items) in works.items():
                started = time.perf_counter()
                work()
                best_s[name] = min(best_s[name], time.perf_counter() - started)
    finally:
        gc.enable()
    return {name: best_s[name] * 1e6 / items for name, (_work, items) in works.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="best of this many rounds")
    parser.add_argument("--loops", type=int, default=8, help="passes over the inputs a round")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    options = parser.parse_args()

    inputs = cases()
    encoded = [encode(case.ours, now_ms=NOW_MS) for case in inputs]
    qrs = [item.qr for item in encoded]
    for qr in qrs:  # only valid strings are timed
        verify(qr, now_ms=NOW_MS)
    # The official SDK's own strings: merchant, Khmer, language template, every optional field.
    with VECTORS.open(encoding="utf-8") as lines:
        sdk_qrs = [v["qr"] for v in map(json.loads, lines) if v["kind"] == "valid"]
    bakong = KHQR()
    for case in inputs:  # and theirs are KHQRs too (checked against their own clock)
        verify(str(bakong.create_qr(**case.theirs)), now_ms=time.time_ns() // 1_000_000)

    loops, rounds = options.loops, options.rounds
    count = len(inputs) * loops

    def ours_encode() -> None:
        for _ in range(loops):
            for case in inputs:
                encode(case.ours, now_ms=NOW_MS)

    def theirs_encode() -> None:
        for _ in range(max(1, loops // 8)):
            for case in inputs:
                bakong.create_qr(**case.theirs)

    def ours_decode() -> None:
        for _ in range(loops):
            for qr in qrs:
                decode(qr)

    def ours_verify() -> None:
        for _ in range(loops):
            for qr in qrs:
                verify(qr, now_ms=NOW_MS)

    def ours_verify_sdk_vectors() -> None:
        for _ in range(loops):
            for qr in sdk_qrs:
                verify(qr, now_ms=NOW_MS)

    gc.collect()
    theirs_name = "bakong-khqr create_qr (PyPI)"
    timings = best_us_per_item(
        {
            theirs_name: (theirs_encode, len(inputs) * max(1, loops // 8)),
            "encode": (ours_encode, count),
            "decode": (ours_decode, count),
            "verify (decode + all checks)": (ours_verify, count),
            "verify, SDK's valid vectors": (ours_verify_sdk_vectors, len(sdk_qrs) * loops),
        },
        rounds,
    )
    theirs_us = timings.pop(theirs_name)
    figures = timings

    speedup = theirs_us / figures["encode"]
    verify_us = max(figures["verify (decode + all checks)"], figures["verify, SDK's valid vectors"])
    rows = [(theirs_name, theirs_us, "1.0x")]
    rows += [
        (f"khqrpay {name}", us, f"{theirs_us / us:.1f}x" if name == "encode" else "")
        for name, us in figures.items()
    ]
    print(
        f"{len(inputs)} inputs x {loops} loops, best of {rounds}; "
        f"Python {platform.python_version()} on {platform.machine()}"
    )
    if options.markdown:
        print("| operation | µs per QR | QRs per second | vs create_qr |")
        print("|---|---:|---:|---:|")
        for name, us, ratio in rows:
            print(f"| {name} | {us:.1f} | {1e6 / us:,.0f} | {ratio} |")
    else:
        for name, us, ratio in rows:
            print(f"{name:37s} {us:8.1f} µs  {1e6 / us:>10,.0f} /s  {ratio}")
    print(
        f"goals: encode ≥ {GOAL_ENCODE_SPEEDUP:.0f}x faster: {speedup:.1f}x "
        f"({'met' if speedup >= GOAL_ENCODE_SPEEDUP else 'NOT met'}); "
        f"decode + verify < {GOAL_VERIFY_US:.0f} µs: {verify_us:.1f} µs "
        f"({'met' if verify_us < GOAL_VERIFY_US else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
