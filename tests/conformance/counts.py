"""Count one conformance run: passed, failed, expected failures (the target's baseline), out of the total.

    python tests/conformance/counts.py RESULTS_DIR BASELINE LABEL

RESULTS_DIR is the suite's ``--output-dir`` of one run (one ``server-<scenario>-<time>/checks.json``
per scenario). A scenario fails when any of its checks is a FAILURE or a WARNING: the rule the suite
applies to its baseline (``evaluateBaseline``), stricter than its own summary's tick, which ignores
warnings. Prints one line; exits 1 when a scenario failed outside the baseline or a baseline entry passed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def outcomes(results: Path) -> dict[str, bool]:
    """Scenario name -> whether it passed, for every scenario of the run."""
    found: dict[str, bool] = {}
    for run in sorted(results.iterdir()):
        match = _DIR.match(run.name)
        if match is None or not (run / "checks.json").is_file():
            continue
        checks = json.loads((run / "checks.json").read_text())
        found[match["scenario"]] = not any(c.get("status") in ("FAILURE", "WARNING") for c in checks)
    return found


def expected(baseline: Path) -> set[str]:
    loaded = yaml.safe_load(baseline.read_text()) or {}
    return set(loaded.get("server") or [])


def main(argv: list[str]) -> int:
    results, baseline, label = Path(argv[1]), Path(argv[2]), argv[3]
    ran, listed = outcomes(results), expected(baseline)
    passed = sorted(s for s, ok in ran.items() if ok and s not in listed)
    stale = sorted(s for s, ok in ran.items() if ok and s in listed)
    as_expected = sorted(s for s, ok in ran.items() if not ok and s in listed)
    failed = sorted(s for s, ok in ran.items() if not ok and s not in listed)
    line = (f"MCP conformance [{label}]: {len(passed)} passed, {len(failed)} failed, "
            f"{len(as_expected)} expected failures (not applicable, {baseline.name}) of {len(ran)} scenarios")
    if stale:
        line += f"; stale baseline entries (now pass): {', '.join(stale)}"
    if failed:
        line += f"; failed: {', '.join(failed)}"
    print(line)
    return 1 if failed or stale or not ran else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
