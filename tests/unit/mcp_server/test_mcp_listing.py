"""Fast tools/list: descriptions shaped once per protocol version give exactly the SDK's answer."""

from __future__ import annotations

import pytest
from mcp_types import methods

from link.registry import parse_tool
from mcp_server.catalog import describe
from mcp_server.listing import FAST_VERSIONS, SievedTools, install, sieve_tool
from tests.unit.mcp_server.support import tool
from tests.unit.mcp_server.test_mcp_catalog import SCHEMA_2020

TOOLS = [describe(parse_tool(tool("a", inputSchema=SCHEMA_2020, outputSchema={"type": "object"},
                                  annotations={"readOnlyHint": True}))),
         describe(parse_tool(tool("b")))]


def shell(version: str) -> dict[str, object]:
    if version == "2026-07-28":
        return {"resultType": "complete", "ttlMs": 0, "cacheScope": "private"}
    return {}


@pytest.mark.parametrize("version", sorted(FAST_VERSIONS))
def test_sieved_lists_serialize_exactly_like_the_sdk(version: str) -> None:
    install()
    expected = methods.serialize_server_result("tools/list", version, {**shell(version), "tools": list(TOOLS)})
    sieved = SievedTools(version, [sieve_tool(t, version) for t in TOOLS])
    fast = methods.serialize_server_result("tools/list", version, {**shell(version), "tools": sieved})
    assert fast == expected
    assert type(fast["tools"]) is list


def test_a_list_sieved_for_another_version_takes_the_sdk_path() -> None:
    install()
    sieved = SievedTools("2025-06-18", [sieve_tool(t, "2025-06-18") for t in TOOLS])
    result = methods.serialize_server_result("tools/list", "2025-11-25", {"tools": sieved})
    assert [t["name"] for t in result["tools"]] == ["a", "b"]


def test_install_is_idempotent() -> None:
    install()
    wrapped = methods.serialize_server_result
    install()
    assert methods.serialize_server_result is wrapped
