"""The committed bootstraps of the proxy and shadow Deployments (``deploy/modes/*/envoy.yaml``).

Each is what ``stoa-link envoy-config --mode M --config deploy/modes/M/link.yaml --link 127.0.0.1:9191``
prints for the committed ``link.yaml`` beside it.

    python -m link.envoyconf.mode_files --write   # regenerate
    python -m link.envoyconf.mode_files --check   # exit 1 if one is stale
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODES = ("proxy", "shadow")


def command(mode: str) -> list[str]:
    here = ROOT / "deploy" / "modes" / mode
    return [sys.executable, "-m", "link.cli", "envoy-config", "--mode", mode, "--config", str(here / "link.yaml"),
            "--link", "127.0.0.1:9191"]


def expected(mode: str) -> str:
    return subprocess.run(command(mode), check=True, capture_output=True, text=True, cwd=ROOT).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for mode in MODES:
        path = ROOT / "deploy" / "modes" / mode / "envoy.yaml"
        text = expected(mode)
        if args.write:
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(mode)
    if stale:
        print(f"stale deploy/modes bootstraps: {', '.join(stale)}; run `make envoy-configs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
