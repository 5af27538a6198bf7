"""The masking detectors' checksums (Luhn, IBAN mod 97) against python-stdnum's, in the same run.

python-stdnum is not a dependency of the project; with it importable (``pip install
python-stdnum``, or on ``PYTHONPATH``) the script compares, without it, it prints ours only.
Both are fed the same candidates the detectors meet in snapshot bodies: valid numbers,
near misses (one digit off) and order-number-like digit runs. It also checks that both
agree on every candidate, which is the other half of the question.

    python bench/bench_checksums.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from link.snapshots.detectors import iban_valid, luhn_valid

CARDS = ["4111111111111111", "5500005555555559", "340000000000009", "6011000990139424", "3530111333300000",
         "4012888888881881", "378282246310005"]
IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606",
         "NL91ABNA0417164300", "ES9121000418450200051332", "IT60X0542811101000000123456", "BE68539007547034"]


def _near_misses(values: list[str], rng: random.Random) -> list[str]:
    out = []
    for v in values:
        i = rng.randrange(4, len(v))
        if v[i].isdigit():
            out.append(v[:i] + str((int(v[i]) + 1) % 10) + v[i + 1:])
    return out


def _per_call(fn: Callable[[str], bool], inputs: list[str], seconds: float) -> float:
    """µs per call over ``inputs``, repeated for about ``seconds``."""
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for value in inputs:
            fn(value)
        n += len(inputs)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    rng = random.Random(7)
    digit_runs = ["".join(rng.choice("0123456789") for _ in range(rng.randrange(13, 20))) for _ in range(20)]
    cards = CARDS + _near_misses(CARDS, rng) + digit_runs
    ibans = IBANS + _near_misses(IBANS, rng) + ["DE" + r[:20] for r in digit_runs]
    try:
        from stdnum import iban as std_iban
        from stdnum import luhn as std_luhn
    except ImportError:
        std_iban = std_luhn = None

    rows: list[tuple[str, Callable[[str], bool], Callable[[str], bool] | None, list[str]]] = [
        ("luhn", luhn_valid, std_luhn.is_valid if std_luhn else None, cards),
        ("iban", iban_valid, std_iban.is_valid if std_iban else None, ibans),
    ]
    print(f"µs per check, {args.seconds:g} s per figure; x = stdnum / ours")
    print(f"{'check':<6} {'ours':>8} {'stdnum':>8} {'x':>6}  agreement")
    for name, ours, theirs, inputs in rows:
        mine = _per_call(ours, inputs, args.seconds)
        if theirs is None:
            print(f"{name:<6} {mine:>8.2f} {'-':>8} {'-':>6}  (python-stdnum not importable)")
            continue
        other = _per_call(theirs, inputs, args.seconds)
        disagree = [v for v in inputs if ours(v) != theirs(v)]
        print(f"{name:<6} {mine:>8.2f} {other:>8.2f} {other / mine:>6.1f}  "
              f"{len(inputs) - len(disagree)}/{len(inputs)}" + (f" (differ: {disagree})" if disagree else ""))


if __name__ == "__main__":
    main()
