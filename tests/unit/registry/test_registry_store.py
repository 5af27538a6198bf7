"""ToolRegistry: last good versions, errors, full re-lists, change listeners, federated tools."""

from __future__ import annotations

import threading
from typing import Any

from link.registry import Tool, ToolRegistry, ToolSetStatus
from tests.unit.registry.test_registry_model import tool_manifest, toolset_manifest


def named(name: str, namespace: str = "tenant-acme", **spec: Any) -> dict[str, Any]:
    m = tool_manifest(**spec)
    m["metadata"] = {"name": name, "namespace": namespace}
    return m


def test_apply_adds_and_tools_are_listed_per_tenant_in_name_order() -> None:
    reg = ToolRegistry()
    for n in ("zeta", "alpha"):
        assert reg.apply(named(n)) is None
    reg.apply(named("other", namespace="tenant-b"))
    assert [t.name for t in reg.tools("tenant-acme")] == ["alpha", "zeta"]
    assert [t.name for t in reg.tools("tenant-b")] == ["other"]
    assert reg.tool("tenant-acme", "other") is None
    assert reg.tenants() == ["tenant-acme", "tenant-b"]


def test_an_invalid_update_keeps_the_last_good_version_and_records_why() -> None:
    reg = ToolRegistry()
    reg.apply(named("t", description="v1"))
    version = reg.version
    bad = named("t", description="v2")
    del bad["spec"]["endpoint"]
    err = reg.apply(bad)
    assert err is not None and err.field == "spec.endpoint"
    assert reg.tool("tenant-acme", "t").description == "v1"  # type: ignore[union-attr]
    assert reg.version == version
    assert str(reg.errors()[("Tool", "tenant-acme", "t")]) == "spec.endpoint: required"
    # A good version clears the error.
    assert reg.apply(named("t", description="v3")) is None
    assert reg.errors() == {}
    assert reg.tool("tenant-acme", "t").description == "v3"  # type: ignore[union-attr]


def test_an_unknown_kind_is_refused_without_harm() -> None:
    reg = ToolRegistry()
    err = reg.apply({"apiVersion": "gostoa.dev/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}})
    assert err is not None and err.field == "kind"
    assert reg.counts()["tools"] == 0


def test_version_bumps_on_change_only_and_a_status_only_update_is_not_a_change() -> None:
    reg = ToolRegistry()
    seen: list[int] = []
    reg.subscribe(lambda: seen.append(reg.version))
    m = named("t")
    m["metadata"]["resourceVersion"] = "1"
    reg.apply(m)
    m2 = named("t")
    m2["metadata"]["resourceVersion"] = "2"  # e.g. Link wrote status: same spec
    reg.apply(m2)
    assert seen == [1]
    assert reg.tool("tenant-acme", "t").resource_version == "2"  # type: ignore[union-attr]
    reg.apply(named("t", description="changed"))
    reg.delete("Tool", "tenant-acme", "t")
    reg.delete("Tool", "tenant-acme", "t")  # unknown: no change
    assert seen == [1, 2, 3]


def test_unsubscribe_and_a_failing_listener_does_not_stop_the_others() -> None:
    reg = ToolRegistry()
    calls: list[str] = []

    def boom() -> None:
        raise RuntimeError("listener bug")

    reg.subscribe(boom)
    unsubscribe = reg.subscribe(lambda: calls.append("a"))
    reg.apply(named("t"))
    unsubscribe()
    reg.apply(named("u"))
    assert calls == ["a"]


def test_replace_all_removes_absent_resources_keeps_last_good_of_invalid_ones_and_reports() -> None:
    reg = ToolRegistry()
    reg.replace_all("Tool", [named("keep"), named("drop"), named("fix", description="good")])
    bad = named("fix")
    del bad["spec"]["displayName"]
    errors = reg.replace_all("Tool", [named("keep"), bad, named("new")])
    assert [t.name for t in reg.tools("tenant-acme")] == ["fix", "keep", "new"]
    assert reg.tool("tenant-acme", "fix").description == "good"  # type: ignore[union-attr]
    assert list(errors) == [("tenant-acme", "fix")] and errors[("tenant-acme", "fix")].field == "spec.displayName"
    assert ("Tool", "tenant-acme", "fix") in reg.errors()


def test_replace_all_limited_to_namespaces_leaves_the_others_alone() -> None:
    reg = ToolRegistry()
    reg.replace_all("Tool", [named("a", "ns1"), named("b", "ns2")])
    reg.replace_all("Tool", [], namespaces={"ns1"})
    assert reg.tools("ns1") == [] and [t.name for t in reg.tools("ns2")] == ["b"]


def test_ready_after_both_kinds_were_listed_or_when_marked() -> None:
    reg = ToolRegistry()
    reg.replace_all("Tool", [])
    assert not reg.ready
    reg.replace_all("ToolSet", [])
    assert reg.ready
    other = ToolRegistry()
    other.mark_ready()
    assert other.ready


def fed(name: str, toolset: str = "kb") -> Tool:
    return Tool(tenant="tenant-acme", name=name, display_name=name, description=name,
                endpoint="https://mcp.internal/mcp", toolset=toolset, remote_name=name.removeprefix("kb_"))


def test_federated_tools_join_the_tenant_list_and_leave_with_their_toolset() -> None:
    reg = ToolRegistry()
    reg.apply(named("local"))
    reg.apply(toolset_manifest())
    reg.set_federated("tenant-acme", "kb", [fed("kb_search")], ToolSetStatus(connected=True, tool_count=1))
    assert [t.name for t in reg.tools("tenant-acme")] == ["kb_search", "local"]
    assert reg.tool("tenant-acme", "kb_search").federated  # type: ignore[union-attr]
    assert reg.toolset_status("tenant-acme", "kb").connected
    # The upstream went away: its tools leave the list.
    reg.set_federated("tenant-acme", "kb", [], ToolSetStatus(connected=False, error="gone"))
    assert [t.name for t in reg.tools("tenant-acme")] == ["local"]
    reg.set_federated("tenant-acme", "kb", [fed("kb_search")], ToolSetStatus(connected=True))
    reg.delete("ToolSet", "tenant-acme", "kb")
    assert [t.name for t in reg.tools("tenant-acme")] == ["local"]
    # Discovery finishing after the ToolSet was deleted changes nothing.
    reg.set_federated("tenant-acme", "kb", [fed("kb_search")], ToolSetStatus(connected=True))
    assert [t.name for t in reg.tools("tenant-acme")] == ["local"]


def test_a_tool_resource_wins_over_a_federated_tool_of_the_same_name() -> None:
    reg = ToolRegistry()
    reg.apply(named("kb_search"))
    reg.apply(toolset_manifest())
    reg.set_federated("tenant-acme", "kb", [fed("kb_search"), fed("kb_other")], ToolSetStatus(connected=True))
    assert not reg.tool("tenant-acme", "kb_search").federated  # type: ignore[union-attr]
    assert reg.tool("tenant-acme", "kb_other").federated  # type: ignore[union-attr]
    assert ("ToolSet", "tenant-acme", "kb") in reg.errors()


def test_concurrent_writers_from_threads_leave_a_consistent_registry() -> None:
    reg = ToolRegistry()

    def writer(prefix: str) -> None:
        for i in range(100):
            reg.apply(named(f"{prefix}{i}"))
            reg.tools("tenant-acme")
            if i % 3 == 0:
                reg.delete("Tool", "tenant-acme", f"{prefix}{i}")

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    expected = {f"{p}{i}" for p in "abcd" for i in range(100) if i % 3}
    assert {t.name for t in reg.tools("tenant-acme")} == expected
