"""Where one list/watch loop puts what it sees: a registry kind, or OpenAPIImport entries.

A :class:`Feed` is the loop's only view of the registry: a full list replaces
its scope, an event applies or deletes one object, and the status writer asks
it which good generation is still served and what else the status should say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from link.registry.content import Prompt, Resource
from link.registry.model import ResourceError, Tool, ToolSet
from link.registry.registry import ToolRegistry

__all__ = ["Feed", "RegistryFeed"]

Errors = dict[tuple[str, str], ResourceError]  # (namespace, name) -> why it was refused


class Feed(Protocol):
    """What a list/watch loop of one kind feeds."""

    @property
    def kind(self) -> str: ...

    def relist(self, manifests: Iterable[Mapping[str, Any]], scope: set[str] | None) -> Errors:
        """A full list of ``scope`` (None: every namespace): what is absent goes away."""
        ...

    def apply(self, manifest: Mapping[str, Any]) -> ResourceError | None:
        """One object added or changed; a refused one keeps its previous good version."""
        ...

    def delete(self, namespace: str, name: str) -> None: ...

    def serving_generation(self, namespace: str, name: str) -> int | None:
        """The generation still served while a newer one is refused (None: nothing served)."""
        ...

    def status_fields(self, namespace: str, name: str) -> dict[str, Any]:
        """Status fields of this kind beside Link's verdict (empty for most kinds)."""
        ...


class RegistryFeed:
    """One of the registry's own kinds (Tool, ToolSet, Resource, Prompt)."""

    def __init__(self, registry: ToolRegistry, kind: str) -> None:
        self._registry = registry
        self._kind = kind

    @property
    def kind(self) -> str:
        return self._kind

    def relist(self, manifests: Iterable[Mapping[str, Any]], scope: set[str] | None) -> Errors:
        return self._registry.replace_all(self._kind, manifests, scope)

    def apply(self, manifest: Mapping[str, Any]) -> ResourceError | None:
        return self._registry.apply(manifest)

    def delete(self, namespace: str, name: str) -> None:
        self._registry.delete(self._kind, namespace, name)

    def serving_generation(self, namespace: str, name: str) -> int | None:
        kept: Tool | ToolSet | Resource | Prompt | None
        registry = self._registry
        if self._kind == "ToolSet":
            kept = registry.toolset(namespace, name)
        elif self._kind == "Resource":
            kept = next((r for r in registry.resources(namespace) if r.name == name), None)
        elif self._kind == "Prompt":
            kept = registry.prompt(namespace, name)
        else:
            kept = registry.tool_resource(namespace, name)  # not a federated or imported namesake
        return kept.generation if kept is not None else None

    def status_fields(self, namespace: str, name: str) -> dict[str, Any]:
        return {}
