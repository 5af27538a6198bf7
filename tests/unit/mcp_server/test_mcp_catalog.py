"""The MCP face of registry tools: schemas served as written, validation naming the field."""

from __future__ import annotations

import pytest

from link.registry import ToolRegistry, parse_tool
from mcp_server.catalog import InvalidArguments, ToolCatalog, describe
from tests.unit.mcp_server.support import tool

SCHEMA_2020 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"},
                                                         "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "items": {"type": "array", "items": {"type": "integer"}}},
    "required": ["name"],
    "additionalProperties": False,
}


def test_describe_serves_the_schema_exactly_as_written_with_title_and_annotations() -> None:
    t = parse_tool(tool("t", inputSchema=SCHEMA_2020, outputSchema={"type": "object"},
                        annotations={"readOnlyHint": True, "title": "T", "unknownHint": 1}))
    wire = describe(t)
    assert wire["inputSchema"] == SCHEMA_2020
    assert wire["outputSchema"] == {"type": "object"}
    assert wire["title"] == "T" and wire["description"] == "The t tool"
    assert wire["annotations"] == {"readOnlyHint": True, "title": "T"}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({}, "name"),
        ({"name": 3}, "name"),
        ({"name": "a", "address": {"city": 5}}, "address.city"),
        ({"name": "a", "items": [1, "x"]}, "items[1]"),
        ({"name": "a", "extra": True}, "$"),
    ],
)
def test_validation_names_the_offending_field(arguments: dict[str, object], field: str) -> None:
    reg = ToolRegistry()
    reg.apply(tool("t", inputSchema=SCHEMA_2020))
    entry = ToolCatalog(reg).find("demo", "t")
    assert entry is not None
    with pytest.raises(InvalidArguments) as err:
        entry.validate(arguments)
    assert err.value.field == field


def test_valid_arguments_pass() -> None:
    reg = ToolRegistry()
    reg.apply(tool("t", inputSchema=SCHEMA_2020))
    entry = ToolCatalog(reg).find("demo", "t")
    assert entry is not None
    entry.validate({"name": "a", "address": {"city": "Paris"}, "items": [1, 2]})


def test_entries_and_lists_are_built_once_per_version() -> None:
    reg = ToolRegistry()
    reg.apply(tool("a"))
    reg.apply(tool("b"))
    catalog = ToolCatalog(reg)
    first = catalog.tenant_entries("demo")
    assert catalog.tenant_entries("demo") is first
    assert catalog.find("demo", "a") is first[0]
    reg.apply(tool("a", description="changed"))
    second = catalog.tenant_entries("demo")
    assert second is not first
    assert second[0].wire["description"] == "changed"
    assert second[1] is first[1]  # the unchanged tool keeps its entry
