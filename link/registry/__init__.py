"""The tool registry: Tool and ToolSet resources shared by Link and the MCP server.

``install(app)`` puts a :class:`ToolRegistry` at ``app.extras["registry"]`` and
adds the source ``registry.source`` names: ``files`` (a directory of manifests
at ``registry.path``; nothing to load when unset), ``kubernetes`` (a watch on
the Tool, ToolSet, Resource, Prompt and OpenAPIImport custom resources) or ``none``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from link.registry.content import Prompt, PromptArgument, Resource, parse_prompt, parse_resource
from link.registry.model import (
    API_VERSION,
    Inclusion,
    RefusedManifest,
    ResourceError,
    ResourceSelection,
    TokenExchange,
    Tool,
    ToolAuth,
    ToolSelection,
    ToolSet,
    ToolSetAuth,
    ToolSetUpstream,
    parse_tool,
    parse_toolset,
)
from link.registry.registry import CONTENT_KINDS, KINDS, ToolRegistry, ToolSetStatus
from link.registry.source import FileSource, RegistrySource

if TYPE_CHECKING:
    from link.app import LinkApp
    from link.settings import Settings

__all__ = [
    "API_VERSION",
    "CONTENT_KINDS",
    "KINDS",
    "FileSource",
    "Inclusion",
    "Prompt",
    "PromptArgument",
    "RefusedManifest",
    "RegistrySource",
    "Resource",
    "ResourceError",
    "ResourceSelection",
    "TokenExchange",
    "Tool",
    "ToolAuth",
    "ToolRegistry",
    "ToolSelection",
    "ToolSet",
    "ToolSetAuth",
    "ToolSetStatus",
    "ToolSetUpstream",
    "build_source",
    "install",
    "parse_prompt",
    "parse_resource",
    "parse_tool",
    "parse_toolset",
    "registry_of",
]


def build_source(registry: ToolRegistry, settings: Settings) -> RegistrySource | None:
    """The source ``settings.registry`` asks for, or None when there is nothing to load."""
    cfg = settings.registry
    if cfg.source == "files" and cfg.path:
        return FileSource(registry, cfg.path, interval=cfg.reload_interval_s)
    if cfg.source == "kubernetes":
        from link.registry.kubernetes import KubernetesSource  # the kubernetes client is heavy

        source: RegistrySource = KubernetesSource(registry, settings)
        return source
    return None


def registry_of(app: LinkApp) -> ToolRegistry:
    """The app's registry (installing one if the plug-in did not run)."""
    registry = app.extras.get("registry")
    if not isinstance(registry, ToolRegistry):
        install(app)
        registry = app.extras["registry"]
    assert isinstance(registry, ToolRegistry)
    return registry


def install(app: LinkApp) -> None:
    """Create the registry and its source; add a ready check."""
    if isinstance(app.extras.get("registry"), ToolRegistry):
        return
    registry = ToolRegistry()
    app.extras["registry"] = registry
    source = build_source(registry, app.settings)
    if source is None:
        registry.mark_ready()
    else:
        app.add_component(source)
        app.extras["registry_source"] = source

    def check() -> tuple[bool, str]:
        counts = registry.counts()
        detail = f"{counts['tools']} tools, {counts['toolsets']} toolsets, {counts['errors']} refused"
        return registry.ready, detail if registry.ready else "first load not done"

    app.ready_checks["registry"] = check
