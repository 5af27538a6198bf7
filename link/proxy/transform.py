"""JSON body transforms of proxy mode: fields added, removed and renamed by dotted path.

``customer.email`` names the ``email`` member of the ``customer`` object;
a path through something that is not an object is left alone (a transform
never invents structure under a value, nor fails a request). Order: renames,
then removals, then additions, so a rule can move a field and set a default
in its old place.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from link.jsonsafe import JsonRefused
from link.jsonsafe import loads as safe_loads
from link.settings import BodyTransformSettings

__all__ = ["apply_transform", "transform_body"]

_MISSING = object()


def _parent(doc: Any, path: str, create: bool) -> tuple[dict[str, Any] | None, str]:
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        if not isinstance(node, dict):
            return None, parts[-1]
        child = node.get(part, _MISSING)
        if child is _MISSING:
            if not create:
                return None, parts[-1]
            child = node[part] = {}
        node = child
    return (node if isinstance(node, dict) else None), parts[-1]


def apply_transform(doc: Any, rules: BodyTransformSettings) -> Any:
    """A transformed copy of ``doc`` (the original is not changed)."""
    out = copy.deepcopy(doc)
    for old, new in rules.rename.items():
        parent, key = _parent(out, old, create=False)
        if parent is None or key not in parent:
            continue
        value = parent.pop(key)
        target, new_key = _parent(out, new, create=True)
        if target is not None:
            target[new_key] = value
    for path in rules.remove:
        parent, key = _parent(out, path, create=False)
        if parent is not None:
            parent.pop(key, None)
    for path, value in rules.add.items():
        parent, key = _parent(out, path, create=True)
        if parent is not None:
            parent[key] = copy.deepcopy(value)
    return out


def transform_body(body: bytes, headers: Mapping[str, str], rules: BodyTransformSettings) -> bytes | None:
    """The new body bytes, or None to leave the body as it is (not JSON, unparsable, or unchanged)."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not body or not (media == "application/json" or media.endswith("+json")):
        return None
    try:
        doc = safe_loads(body)
    except (JsonRefused, ValueError, UnicodeDecodeError):
        return None  # not ours to judge: the contract phase refuses malformed bodies where one applies
    new = apply_transform(doc, rules)
    if new == doc:
        return None
    return json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode()
