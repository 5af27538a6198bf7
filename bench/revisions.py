"""Another revision of Link's code beside this checkout, for benchmarks that compare the two in one run."""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(ref: str, into: Path) -> Path:
    """``link/`` and ``mcp_server/`` of git revision ``ref`` under ``into``; returns the tree to put on
    ``PYTHONPATH`` (the rest — protos, dependencies — comes from this checkout's environment)."""
    archive = into / "baseline.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref, "link", "mcp_server"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


Rows = list[tuple[str, float]]  # (what, figure) of one round


def best_of_interleaved(ref: str, rounds: int, one_round: Callable[[Path], Rows]) -> tuple[list[str], dict[str, list[float]]]:
    """Run ``one_round(tree)`` for revision ``ref`` and for this checkout, alternately, ``rounds`` times
    each; returns the rows' names and, for ``"baseline"`` and ``"this"``, each row's best (lowest)
    figure over the rounds: on a shared machine the noise only ever adds (timeit's advice)."""
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"baseline": checkout(ref, Path(tmp)), "this": ROOT}
        runs: dict[str, list[Rows]] = {name: [] for name in trees}
        for _ in range(rounds):
            for name, tree in trees.items():
                runs[name].append(one_round(tree))
    names = [name for name, _ in runs["this"][0]]
    return names, {t: [min(r[i][1] for r in runs[t]) for i in range(len(names))] for t in runs}
