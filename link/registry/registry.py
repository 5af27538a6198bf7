"""The in-memory tool registry shared by Link and the MCP server.

Sources (a Kubernetes watch, a directory of manifests) feed it manifests; it
keeps the last good version of every resource, records why a bad one was
refused, and tells listeners when the set of tools changed. Reads are cheap:
per-tenant views are built once per registry version.

Mutations take a lock so a source may run in a worker thread; listeners are
called outside the lock, possibly from that thread (a listener that touches an
event loop must hop onto it with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from link.registry.content import Prompt, Resource, parse_prompt, parse_resource
from link.registry.model import RefusedManifest, ResourceError, Tool, ToolSet, parse_tool, parse_toolset

__all__ = ["CONTENT_KINDS", "KINDS", "ResourceKey", "ToolRegistry", "ToolSetStatus"]

_log = logging.getLogger("stoa.link.registry")

# MCP resources and prompts (see link.registry.content): stored apart from tools, so their changes
# neither bump the tools' version nor invalidate tool lists.
CONTENT_KINDS = ("Resource", "Prompt")
KINDS = ("Tool", "ToolSet", *CONTENT_KINDS)
_PARSERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "Tool": parse_tool, "ToolSet": parse_toolset, "Resource": parse_resource, "Prompt": parse_prompt,
}
Entry = Tool | ToolSet | Resource | Prompt
# (kind, namespace, name)
ResourceKey = tuple[str, str, str]
Listener = Callable[[], None]


@dataclass(frozen=True, slots=True)
class ToolSetStatus:
    """What federation last learnt about a ToolSet's upstream (its CRD status)."""

    connected: bool = False
    tool_count: int = 0
    discovered_tools: tuple[str, ...] = ()
    last_sync: float | None = None
    error: str = ""


@dataclass(slots=True)
class _View:
    """Per-tenant read model, rebuilt lazily after each change."""

    ordered: list[Tool] = field(default_factory=list)
    by_name: dict[str, Tool] = field(default_factory=dict)


def _identity(manifest: Any) -> tuple[str, str, str]:
    """Best-effort (kind, namespace, name) of a manifest, for keying errors of bad ones."""
    if not isinstance(manifest, Mapping):
        return ("", "", "")
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return (str(manifest.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _resource_version(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata")
    return str(meta.get("resourceVersion", "")) if isinstance(meta, Mapping) else ""


def _fingerprint(manifest: Mapping[str, Any]) -> str | None:
    """What decides a resource's parse: everything but its status and bookkeeping metadata."""
    meta = manifest.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    relevant = {
        "apiVersion": manifest.get("apiVersion"),
        "kind": manifest.get("kind"),
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "generation")},
        "spec": manifest.get("spec"),
    }
    try:
        return json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def _same(a: Entry, b: Entry) -> bool:
    """Equal apart from resourceVersion (a status write alone must not look like a change)."""
    return dataclasses.replace(a, resource_version=b.resource_version) == b


class ToolRegistry:
    """Tools and ToolSets by tenant (= namespace)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tools: dict[tuple[str, str], Tool] = {}
        self._toolsets: dict[tuple[str, str], ToolSet] = {}
        # ToolSet key -> tools discovered on its upstream (already renamed).
        self._federated: dict[tuple[str, str], tuple[Tool, ...]] = {}
        self._toolset_status: dict[tuple[str, str], ToolSetStatus] = {}
        # (tenant, OpenAPIImport name) -> the Tools that entry stands for (the Kubernetes source's imports;
        # the files source expands them into plain Tool manifests instead).
        self._imported: dict[tuple[str, str], tuple[Tool, ...]] = {}
        self._errors: dict[ResourceKey, ResourceError] = {}
        # (kind, namespace, name) -> (fingerprint, parsed resource): skips re-parsing unchanged manifests.
        self._parsed: dict[ResourceKey, tuple[str, Entry]] = {}
        # kind (Resource|Prompt) -> (tenant, name) -> entry, and a version per kind.
        self._content: dict[str, dict[tuple[str, str], Resource | Prompt]] = {k: {} for k in CONTENT_KINDS}
        self._content_version: dict[str, int] = dict.fromkeys(CONTENT_KINDS, 0)
        self._listeners: list[Listener] = []
        self._views: dict[str, _View] = {}
        self._loaded_kinds: set[str] = set()
        self._ready = False
        self._version = 0

    # -- reads ----------------------------------------------------------------
    @property
    def version(self) -> int:
        """Bumps on every change of the tools or tool sets."""
        return self._version

    @property
    def ready(self) -> bool:
        """True once a first full load is done (both kinds re-listed, or :meth:`mark_ready`)."""
        return self._ready

    def tools(self, tenant: str) -> list[Tool]:
        """The tenant's tools (resources, then federated ones), sorted by name."""
        return list(self._view(tenant).ordered)

    def tool(self, tenant: str, name: str) -> Tool | None:
        return self._view(tenant).by_name.get(name)

    def tenants(self) -> list[str]:
        with self._lock:
            names = {t for t, _ in self._tools} | {t for t, _ in self._federated} | {t for t, _ in self._imported}
        return sorted(names)

    def tool_resource(self, tenant: str, name: str) -> Tool | None:
        """The Tool resource of that name, never a federated or imported namesake."""
        return self._tools.get((tenant, name))

    def imports(self) -> list[tuple[str, str]]:
        """(tenant, name) of every OpenAPIImport entry that has Tools here."""
        with self._lock:
            return sorted(self._imported)

    def imported(self, tenant: str, name: str) -> tuple[Tool, ...]:
        """The Tools one OpenAPIImport entry stands for (empty when it has none)."""
        return self._imported.get((tenant, name), ())

    def toolsets(self, tenant: str | None = None) -> list[ToolSet]:
        with self._lock:
            sets = list(self._toolsets.values())
        return sorted((s for s in sets if tenant is None or s.tenant == tenant), key=lambda s: s.key)

    def toolset(self, tenant: str, name: str) -> ToolSet | None:
        return self._toolsets.get((tenant, name))

    def toolset_status(self, tenant: str, name: str) -> ToolSetStatus:
        return self._toolset_status.get((tenant, name), ToolSetStatus())

    def content_version(self, kind: str) -> int:
        """Bumps on every change of the ``Resource`` (or ``Prompt``) entries."""
        return self._content_version[kind]

    def resources(self, tenant: str) -> list[Resource]:
        """The tenant's Resource entries, sorted by name."""
        with self._lock:
            found = [r for (t, _), r in self._content["Resource"].items() if t == tenant and isinstance(r, Resource)]
        return sorted(found, key=lambda r: r.name)

    def all_resources(self) -> list[Resource]:
        """Every tenant's Resource entries."""
        with self._lock:
            return [r for r in self._content["Resource"].values() if isinstance(r, Resource)]

    def prompts(self, tenant: str) -> list[Prompt]:
        """The tenant's Prompt entries, sorted by name."""
        with self._lock:
            found = [p for (t, _), p in self._content["Prompt"].items() if t == tenant and isinstance(p, Prompt)]
        return sorted(found, key=lambda p: p.name)

    def prompt(self, tenant: str, name: str) -> Prompt | None:
        found = self._content["Prompt"].get((tenant, name))
        return found if isinstance(found, Prompt) else None

    def errors(self) -> dict[ResourceKey, ResourceError]:
        """Why each refused resource was refused, keyed by (kind, namespace, name)."""
        with self._lock:
            return dict(self._errors)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "tools": len(self._tools),
                "federated_tools": sum(len(v) for v in self._federated.values()),
                "imported_tools": sum(len(v) for v in self._imported.values()),
                "toolsets": len(self._toolsets),
                "resources": len(self._content["Resource"]),
                "prompts": len(self._content["Prompt"]),
                "errors": len(self._errors),
            }

    # -- writes from sources --------------------------------------------------
    def apply(self, manifest: Mapping[str, Any]) -> ResourceError | None:
        """Add or replace one resource; an invalid one is refused and the previous good one kept."""
        kind, namespace, name = _identity(manifest)
        try:
            resource = self._parse(kind, manifest)
        except ResourceError as err:
            with self._lock:
                self._errors[(kind, namespace, name)] = err
            _log.warning("refused %s %s/%s: %s", kind or "resource", namespace, name, err)
            return err
        with self._lock:
            self._errors.pop((kind, resource.tenant, resource.name), None)
            changed = self._put(resource)
        if changed:
            self._changed()
        return None

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Remove one resource (unknown ones are ignored)."""
        with self._lock:
            self._errors.pop((kind, namespace, name), None)
            changed = self._remove(kind, (namespace, name))
        if changed:
            self._changed()

    def replace_all(
        self, kind: str, manifests: Iterable[Mapping[str, Any]], namespaces: set[str] | None = None
    ) -> dict[tuple[str, str], ResourceError]:
        """A full re-list of one kind: resources absent from ``manifests`` are removed.

        ``namespaces`` limits the re-list to those namespaces (None = all). A
        listed but invalid resource keeps its previous good version. Returns the
        errors by (namespace, name).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        parsed: list[Entry] = []
        errors: dict[tuple[str, str], ResourceError] = {}
        listed: set[tuple[str, str]] = set()
        for manifest in manifests:
            _, namespace, name = _identity(manifest)
            listed.add((namespace, name))
            try:
                parsed.append(self._parse(kind, manifest))
            except ResourceError as err:
                errors[(namespace, name)] = err
        with self._lock:
            store: Mapping[tuple[str, str], Entry]
            if kind in CONTENT_KINDS:
                store = self._content[kind]
            else:
                store = self._tools if kind == "Tool" else self._toolsets
            in_scope = [k for k in store if namespaces is None or k[0] in namespaces]
            changed = False
            for key in in_scope:
                if key not in listed:
                    changed = self._remove(kind, key) or changed
            for resource in parsed:
                changed = self._put(resource) or changed
            stale = [k for k in self._errors if k[0] == kind and (namespaces is None or k[1] in namespaces)]
            for rkey in stale:
                del self._errors[rkey]
            for (namespace, name), error in errors.items():
                self._errors[(kind, namespace, name)] = error
            self._loaded_kinds.add(kind)
            # Tools decide readiness; a source re-lists Resource and Prompt too, ready or not.
            if not self._ready and self._loaded_kinds.issuperset(("Tool", "ToolSet")):
                self._ready = True
        for (namespace, name), error in errors.items():
            _log.warning("refused %s %s/%s: %s", kind, namespace, name, error)
        if changed:
            self._changed()
        return errors

    def mark_ready(self) -> None:
        """Declare the first load done (a source that has nothing to list)."""
        self._ready = True

    def set_imported(self, tenant: str, name: str, tools: Iterable[Tool]) -> None:
        """Replace the Tools an OpenAPIImport entry stands for; none removes the entry."""
        key = (tenant, name)
        new = tuple(sorted(tools, key=lambda t: t.name))
        with self._lock:
            changed = self._imported.get(key, ()) != new
            if new:
                self._imported[key] = new
            else:
                self._imported.pop(key, None)
            if changed:
                self._views.pop(tenant, None)
                self._version += 1
        if changed:
            self._notify()

    def record_error(self, key: ResourceKey, error: ResourceError | None) -> None:
        """Record why a resource no kind of the registry parses was refused (None: it no longer is)."""
        with self._lock:
            if error is None:
                self._errors.pop(key, None)
            else:
                self._errors[key] = error
        if error is not None:
            _log.warning("refused %s %s/%s: %s", *key, error)

    # -- writes from federation -----------------------------------------------
    def set_federated(self, tenant: str, toolset: str, tools: Iterable[Tool], status: ToolSetStatus) -> None:
        """Replace the tools discovered for a ToolSet (empty when its upstream is gone)."""
        key = (tenant, toolset)
        new = tuple(sorted(tools, key=lambda t: t.name))
        with self._lock:
            if key not in self._toolsets:
                return  # deleted while discovery ran
            self._toolset_status[key] = status
            changed = self._federated.get(key, ()) != new
            if new:
                self._federated[key] = new
            else:
                self._federated.pop(key, None)
            if changed:
                self._views.pop(tenant, None)
                self._version += 1
        if changed:
            self._notify()

    # -- change listeners -----------------------------------------------------
    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback()`` after every change; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    # -- internals ------------------------------------------------------------
    def _parse(self, kind: str, manifest: Mapping[str, Any]) -> Entry:
        if isinstance(manifest, RefusedManifest):
            raise manifest.error
        if kind not in KINDS:
            raise ResourceError("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        # A full re-list repeats thousands of unchanged resources: reuse their parse.
        key = _identity(manifest)
        fingerprint = _fingerprint(manifest)
        hit = self._parsed.get(key)
        if fingerprint is not None and hit is not None and hit[0] == fingerprint:
            rv = _resource_version(manifest)
            return hit[1] if hit[1].resource_version == rv else dataclasses.replace(hit[1], resource_version=rv)
        resource: Entry = _PARSERS[kind](manifest)
        if fingerprint is not None:
            with self._lock:
                self._parsed[key] = (fingerprint, resource)
        return resource

    def _put(self, resource: Entry) -> bool:
        """Store a resource (lock held); True when it changed anything visible."""
        if isinstance(resource, Resource | Prompt):
            return self._put_content(resource)
        store: dict[tuple[str, str], Any] = self._tools if isinstance(resource, Tool) else self._toolsets
        old = store.get(resource.key)
        store[resource.key] = resource
        if old is not None and _same(old, resource):
            return False
        if isinstance(resource, ToolSet) and old is not None:
            # Selection or prefix changed: discovered tools are renamed on the next sync.
            self._federated.pop(resource.key, None)
        self._views.pop(resource.tenant, None)
        self._version += 1
        return True

    def _put_content(self, entry: Resource | Prompt) -> bool:
        kind = "Resource" if isinstance(entry, Resource) else "Prompt"
        store = self._content[kind]
        old = store.get(entry.key)
        store[entry.key] = entry
        if old is not None and _same(old, entry):
            return False
        self._content_version[kind] += 1
        return True

    def _remove(self, kind: str, key: tuple[str, str]) -> bool:
        self._parsed.pop((kind, key[0], key[1]), None)
        if kind in CONTENT_KINDS:
            if self._content[kind].pop(key, None) is None:
                return False
            self._content_version[kind] += 1
            return True
        if kind == "Tool":
            if self._tools.pop(key, None) is None:
                return False
        else:
            if self._toolsets.pop(key, None) is None:
                return False
            self._federated.pop(key, None)
            self._toolset_status.pop(key, None)
        self._views.pop(key[0], None)
        self._version += 1
        return True

    def _view(self, tenant: str) -> _View:
        view = self._views.get(tenant)
        if view is not None:
            return view
        with self._lock:
            by_name = {t.name: t for (ten, _), t in self._tools.items() if ten == tenant}
            for (ten, entry), imported in sorted(self._imported.items()):
                if ten != tenant:
                    continue
                for tool in imported:
                    # A Tool resource (or an earlier import) wins over an imported tool of the same name.
                    if tool.name in by_name:
                        self._errors[("OpenAPIImport", tenant, entry)] = ResourceError(
                            "spec.openapi", f"tool {tool.name!r} clashes with another tool of the tenant; hidden"
                        )
                        continue
                    by_name[tool.name] = tool
            for (ten, set_name), discovered in sorted(self._federated.items()):
                if ten != tenant:
                    continue
                for tool in discovered:
                    # A Tool resource wins over a federated tool of the same name.
                    if tool.name in by_name:
                        self._errors[("ToolSet", tenant, set_name)] = ResourceError(
                            "spec.tools", f"tool {tool.name!r} clashes with a Tool of the tenant; hidden"
                        )
                        continue
                    by_name[tool.name] = tool
            view = _View(ordered=sorted(by_name.values(), key=lambda t: t.name), by_name=by_name)
            self._views[tenant] = view
        return view

    def _changed(self) -> None:
        self._notify()

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for cb in listeners:
            try:
                cb()
            except Exception:
                _log.exception("registry listener failed")
