"""The MCP face of registry tools: wire descriptions and argument validators.

Both are built once per tool version (a new registry object is a new
version) and per-tenant lists once per registry version, so ``tools/list``
on a large registry costs a dictionary lookup and ``tools/call`` validation a
pre-compiled validator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import validators as js_validators
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from link.registry import ToolRegistry
from link.registry.model import Tool, thaw
from mcp_server.argcheck import quick_check
from mcp_server.listing import sieve_tool, sieve_tools

__all__ = ["CatalogEntry", "InvalidArguments", "ToolCatalog", "describe"]

_ANNOTATION_KEYS = ("title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


class InvalidArguments(Exception):
    """Arguments that do not match the tool's inputSchema; ``field`` is where (``$`` = the whole object)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def describe(tool: Tool) -> dict[str, Any]:
    """The tool as MCP ``tools/list`` shows it; the JSON Schemas are served as written."""
    wire: dict[str, Any] = {
        "name": tool.name,
        "title": tool.display_name,
        "description": tool.description,
        "inputSchema": thaw(tool.input_schema),
    }
    if tool.output_schema is not None:
        wire["outputSchema"] = thaw(tool.output_schema)
    annotations = {k: thaw(v) for k, v in tool.annotations.items() if k in _ANNOTATION_KEYS}
    if annotations:
        wire["annotations"] = annotations
    return wire


def _field_of(error: ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.message, str):
        # "'x' is a required property": the field is the missing one, not its parent.
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        if missing:
            path.append(missing)
    if not path:
        return "$"
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(slots=True)
class CatalogEntry:
    tool: Tool
    wire: dict[str, Any]
    _validator: Validator | None = field(default=None, repr=False)
    _quick: Any = field(default=None, repr=False)  # argcheck.quick_check's predicate, False: none
    _sieved: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def for_version(self, version: str) -> dict[str, Any]:
        """The description as the SDK shapes it for one protocol version (computed once)."""
        hit = self._sieved.get(version)
        if hit is None:
            hit = self._sieved[version] = sieve_tool(self.wire, version)
        return hit

    def validate(self, arguments: Mapping[str, Any]) -> None:
        """Raise :class:`InvalidArguments` naming the first offending field."""
        if self._quick is None:
            self._quick = quick_check(self.wire["inputSchema"]) or False
        if self._quick is not False and self._quick(arguments):
            return  # certainly valid; jsonschema judges everything else
        if self._validator is None:
            schema = self.wire["inputSchema"]
            cls = js_validators.validator_for(schema, default=js_validators.Draft202012Validator)
            self._validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        error = best_match(self._validator.iter_errors(arguments))
        if error is not None:
            raise InvalidArguments(_field_of(error), error.message)


def shape_for_version(entries: Iterable[CatalogEntry], version: str) -> None:
    """Shape the descriptions not yet shaped for ``version`` in one batch (one SDK call, not one per tool)."""
    missing = [e for e in entries if version not in e._sieved]
    if not missing:
        return
    for entry, shaped in zip(missing, sieve_tools([e.wire for e in missing], version), strict=True):
        entry._sieved[version] = shaped


class ToolCatalog:
    """Wire entries per tool version and per-tenant lists per registry version."""

    def __init__(self, registry: ToolRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], CatalogEntry] = {}
        self._lists: dict[str, tuple[int, list[CatalogEntry]]] = {}

    def entry(self, tool: Tool) -> CatalogEntry:
        hit = self._entries.get(tool.key)
        if hit is not None and hit.tool is tool:
            return hit
        built = CatalogEntry(tool=tool, wire=describe(tool))
        with self._lock:
            self._entries[tool.key] = built
        return built

    def find(self, tenant: str, name: str) -> CatalogEntry | None:
        tool = self._registry.tool(tenant, name)
        return self.entry(tool) if tool is not None else None

    def tenant_entries(self, tenant: str) -> list[CatalogEntry]:
        """The tenant's tools in name order (the same list object until the registry changes)."""
        version = self._registry.version
        hit = self._lists.get(tenant)
        if hit is not None and hit[0] == version:
            return hit[1]
        entries = [self.entry(t) for t in self._registry.tools(tenant)]
        with self._lock:
            self._lists[tenant] = (version, entries)
            live = {t.key for e in entries for t in (e.tool,)}
            stale = [k for k in self._entries if k[0] == tenant and k not in live]
            for k in stale:
                del self._entries[k]
        return entries
