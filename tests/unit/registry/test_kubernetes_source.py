"""KubernetesSource against a local server speaking the Kubernetes list/watch protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s_client

from link.registry import build_source
from link.registry.kubernetes import KubernetesConfigError, KubernetesSource
from link.registry.kubernetes.api import PLURALS
from link.registry.kubernetes.source import WATCHED_KINDS
from link.registry.model import Tool
from link.registry.registry import ToolRegistry, ToolSetStatus
from link.settings import RegistrySettings, load_settings
from tests.harness.kube_api import FakeKubeApi
from tests.unit.registry.kube_support import (
    ALL_TOOLS,
    TOKEN,
    Factory,
    client_for,
    eventually,
    names,
    quiet,
    status,
    tool,
    toolset,
)
from tests.unit.registry.test_registry_content import prompt, resource

# -- list, then watch ---------------------------------------------------------


async def test_lists_then_follows_add_modify_delete(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("get-item"))
    kube.apply(tool("other-item", ns="globex"))
    kube.apply(toolset("kb"))
    src, registry = await make_source()

    # start() waits for the first list of both kinds.
    assert src.readiness()[0] is True
    assert registry.ready
    assert names(registry) == ["get-item"]
    assert names(registry, "globex") == ["other-item"]
    assert [s.name for s in registry.toolsets("acme")] == ["kb"]

    kube.apply(tool("create-item", method="POST"))
    await eventually(lambda: "create-item" in names(registry), what="ADDED")
    created = registry.tool("acme", "create-item")
    assert created is not None and created.method == "POST"

    kube.apply(tool("get-item", description="Fetch one item, fresh"))
    await eventually(lambda: registry.tool("acme", "get-item").description == "Fetch one item, fresh",  # type: ignore[union-attr]
                     what="MODIFIED")
    assert registry.tool("acme", "get-item").generation == 2  # type: ignore[union-attr]

    kube.delete("Tool", "globex", "other-item")
    kube.delete("ToolSet", "acme", "kb")
    await eventually(lambda: names(registry, "globex") == [] and registry.toolsets("acme") == [],
                     what="DELETED")
    assert names(registry) == ["create-item", "get-item"]


async def test_list_is_paged(kube: FakeKubeApi, make_source: Factory) -> None:
    for i in range(5):
        kube.apply(tool(f"t{i}"))
    _src, registry = await make_source(page_size=2)
    assert names(registry) == [f"t{i}" for i in range(5)]
    tool_lists = [r for r in kube.list_requests() if r.path.endswith("/tools")]
    assert len(tool_lists) == 3
    assert [r.query.get("limit") for r in tool_lists] == ["2", "2", "2"]
    assert sum(1 for r in tool_lists if r.query.get("continue")) == 2


async def test_expired_continue_token_starts_the_list_over(kube: FakeKubeApi, make_source: Factory) -> None:
    for i in range(3):
        kube.apply(tool(f"t{i}"))
    kube.fail_next("continue", 410)
    _src, registry = await make_source(page_size=1)
    assert names(registry) == ["t0", "t1", "t2"]
    tool_lists = [r for r in kube.list_requests() if r.path.endswith("/tools")]
    # page 1, page 2 refused with 410, then the whole list again: pages 1, 2, 3.
    assert [bool(r.query.get("continue")) for r in tool_lists] == [False, True, False, True, True]


async def test_namespaces_limit_what_is_watched(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("mine"))
    kube.apply(tool("theirs", ns="globex"))
    src, registry = await make_source(namespaces=["acme"])
    assert names(registry) == ["mine"]
    assert names(registry, "globex") == []
    paths = {r.path for r in kube.requests}
    assert "/apis/gostoa.dev/v1alpha1/namespaces/acme/tools" in paths
    assert not any("globex" in p or p.endswith("v1alpha1/tools") for p in paths)

    kube.apply(tool("theirs-2", ns="globex"))
    kube.apply(tool("mine-2"))
    await eventually(lambda: "mine-2" in names(registry))
    assert names(registry, "globex") == []
    assert set(src.resource_versions()) == {"tools in acme", "toolsets in acme", "resources in acme",
                                            "prompts in acme", "openapiimports in acme"}


# -- status -------------------------------------------------------------------


async def test_status_reports_ready_and_observed_generation(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("get-item"))
    kube.apply(toolset("kb"))
    await make_source()
    await eventually(lambda: status(kube, "Tool", "get-item").get("ready") is True)
    st = status(kube, "Tool", "get-item")
    assert st["message"] == ""
    assert st["observedGeneration"] == 1
    [cond] = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Ready", "True", "Accepted")
    assert cond["observedGeneration"] == 1
    await eventually(lambda: status(kube, "ToolSet", "kb").get("ready") is True)
    write = kube.writes_for("Tool", "acme", "get-item")[0]
    assert write.method == "PATCH" and write.content_type == "application/merge-patch+json"

    kube.apply(tool("get-item", description="v2"))
    await eventually(lambda: status(kube, "Tool", "get-item").get("observedGeneration") == 2)
    assert status(kube, "Tool", "get-item")["ready"] is True


async def test_invalid_resource_is_skipped_with_a_precise_status(
        kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("get-item"))
    # Passes the CRD schema but not Link: the placeholder is not an argument.
    kube.apply(tool("broken", endpoint="https://api.example/items/{itemId}"))
    _src, registry = await make_source()

    assert names(registry) == ["get-item"]
    assert ("Tool", "acme", "broken") in registry.errors()
    await eventually(lambda: status(kube, "Tool", "broken").get("ready") is False)
    st = status(kube, "Tool", "broken")
    # The message is the registry's precise error, naming the field.
    assert st["message"] == str(registry.errors()[("Tool", "acme", "broken")])
    assert st["message"].startswith("spec.endpoint: ") and "{itemId}" in st["message"]
    assert st["conditions"][0]["reason"] == "Invalid" and st["conditions"][0]["status"] == "False"

    # A bad edit of a served tool: the previous good version stays, the status says why.
    kube.apply(tool("get-item", method="FETCH"))
    await eventually(lambda: status(kube, "Tool", "get-item").get("observedGeneration") == 2)
    st = status(kube, "Tool", "get-item")
    assert st["ready"] is False
    assert st["message"].startswith("spec.method: ") and "FETCH" in st["message"]
    assert st["message"].endswith("(still serving generation 1)")
    served = registry.tool("acme", "get-item")
    assert served is not None and served.method == "GET" and served.generation == 1

    # Fixing it makes it ready again.
    kube.apply(tool("broken", endpoint="https://api.example/items/{id}"))
    await eventually(lambda: status(kube, "Tool", "broken").get("ready") is True)
    assert status(kube, "Tool", "broken")["message"] == ""
    assert "broken" in names(registry)
    assert ("Tool", "acme", "broken") not in registry.errors()


async def test_status_is_written_only_when_it_changes(kube: FakeKubeApi, make_source: Factory) -> None:
    for n in ("a", "b", "c"):
        kube.apply(tool(n))
    src, _registry = await make_source()
    await eventually(lambda: all(status(kube, "Tool", n).get("ready") for n in ("a", "b", "c")))
    await eventually(lambda: not src.status_writes_pending())

    # Our writes came back as MODIFIED events; none of them caused another write.
    kube.apply(tool("b", description="changed"))
    await eventually(lambda: status(kube, "Tool", "b").get("observedGeneration") == 2)
    await eventually(lambda: not src.status_writes_pending())
    assert [len(kube.writes_for("Tool", "acme", n)) for n in ("a", "b", "c")] == [1, 2, 1]

    # A second Link (or a restart) finds every status already right and writes nothing.
    writes = len(kube.status_writes)
    src2, _ = await make_source()
    await eventually(lambda: not src2.status_writes_pending())
    assert len(kube.status_writes) == writes


async def test_status_keeps_other_writers_conditions(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(toolset("kb"))
    src, _ = await make_source()
    await eventually(lambda: status(kube, "ToolSet", "kb").get("ready") is True)
    await eventually(lambda: not src.status_writes_pending())
    ready_cond = status(kube, "ToolSet", "kb")["conditions"][0]
    # Federation reports on the upstream in the same status; a later spec change must keep it.
    obj = kube.get("ToolSet", "acme", "kb")
    assert obj is not None
    connected = {"type": "Connected", "status": "True", "reason": "Synced", "message": ""}
    conditions = [*obj["status"]["conditions"], connected]
    obj["status"] = {**obj["status"], "connected": True, "conditions": conditions}
    c = client_for(kube)
    k8s_client.CustomObjectsApi(c).replace_namespaced_custom_object_status(
        "gostoa.dev", "v1alpha1", "acme", "toolsets", "kb", obj)
    kube.apply(toolset("kb", prefix="docs_"))
    await eventually(lambda: status(kube, "ToolSet", "kb").get("observedGeneration") == 2)
    st = status(kube, "ToolSet", "kb")
    assert st["connected"] is True
    assert [c["type"] for c in st["conditions"]] == ["Connected", "Ready"]
    # Still ready: the transition time did not move.
    assert st["conditions"][1]["lastTransitionTime"] == ready_cond["lastTransitionTime"]


async def test_federation_state_of_a_toolset_is_written(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(toolset("kb"))
    src, registry = await make_source()
    await eventually(lambda: status(kube, "ToolSet", "kb").get("ready") is True)
    assert "connected" not in status(kube, "ToolSet", "kb")  # federation has not reported yet

    found = [Tool(tenant="acme", name=f"kb_{n}", display_name=n, description=n, endpoint="https://mcp.example/mcp",
                  toolset="kb", remote_name=n) for n in ("search", "fetch")]
    registry.set_federated("acme", "kb", found, ToolSetStatus(
        connected=True, tool_count=2, discovered_tools=("search", "fetch"), last_sync=1_700_000_000.0))
    await eventually(lambda: status(kube, "ToolSet", "kb").get("connected") is True)
    st = status(kube, "ToolSet", "kb")
    assert (st["toolCount"], st["discoveredTools"], st["lastSync"], st["error"]) == (
        2, ["search", "fetch"], "2023-11-14T22:13:20Z", "")
    assert st["ready"] is True  # Link's verdict is still there

    registry.set_federated("acme", "kb", [], ToolSetStatus(connected=False, error="upstream went away"))
    await eventually(lambda: status(kube, "ToolSet", "kb").get("connected") is False)
    st = status(kube, "ToolSet", "kb")
    assert (st["toolCount"], st["discoveredTools"], st["error"]) == (0, [], "upstream went away")
    await eventually(lambda: not src.status_writes_pending())


async def test_a_failed_status_write_is_retried_behind_the_backoff(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.fail_next("patch", 500, times=2)
    kube.apply(tool("a"))
    src, _registry = await make_source()
    await eventually(lambda: status(kube, "Tool", "a").get("ready") is True, what="written on the third try")
    await eventually(lambda: not src.status_writes_pending())
    # Two refused patches, then the one that landed: the same patch, not a pile of them.
    assert len(kube.writes_for("Tool", "acme", "a")) == 1


async def test_status_writes_give_up_after_five_tries(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.fail_next("patch", 503, times=5)
    kube.apply(tool("a"))
    src, registry = await make_source()
    # 0.2-0.4 s, then 0.4-0.8, 0.8-1.6, 1.6-3.2 between tries: bounded, then the writer lets go.
    await eventually(lambda: not src.status_writes_pending(), within=15.0, what="given up")
    assert kube.writes_for("Tool", "acme", "a") == [] and status(kube, "Tool", "a") == {}
    assert names(registry) == ["a"]  # serving never depended on the status write
    kube.apply(tool("a", description="changed"))  # the next verdict is written again
    await eventually(lambda: status(kube, "Tool", "a").get("observedGeneration") == 2)


async def test_status_writes_can_be_turned_off(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("a"))
    _src, registry = await make_source(write_status=False)
    kube.apply(tool("b"))
    await eventually(lambda: "b" in names(registry))
    assert kube.status_writes == []


# -- trouble --------------------------------------------------------------------


async def test_gone_during_watch_lists_again(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("kept"))
    kube.apply(tool("removed"))
    _src, registry = await make_source()
    await eventually(lambda: kube.open_watches() == len(WATCHED_KINDS), what="both watches open")
    lists_before = len([r for r in kube.list_requests() if r.path.endswith("/tools")])

    # Changes whose events were compacted away: only a new list can reveal them.
    kube.delete("Tool", "acme", "removed", silent=True)
    kube.apply(tool("appeared"), silent=True)
    kube.apply(tool("kept", description="changed behind the watch"), silent=True)
    kube.expire_history()  # open watches get an ERROR event with a 410 Status

    await eventually(lambda: names(registry) == ["appeared", "kept"], what="re-list")
    assert registry.tool("acme", "kept").description == "changed behind the watch"  # type: ignore[union-attr]
    assert len([r for r in kube.list_requests() if r.path.endswith("/tools")]) == lists_before + 1
    # It watches again from the new list's resourceVersion and keeps following changes.
    kube.apply(tool("later"))
    await eventually(lambda: "later" in names(registry))


async def test_gone_when_resuming_lists_again(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("a"))
    _src, registry = await make_source()
    await eventually(lambda: kube.open_watches() == len(WATCHED_KINDS))
    lists_before = len(kube.list_requests())
    kube.apply(tool("b"), silent=True)
    # Every kind's resumed watch is refused with 410 Gone, once. One fault per kind: a kind that lists
    # again at once (410 needs no backoff) must not take another kind's while that one backs off.
    for kind in WATCHED_KINDS:
        kube.fail_next("watch", 410, plural=PLURALS[kind])
    kube.drop_watches()
    await eventually(lambda: names(registry) == ["a", "b"], what="re-list after 410")
    await eventually(lambda: len(kube.list_requests()) == lists_before + len(WATCHED_KINDS), what="every kind listed again")


async def test_dropped_connection_resumes_from_last_resource_version(
        kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("a"))
    src, registry = await make_source()
    await quiet(src, kube)
    lists_before = len(kube.list_requests())
    seen = src.resource_versions()[ALL_TOOLS]
    watches_before = len(kube.watch_requests())

    kube.drop_watches()
    kube.apply(tool("b"))
    await eventually(lambda: "b" in names(registry), what="event after reconnect")
    kube.apply(tool("c"))
    await eventually(lambda: "c" in names(registry))

    assert len(kube.list_requests()) == lists_before  # resumed, not re-listed
    resumed = [r for r in kube.watch_requests()[watches_before:] if r.path.endswith("/tools")]
    assert resumed and resumed[0].query["resourceVersion"] == seen


async def test_bookmarks_move_the_resume_point(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("a"))
    src, _registry = await make_source()
    await quiet(src, kube)
    assert all(r.query.get("allowWatchBookmarks") == "true" for r in kube.watch_requests())
    rv = kube.bookmark(advance=7)
    await eventually(lambda: src.resource_versions()[ALL_TOOLS] == str(rv), what="bookmark")
    watches_before = len(kube.watch_requests())
    kube.drop_watches()
    await eventually(lambda: any(r.path.endswith("/tools") for r in kube.watch_requests()[watches_before:]))
    resumed = [r for r in kube.watch_requests()[watches_before:] if r.path.endswith("/tools")]
    assert resumed[0].query["resourceVersion"] == str(rv)


async def test_errors_back_off_then_recover(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("a"))
    kube.fail_next("list", 500, times=3)
    _src, registry = await make_source()
    assert names(registry) == ["a"]
    # Three failed lists (whichever kind drew them) were retried: one list per kind, three more in all.
    assert len(kube.list_requests()) == len(WATCHED_KINDS) + 3


async def test_not_ready_until_listed_and_says_why(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("a"))
    kube.fail_next("list", 403, times=10_000)
    src, registry = await make_source(initial_sync_timeout_s=0.05)
    await eventually(lambda: "403" in src.readiness()[1])
    ok, detail = src.readiness()
    assert ok is False
    assert "waiting for the first list" in detail
    assert "grant list and watch on tools.gostoa.dev" in detail
    assert names(registry) == []

    kube.clear_faults()
    await eventually(lambda: src.readiness()[0], what="ready after recovery")
    assert names(registry) == ["a"]
    assert "403" not in src.readiness()[1]


async def test_missing_crd_is_named(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.fail_next("list", 404, times=10_000)
    src, _ = await make_source(initial_sync_timeout_s=0.05)
    await eventually(lambda: "404" in src.readiness()[1])
    assert "kubectl apply -f deploy/crds/" in src.readiness()[1]


async def test_wrong_token_is_not_ready(kube: FakeKubeApi, make_source: Factory) -> None:
    src, _ = await make_source(token="wrong", initial_sync_timeout_s=0.05)
    await eventually(lambda: "401" in src.readiness()[1])
    assert src.readiness()[0] is False


# -- lifecycle ----------------------------------------------------------------------


async def test_stop_ends_every_thread_and_watch(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("a"))
    src, _ = await make_source(watch_timeout_s=3600, idle_timeout_s=3600)
    await eventually(lambda: kube.open_watches() == len(WATCHED_KINDS))
    assert len(src.threads_alive()) == len(WATCHED_KINDS) + 1  # a stream per kind and the status writer
    await src.stop()
    assert src.threads_alive() == []
    await eventually(lambda: kube.open_watches() == 0, what="watch connections closed")


async def test_stop_while_the_server_is_gone(kube: FakeKubeApi, make_source: Factory) -> None:
    src, _ = await make_source(backoff_initial_s=60, backoff_max_s=60)
    await eventually(lambda: kube.open_watches() == len(WATCHED_KINDS))
    kube.stop()  # watches break; the loops sit in a backoff far longer than stop's bound
    await eventually(lambda: all(d["phase"] == "backoff" for d in src.describe().values()),
                     what="both loops in backoff")
    await src.stop()
    assert src.threads_alive() == []


async def test_kubeconfig_from_settings(kube: FakeKubeApi, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "local", "cluster": {"server": kube.url}}],
        "users": [{"name": "link", "user": {"token": TOKEN}}],
        "contexts": [{"name": "test", "context": {"cluster": "local", "user": "link"}}],
    }))
    kube.apply(tool("a"))
    settings = load_settings(env={}, overrides={"registry.source": "kubernetes",
                                                "registry.kubeconfig": str(kubeconfig)})
    registry = ToolRegistry()
    src = build_source(registry, settings)
    assert isinstance(src, KubernetesSource)
    await src.start()
    try:
        assert src.readiness()[0] is True
        assert names(registry) == ["a"]
    finally:
        await src.stop()
    assert src.threads_alive() == []


async def test_unusable_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    settings = RegistrySettings(source="kubernetes", kubeconfig=str(tmp_path / "missing"))
    src = KubernetesSource(ToolRegistry(), settings)
    with pytest.raises(KubernetesConfigError, match=r"^registry\.kubeconfig: "):
        await src.start()


def test_bad_namespace_setting_is_refused() -> None:
    settings = RegistrySettings(source="kubernetes", namespaces=["Not_A_Namespace"])
    with pytest.raises(ValueError, match=r"registry\.namespaces: 'Not_A_Namespace'"):
        KubernetesSource(ToolRegistry(), settings)


# -- Resource and Prompt entries -----------------------------------------------------


async def test_resources_and_prompts_are_listed_watched_scoped_and_get_a_status(
        kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(resource("orders", ns="acme"))
    kube.apply(resource("theirs", ns="globex", uri="app://theirs"))
    kube.apply(prompt("summarise", ns="acme"))
    _src, registry = await make_source(namespaces=["acme"])
    assert [r.name for r in registry.resources("acme")] == ["orders"]
    assert registry.resources("globex") == []  # not a watched namespace (tenant)
    assert registry.prompt("acme", "summarise") is not None
    await eventually(lambda: status(kube, "Resource", "orders").get("ready") is True)
    await eventually(lambda: status(kube, "Prompt", "summarise").get("ready") is True)
    paths = {r.path for r in kube.requests}
    assert "/apis/gostoa.dev/v1alpha1/namespaces/acme/resources" in paths
    assert not any("globex" in p for p in paths)

    # A change arrives by the watch; a bad edit keeps the good version and says why in .status.
    kube.apply(resource("orders", ns="acme", text="v2"))
    await eventually(lambda: registry.resources("acme")[0].text == "v2", what="MODIFIED")
    kube.apply(resource("orders", ns="acme", uri="no uri"))
    await eventually(lambda: status(kube, "Resource", "orders").get("ready") is False, what="refused")
    message = status(kube, "Resource", "orders")["message"]
    assert message.startswith("spec.uri: ") and message.endswith("(still serving generation 2)")
    assert registry.resources("acme")[0].text == "v2"

    kube.delete("Prompt", "acme", "summarise")
    await eventually(lambda: registry.prompt("acme", "summarise") is None, what="DELETED")
