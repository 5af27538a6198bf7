"""Every problem of a Tool or ToolSet manifest, for ``stoa-link validate``.

The registry's parser (:mod:`link.registry.model`) stops at the first problem, as a
loader should. Here each problem is recorded, the faulty field is set aside (an
optional field removed, a required one replaced by a harmless stand-in) and the
manifest parsed again, so one run lists them all. Keys the platform does not
define are refused with the closest known spelling: a typo such as
``inputschema`` would otherwise be ignored and the tool served without it.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

from link.registry.model import API_VERSION, ResourceError, parse_tool, parse_toolset

__all__ = ["KNOWN_KEYS", "resource_problems"]

# Field paths (``*`` = every list item) -> the keys shared/CONTRACTS.md defines there (and the CRDs of
# deploy/crds/, which tests/unit/registry/test_kubernetes_crds.py keeps equal to these).
KNOWN_KEYS: dict[str, dict[str, frozenset[str]]] = {
    "Tool": {
        "": frozenset({"apiVersion", "kind", "metadata", "spec", "status"}),
        "spec": frozenset({"displayName", "description", "endpoint", "method", "inputSchema", "outputSchema",
                           "auth", "rateLimit", "timeout", "headers", "annotations"}),
        # passthroughUserToken is known so that the parser's own message (removed: use tokenExchange) is the one.
        "spec.auth": frozenset({"type", "secretRef", "headerName", "tokenExchange", "passthroughUserToken"}),
        "spec.auth.tokenExchange": frozenset({"audience", "resource", "scope", "headerName"}),
        "spec.annotations": frozenset({"title", "readOnlyHint", "destructiveHint", "idempotentHint",
                                       "openWorldHint"}),
    },
    "ToolSet": {
        "": frozenset({"apiVersion", "kind", "metadata", "spec", "status"}),
        "spec": frozenset({"upstream", "tools", "prefix", "refreshInterval", "serve", "resources", "prompts",
                           "include"}),
        "spec.upstream": frozenset({"url", "transport", "auth", "timeoutSeconds"}),
        "spec.upstream.auth": frozenset({"type", "secretRef", "headerName"}),
        "spec.tools.*": frozenset({"name", "alias", "enabled"}),
        "spec.resources.*": frozenset({"uri", "enabled"}),
        "spec.prompts.*": frozenset({"name", "alias", "enabled"}),
        "spec.include": frozenset({"tools", "resources", "prompts"}),
    },
}

_PLACEHOLDER_URL = "http://placeholder.invalid/"
_MAX_ROUNDS = 40


def _stand_ins(kind: str) -> dict[str, Any]:
    """A valid value for each field the manifest cannot do without."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "placeholder", "namespace": "default"},
        "metadata.name": "placeholder",
        "metadata.namespace": "default",
        "spec": {},
        "spec.displayName": "placeholder",
        "spec.description": "placeholder",
        "spec.endpoint": _PLACEHOLDER_URL,
        "spec.upstream": {"url": _PLACEHOLDER_URL},
        "spec.upstream.url": _PLACEHOLDER_URL,
    }


def _segments(dotted: str) -> list[str]:
    return [p for p in dotted.replace("[", ".").replace("]", "").split(".") if p]


def _set_aside(manifest: dict[str, Any], field: str, kind: str) -> bool:
    """Make ``field`` harmless in ``manifest``; False when there is nothing left to try."""
    stand_ins = _stand_ins(kind)
    parts = _segments(field)
    # The closest enclosing field with a stand-in (spec.endpoint for a bad placeholder in it, …).
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if end < len(parts) and key in ("spec", "metadata"):
            break  # never replace a whole section for one of its fields
        if key in stand_ins:
            return _put(manifest, parts[:end], copy.deepcopy(stand_ins[key]))
    # An optional field: drop the top-level spec key it belongs to (or the metadata key).
    if len(parts) >= 2 and parts[0] in ("spec", "metadata"):
        node = manifest.get(parts[0])
        if isinstance(node, dict) and parts[1] in node:
            del node[parts[1]]
            return True
    return False


def _put(manifest: dict[str, Any], parts: list[str], value: Any) -> bool:
    node: Any = manifest
    for part in parts[:-1]:
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if not isinstance(node, dict):
        return False
    if node.get(parts[-1]) == value:
        return False  # already the stand-in: no progress possible
    node[parts[-1]] = value
    return True


def _unknown_keys(manifest: Mapping[str, Any], kind: str) -> list[tuple[str, str]]:
    """``(field, reason)`` for each key the platform does not define."""
    out: list[tuple[str, str]] = []
    for where, allowed in KNOWN_KEYS[kind].items():
        for path, node in _nodes(manifest, _segments(where) if where else []):
            if not isinstance(node, Mapping):
                continue
            for key in node:
                if key in allowed:
                    continue
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(allowed))}"
                field = f"{path}.{key}" if path else str(key)
                out.append((field, f"unknown key{hint}"))
    return out


def _nodes(node: Any, parts: list[str], path: str = "") -> list[tuple[str, Any]]:
    """The nodes at ``parts`` (``*`` = each item of a list), with their field paths."""
    if not parts:
        return [(path, node)]
    head, rest = parts[0], parts[1:]
    if head == "*":
        if not isinstance(node, list):
            return []
        return [found for i, item in enumerate(node) for found in _nodes(item, rest, f"{path}[{i}]")]
    if not isinstance(node, Mapping) or head not in node:
        return []
    return _nodes(node[head], rest, f"{path}.{head}" if path else head)


def resource_problems(manifest: Mapping[str, Any], kind: str) -> tuple[Any, list[tuple[str, str]]]:
    """``(parsed resource or None, [(field, reason), …])`` for a Tool or ToolSet manifest."""
    parse = parse_tool if kind == "Tool" else parse_toolset
    unknown = _unknown_keys(manifest, kind)
    found: list[tuple[str, str]] = []
    work = copy.deepcopy(dict(manifest))
    for _ in range(_MAX_ROUNDS):
        try:
            resource = parse(work)
        except ResourceError as exc:
            problem = (exc.field, exc.reason)
            if problem in found:
                break
            found.append(problem)
            if not _set_aside(work, exc.field, kind):
                break
            continue
        # It parses once its faults are set aside; it is only the user's resource if there were none.
        return (None if found else resource), _merged(unknown, found)
    return None, _merged(unknown, found)


def _merged(unknown: list[tuple[str, str]], found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Both lists, a key the parser also calls unknown said once (with the suggestion)."""
    named = {field for field, _ in unknown}
    return unknown + [(field, reason) for field, reason in found if field not in named]
