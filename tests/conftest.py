"""Shared fixtures. Real components are started by the harness in tests/harness/."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Tools that come as wheels (envoy, kubectl) live beside the interpreter: find them there first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_HANDLERS = {sig: signal.getsignal(sig) for sig in _SIGNALS}


@pytest.fixture(autouse=True)
def _signal_handlers_as_they_were() -> Iterator[None]:
    """Each test ends with the process's SIGINT/SIGTERM handlers as the session began.

    uvicorn swaps its own ``handle_exit`` in while a server runs and puts back what it found when it
    stops, so two servers stopped in the order they started leave the first one's handler installed,
    bound to a server that has exited. sse-starlette takes a SIGTERM handler bound to a uvicorn server
    whose ``should_exit`` is set for a shutdown in progress and ends every SSE stream in the process:
    later tests' streams were cut short.
    """
    yield
    for sig, handler in _HANDLERS.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
