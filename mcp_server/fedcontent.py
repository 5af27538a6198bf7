"""Resources and prompts of a federated upstream, as a ToolSet exposes them.

Prompts are renamed like tools (``prefix`` + remote name, or a ``spec.prompts`` alias), and
``spec.prompts`` selects them as ``spec.tools`` selects tools (empty: all). Resources keep their
URIs (a URI names the thing itself, and clients may hold on to it); their ``name`` gets the prefix
for display; ``spec.resources`` selects them by URI, templates by URI template (empty: all).
A URI or prompt name already exposed by another ToolSet of the tenant is not exposed twice (the
first set keeps it).

The entries are MCP wire dicts, ready for ``resources/list``, ``resources/templates/list`` and
``prompts/list``; :class:`FederatedContent` also maps an exposed name or URI back to the upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mcp_types as types

from link.registry import ToolSet

__all__ = ["FederatedContent", "federated_content"]


@dataclass(slots=True)
class FederatedContent:
    """What one ToolSet federates besides tools."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    prompt_names: dict[str, str] = field(default_factory=dict)  # exposed -> remote

    def has_resource(self, uri: str) -> bool:
        """Whether ``uri`` is one of the set's resources or fits one of its templates."""
        if any(r.get("uri") == uri for r in self.resources):
            return True
        for t in self.templates:
            template = str(t.get("uriTemplate", ""))
            literal = template.split("{", 1)[0]
            if "{" in template and literal and uri.startswith(literal) and len(uri) > len(literal):
                return True
        return False


def _wire(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


def federated_content(toolset: ToolSet, resources: list[types.Resource],
                      templates: list[types.ResourceTemplate], prompts: list[types.Prompt]) -> FederatedContent:
    """The upstream's resources, templates and prompts, renamed for the set's tenant."""
    out = FederatedContent()
    for r in resources:
        wire = _wire(r)
        if not toolset.selects_resource(str(wire.get("uri", ""))):
            continue
        wire["name"] = toolset.prefix + str(wire.get("name", ""))
        out.resources.append(wire)
    for t in templates:
        wire = _wire(t)
        if not toolset.selects_resource(str(wire.get("uriTemplate", ""))):
            continue
        wire["name"] = toolset.prefix + str(wire.get("name", ""))
        out.templates.append(wire)
    for p in prompts:
        exposed = toolset.exposed_prompt(p.name)
        if exposed is None:
            continue
        wire = _wire(p)
        wire["name"] = exposed
        out.prompts.append(wire)
        out.prompt_names[exposed] = p.name
    return out
