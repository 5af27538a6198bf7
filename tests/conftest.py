"""Shared fixtures. Real components are started by the harness in tests/harness/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Tools that come as wheels (envoy, kubectl) live beside the interpreter: find them there first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
