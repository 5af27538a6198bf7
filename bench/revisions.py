"""Another revision of Link's code beside this checkout, for benchmarks that compare the two in one run."""

from __future__ import annotations

import subprocess
import tarfile
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
