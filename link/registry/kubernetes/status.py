"""What a resource's status subresource should say: Link's verdict, and what federation learnt."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from link.registry.model import ResourceError
from link.registry.registry import ToolSetStatus

__all__ = ["MAX_MESSAGE", "desired_status", "federation_state", "merged", "toolset_status_patch"]

MAX_MESSAGE = 1024  # status is for people and kubectl, not for whole stack traces


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_status(obj: Mapping[str, Any], error: ResourceError | None, *,
                   serving_generation: int | None = None,
                   fields: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The status patch a resource needs after Link's verdict, or None when it already says so.

    ``serving_generation`` is the generation of the previous good version Link
    keeps serving when this one is refused (it goes into the message).
    ``fields`` are further status fields of the kind (an OpenAPIImport's tools).
    """
    fields = fields or {}
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    generation = generation if isinstance(generation, int) and not isinstance(generation, bool) else None
    ready = error is None
    message = ""
    if error is not None:
        message = str(error)[:MAX_MESSAGE]
        if serving_generation is not None:
            message += f" (still serving generation {serving_generation})"
    current = obj.get("status")
    current = current if isinstance(current, Mapping) else {}
    conditions = current.get("conditions")
    conditions = [c for c in conditions if isinstance(c, Mapping)] if isinstance(conditions, list) else []
    old = next((c for c in conditions if c.get("type") == "Ready"), None)
    cond: dict[str, Any] = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "Accepted" if ready else "Invalid",
        "message": message,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    up_to_date = (
        current.get("ready") is ready
        and (current.get("message") or "") == message
        and current.get("observedGeneration") == generation
        and old is not None
        and all(old.get(k) == v for k, v in cond.items())
        and all(current.get(k) == v for k, v in fields.items())
    )
    if up_to_date:
        return None
    # The transition time moves only when the condition flips (Kubernetes convention).
    same_state = old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime")
    cond["lastTransitionTime"] = old.get("lastTransitionTime") if same_state and old else _now()
    status: dict[str, Any] = {
        "ready": ready,
        "message": message,
        "conditions": [dict(c) for c in conditions if c.get("type") != "Ready"] + [cond],
        **fields,
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return {"status": status}


def toolset_status_patch(status: ToolSetStatus) -> dict[str, Any]:
    """The status patch carrying what federation learnt about a ToolSet's upstream."""
    body: dict[str, Any] = {
        "connected": status.connected,
        "toolCount": status.tool_count,
        "discoveredTools": list(status.discovered_tools),
        "error": status.error[:MAX_MESSAGE],
    }
    if status.last_sync is not None:
        body["lastSync"] = _dt.datetime.fromtimestamp(status.last_sync, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": body}


def federation_state(status: ToolSetStatus) -> tuple[Any, ...]:
    """The part of a ToolSet's federation status worth a write when it changes."""
    # lastSync alone moves at every refresh; writing it each time would only make watch traffic.
    return (status.connected, status.tool_count, status.discovered_tools, status.error)


def merged(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """Two status merge patches as one (the newer wins field by field)."""
    return {"status": {**older.get("status", {}), **newer.get("status", {})}}
