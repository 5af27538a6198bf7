"""The RFC 6902 JSON patch that adds the sidecar to one pod."""

from __future__ import annotations

from typing import Any

import link
from link.injector.config import ANNOTATION_INJECTED, ANNOTATION_VERSION, InjectorConfig
from link.injector.sidecar import sidecar_containers, sidecar_volumes


def pointer_token(key: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901): ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return key.replace("~", "~0").replace("/", "~1")


def injection_patch(pod: dict[str, Any], gateway: str, config: InjectorConfig) -> list[dict[str, Any]]:
    """Operations adding the containers, volumes and bookkeeping annotations to ``pod``.

    ``pod`` must already be checked (a ``spec`` with ``containers``, a ``metadata``
    with ``annotations``): the operations append and never replace what is there.
    """
    spec = pod["spec"]
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/spec/containers/-", "value": c} for c in sidecar_containers(gateway, config)
    ]
    volumes = sidecar_volumes(gateway, config)
    if spec.get("volumes"):
        ops += [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in volumes]
    else:
        # Absent or null: "add" creates (or replaces the null with) the whole list.
        ops.append({"op": "add", "path": "/spec/volumes", "value": volumes})
    for key, value in ((ANNOTATION_INJECTED, "true"), (ANNOTATION_VERSION, link.__version__)):
        ops.append({"op": "add", "path": f"/metadata/annotations/{pointer_token(key)}", "value": value})
    return ops
