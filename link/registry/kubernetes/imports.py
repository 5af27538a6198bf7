"""``kind: OpenAPIImport`` from a cluster: each entry stands for the Tools of the document it carries.

In a cluster the document travels inside the entry (``spec.openapi.document``,
a mapping or its YAML/JSON text), so the Tools follow the object: applying a
new version of it rebuilds them, deleting it removes them. The Tools go into
the registry's imported set (:meth:`ToolRegistry.set_imported`), apart from
Tool resources, so a re-list of Tools never removes them; a Tool resource of
the same name wins. A version that cannot be imported keeps the previous good
Tools, and its status says why.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from link.openapi import sync
from link.registry.model import ResourceError, Tool, parse_tool
from link.registry.registry import ToolRegistry

__all__ = ["KIND", "ImportFeed"]

KIND = sync.KIND


@dataclass
class _Entry:
    fingerprint: str = ""  # of the last version seen, good or not: a status write alone re-imports nothing
    error: ResourceError | None = None
    good_generation: int | None = None
    tools: tuple[str, ...] = field(default_factory=tuple)  # names of the Tools served


def _identity(manifest: Mapping[str, Any]) -> tuple[str, str]:
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _fingerprint(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    relevant = {"apiVersion": manifest.get("apiVersion"), "spec": manifest.get("spec"),
                "metadata": {k: meta.get(k) for k in ("name", "namespace", "generation")}}
    return json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)


def _generation(manifest: Mapping[str, Any]) -> int | None:
    meta = manifest.get("metadata")
    gen = meta.get("generation") if isinstance(meta, Mapping) else None
    return gen if isinstance(gen, int) and not isinstance(gen, bool) else None


def expand(manifest: Mapping[str, Any]) -> list[Tool]:
    """The Tools an entry stands for, each checked by the registry's parser; raises ResourceError."""
    try:
        tools = [parse_tool(doc) for doc in sync.expand_import(manifest, None)]
    except sync.ImportError_ as exc:
        raise ResourceError(exc.field or "spec", exc.reason or str(exc)) from None
    names = [t.name for t in tools]
    if len(set(names)) != len(names):  # the importer never does this; the registry must not trust it
        raise ResourceError("spec.openapi.document", "the document gives two operations the same tool name")
    return tools


class ImportFeed:
    """Feeds the registry's imported Tools from OpenAPIImport objects (thread-safe)."""

    def __init__(self, registry: ToolRegistry) -> None:
        self._registry = registry
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return KIND

    def relist(self, manifests: Iterable[Mapping[str, Any]], scope: set[str] | None) -> dict[
            tuple[str, str], ResourceError]:
        errors: dict[tuple[str, str], ResourceError] = {}
        listed: set[tuple[str, str]] = set()
        for manifest in manifests:
            key = _identity(manifest)
            listed.add(key)
            error = self.apply(manifest)
            if error is not None:
                errors[key] = error
        with self._lock:
            known = set(self._entries) | set(self._registry.imports())
        for namespace, name in known:
            if (scope is None or namespace in scope) and (namespace, name) not in listed:
                self.delete(namespace, name)
        return errors

    def apply(self, manifest: Mapping[str, Any]) -> ResourceError | None:
        key = _identity(manifest)
        fingerprint = _fingerprint(manifest)
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            if entry.fingerprint == fingerprint:
                return entry.error
        try:
            tools = expand(manifest)
        except ResourceError as err:
            with self._lock:
                entry.fingerprint, entry.error = fingerprint, err
            self._registry.record_error((KIND, *key), err)
            return err
        self._registry.set_imported(key[0], key[1], tools)
        self._registry.record_error((KIND, *key), None)
        with self._lock:
            entry.fingerprint, entry.error = fingerprint, None
            entry.good_generation = _generation(manifest)
            entry.tools = tuple(sorted(t.name for t in tools))
        return None

    def delete(self, namespace: str, name: str) -> None:
        with self._lock:
            self._entries.pop((namespace, name), None)
        self._registry.set_imported(namespace, name, ())
        self._registry.record_error((KIND, namespace, name), None)

    def serving_generation(self, namespace: str, name: str) -> int | None:
        with self._lock:
            entry = self._entries.get((namespace, name))
            return entry.good_generation if entry is not None and entry.tools else None

    def status_fields(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            entry = self._entries.get((namespace, name))
            tools = list(entry.tools) if entry is not None else []
        return {"toolCount": len(tools), "tools": tools}
