"""What start-up built, kept out of the cyclic collector's way.

A full (generation 2) collection scans every tracked object. After start-up a Link process
holds a few hundred thousand of them (the registry, compiled policies and contracts,
settings, the MCP SDK and gRPC modules) that live as long as the process; measured on the
API-key route's pipeline, a full collection then paused the event loop for ~145 ms, and one
came every few thousand requests: the whole p99 tail. :func:`freeze_start_up_heap` moves them
to the permanent generation, so later collections scan only what requests and reloads
allocate. Cyclic garbage among frozen objects is never collected (reference counting still
frees the rest); start-up makes little of it, and a reload replaces objects, it does not
build cycles out of old ones.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_start_up_heap"]


def freeze_start_up_heap() -> int:
    """Collect once, then freeze what is left; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
