"""Which upstream tools a ToolSet exposes, and under which names."""

from __future__ import annotations

import mcp_types as types

from link.registry import parse_toolset
from link.registry.model import thaw
from mcp_server.federation import federated_tools
from tests.unit.registry.test_registry_model import toolset_manifest

REMOTE = [
    types.Tool(name="search", description="Search the KB", input_schema={"type": "object", "properties": {
        "q": {"type": "string"}}}, annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(name="delete", description="Delete", input_schema={"type": "object"}),
    types.Tool(name="get", title="Get one", input_schema={"type": "object"}),
]


def test_everything_under_the_prefix_when_nothing_is_selected() -> None:
    ts = parse_toolset(toolset_manifest())
    tools = federated_tools(ts, REMOTE)
    assert [t.name for t in tools] == ["kb_search", "kb_delete", "kb_get"]
    search = tools[0]
    assert search.federated and search.toolset == "kb" and search.remote_name == "search"
    assert search.tenant == "tenant-acme" and search.description == "Search the KB"
    assert thaw(search.input_schema)["properties"] == {"q": {"type": "string"}}
    assert search.annotations["readOnlyHint"] is True
    assert tools[2].display_name == "Get one" and tools[2].description == "get"


def test_selection_aliases_and_disabled_tools() -> None:
    ts = parse_toolset(toolset_manifest(tools=[{"name": "search", "alias": "find"},
                                               {"name": "delete", "enabled": False}]))
    assert [(t.name, t.remote_name) for t in federated_tools(ts, REMOTE)] == [("find", "search")]
