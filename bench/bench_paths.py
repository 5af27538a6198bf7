"""What reading a path costs at the entry of the pipeline, against a call that does nothing.

    python bench/bench_paths.py [--seconds 1.0]

Prints nanoseconds per call and the ratio to the baseline (a Python function returning its
argument), measured in the same run, for clean paths (the fast path: one regex scan) and for
spellings that need the full reading (percent-decoding, dot segments, merged slashes).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from link.paths import PathRefused, normalize_path

CLEAN = ("/", "/api/invoices/inv-1001", "/public/hello.json", "/orders/42/items/7",
         "/v1/tenants/acme/consumers/billing-app/usage")
NEEDS_WORK = ("/public/../api/invoices/inv-1001", "/public/%2e%2e/api//invoices/inv-1001",
              "/a/./b/../c/%7Euser/%41", "/.well-known/openid-configuration")
REFUSED = ("/public/%252e%252e/api", "/a/b;jsessionid=1", "/a/%zz")


def _noop(path: str) -> str:
    return path


def _normalize_or_refuse(path: str) -> str:
    try:
        return normalize_path(path)
    except PathRefused:
        return ""


def _ns_per_call(fn: Callable[[str], object], paths: tuple[str, ...], seconds: float) -> float:
    for p in paths:
        fn(p)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            for p in paths:
                fn(p)
        n += 50 * len(paths)
    return elapsed / n * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    for label, paths in (("clean (fast path)", CLEAN), ("needs normalizing", NEEDS_WORK), ("refused", REFUSED)):
        base = _ns_per_call(_noop, paths, args.seconds)
        cost = _ns_per_call(normalize_path if paths is CLEAN else _normalize_or_refuse, paths, args.seconds)
        print(f"{label:20} normalize {cost:8.0f} ns/call   no-op {base:6.0f} ns/call   ratio {cost / base:5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
