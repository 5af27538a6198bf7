"""Prometheus metrics of the MCP server (registered on ``link.metrics.REGISTRY``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from link.metrics import LATENCY_BUCKETS, REGISTRY

# Tool and tenant come from the registry (an unknown tool is counted as tool=""), so both stay bounded.
TOOL_CALLS = Counter(
    "stoa_link_mcp_tool_calls_total",
    "MCP tool calls, by transport, outcome (success = answered without error), tenant and tool.",
    ["transport", "outcome", "tenant", "tool"],
    registry=REGISTRY,
)
TOOL_CALL_SECONDS = Histogram(
    "stoa_link_mcp_tool_call_seconds",
    "Time to answer one tool call, upstream included, by outcome, tenant and tool.",
    ["outcome", "tenant", "tool"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOOL_LISTS = Counter(
    "stoa_link_mcp_tool_lists_total",
    "tools/list answers, by whether the caller's filtered list came from the cache.",
    ["cache"],
    registry=REGISTRY,
)
SESSIONS = Gauge(
    "stoa_link_mcp_sessions",
    "MCP sessions that receive list-changed notifications.",
    registry=REGISTRY,
)
TOOLSETS_CONNECTED = Gauge(
    "stoa_link_mcp_toolsets_connected",
    "Federated ToolSets whose upstream MCP server is connected.",
    registry=REGISTRY,
)
