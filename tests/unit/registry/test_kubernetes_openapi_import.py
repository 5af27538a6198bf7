"""``kind: OpenAPIImport`` from a cluster: its Tools appear, change and go with the object.

Against the local server speaking the Kubernetes list/watch protocol (the same
stand-in as the other Kubernetes source tests), through the real client.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from link.registry.registry import ToolRegistry
from tests.harness.kube_api import FakeKubeApi
from tests.unit.registry.kube_support import Factory, eventually, names, status, tool

BILLING = Path(__file__).resolve().parents[1] / "openapi" / "specs" / "billing-3.0.yaml"
ALL = ["b-create-invoice", "b-delete-invoices-by-invoice-id", "b-get-categories", "b-get-invoice",
       "b-list-invoices"]


def document() -> dict[str, Any]:
    doc = yaml.safe_load(BILLING.read_text())
    assert isinstance(doc, dict)
    return doc


def openapi_import(doc: Any, name: str = "billing", ns: str = "acme", **spec: Any) -> dict[str, Any]:
    body = {"openapi": {"document": doc}, "baseUrl": "http://127.0.0.1:9/api", "prefix": "b-"}
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "OpenAPIImport",
            "metadata": {"name": name, "namespace": ns}, "spec": body}


def imported(registry: ToolRegistry, ns: str = "acme", name: str = "billing") -> list[str]:
    return [t.name for t in registry.imported(ns, name)]


async def test_tools_appear_update_and_disappear_with_the_object(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("get-item"))
    kube.apply(openapi_import(document()))
    src, registry = await make_source()

    # The first list: the document's operations are the tenant's Tools, beside the Tool resource.
    assert src.readiness()[0] is True
    assert names(registry) == sorted([*ALL, "get-item"])
    got = registry.tool("acme", "b-get-invoice")
    assert got is not None and got.endpoint == "http://127.0.0.1:9/api/invoices/{invoiceId}"
    await eventually(lambda: status(kube, "OpenAPIImport", "billing").get("ready") is True, what="status")
    st = status(kube, "OpenAPIImport", "billing")
    assert (st["toolCount"], st["tools"], st["observedGeneration"], st["message"]) == (5, ALL, 1, "")

    # A new version of the object (an operation removed, one added, the base URL moved): the Tools follow.
    doc = document()
    del doc["paths"]["/categories"]
    doc["paths"]["/refunds"] = {"post": {"operationId": "refund", "summary": "Refund",
                                         "responses": {"200": {"description": "ok"}}}}
    kube.apply(openapi_import(doc, baseUrl="http://127.0.0.1:9/v2"))
    await eventually(lambda: "b-refund" in names(registry) and "b-get-categories" not in names(registry),
                     what="MODIFIED")
    moved = registry.tool("acme", "b-get-invoice")
    assert moved is not None and moved.endpoint == "http://127.0.0.1:9/v2/invoices/{invoiceId}"
    await eventually(lambda: status(kube, "OpenAPIImport", "billing").get("observedGeneration") == 2)
    assert status(kube, "OpenAPIImport", "billing")["toolCount"] == 5
    assert "b-refund" in status(kube, "OpenAPIImport", "billing")["tools"]

    # Deleted: its Tools go, the Tool resource stays.
    kube.delete("OpenAPIImport", "acme", "billing")
    await eventually(lambda: names(registry) == ["get-item"], what="DELETED")
    assert registry.imports() == []


async def test_the_document_as_yaml_text_and_in_several_namespaces(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(openapi_import(BILLING.read_text(), ns="acme"))
    kube.apply(openapi_import(document(), ns="globex", prefix="g-"))
    _src, registry = await make_source()
    assert names(registry) == ALL
    assert names(registry, "globex") == [n.replace("b-", "g-", 1) for n in ALL]


async def test_a_version_that_cannot_be_imported_keeps_the_last_good_tools(kube: FakeKubeApi,
                                                                           make_source: Factory) -> None:
    kube.apply(openapi_import(document()))
    _src, registry = await make_source()
    assert imported(registry) == ALL

    broken = document()
    broken["openapi"] = "2.0"
    kube.apply(openapi_import(broken))
    await eventually(lambda: status(kube, "OpenAPIImport", "billing").get("ready") is False, what="refused")
    st = status(kube, "OpenAPIImport", "billing")
    assert "version '2.0' is not supported" in st["message"]
    assert st["message"].endswith("(still serving generation 1)")
    assert (st["toolCount"], st["observedGeneration"]) == (5, 2)
    assert imported(registry) == ALL  # still served
    assert ("OpenAPIImport", "acme", "billing") in registry.errors()

    # Fixed: ready again, the error cleared.
    kube.apply(openapi_import(document(), prefix="c-"))
    await eventually(lambda: status(kube, "OpenAPIImport", "billing").get("ready") is True, what="fixed")
    assert imported(registry) == [n.replace("b-", "c-", 1) for n in ALL]
    assert ("OpenAPIImport", "acme", "billing") not in registry.errors()


async def test_entries_refused_with_the_reason_in_status(kube: FakeKubeApi, make_source: Factory) -> None:
    """Every way an entry can be wrong: never served, the status names the field."""
    cases = {
        "path-only": ({"openapi": {"path": "billing.yaml"}}, "spec.openapi.document: required"),
        "not-yaml": ({"openapi": {"document": "openapi: [3.0"}}, "spec.openapi.document: not valid YAML"),
        "not-openapi": ({"openapi": {"document": {"hello": "world"}}}, "missing: not an OpenAPI 3 document"),
        "swagger": ({"openapi": {"document": {"swagger": "2.0"}}}, "Swagger 2.0"),
        "bad-base": ({"baseUrl": 42}, "spec.baseUrl: expected a string"),
        "bad-ref": ({"openapi": {"document": {**document(), "paths": {"/x": {"get": {
            "operationId": "x", "parameters": [{"$ref": "#/components/parameters/missing"}],
            "responses": {"200": {"description": "ok"}}}}}}}}, "missing"),
    }
    for name, (spec, _) in cases.items():
        entry = openapi_import(document(), name=name)
        entry["spec"].update(copy.deepcopy(spec))
        kube.apply(entry)
    _src, registry = await make_source()
    assert names(registry) == []
    for name, (_, why) in cases.items():
        await eventually(lambda n=name: status(kube, "OpenAPIImport", n).get("ready") is False, what=name)  # type: ignore[misc]
        st = status(kube, "OpenAPIImport", name)
        assert why in st["message"], (name, st["message"])
        assert st["toolCount"] == 0 and "still serving" not in st["message"]
        assert ("OpenAPIImport", "acme", name) in registry.errors()


async def test_a_tool_resource_wins_over_an_imported_namesake(kube: FakeKubeApi, make_source: Factory) -> None:
    kube.apply(tool("b-get-invoice", description="the hand-written one"))
    kube.apply(openapi_import(document()))
    _src, registry = await make_source()
    got = registry.tool("acme", "b-get-invoice")
    assert got is not None and got.description == "the hand-written one"
    assert len(names(registry)) == len(ALL)
    err = registry.errors()[("OpenAPIImport", "acme", "billing")]
    assert "'b-get-invoice' clashes" in str(err)


async def test_relists_keep_imports_apart_from_tools(kube: FakeKubeApi, make_source: Factory) -> None:
    """A re-list of Tools never removes imported Tools; a re-list of imports removes the deleted ones."""
    kube.apply(tool("get-item"))
    kube.apply(openapi_import(document()))
    kube.apply(openapi_import(document(), name="other", prefix="o-"))
    _src, registry = await make_source()
    assert len(names(registry)) == 1 + 2 * len(ALL)

    kube.delete("OpenAPIImport", "acme", "other", silent=True)  # its DELETED event compacted away
    kube.apply(tool("new-item"), silent=True)
    kube.expire_history()  # every kind lists again
    await eventually(lambda: names(registry) == sorted([*ALL, "get-item", "new-item"]), what="re-list")
    assert registry.imports() == [("acme", "billing")]
    assert ("OpenAPIImport", "acme", "other") not in registry.errors()


async def test_own_status_writes_do_not_reimport(kube: FakeKubeApi, make_source: Factory) -> None:
    """The MODIFIED event of Link's own status write changes nothing: no new version, no second write."""
    kube.apply(openapi_import(document()))
    src, registry = await make_source()
    await eventually(lambda: status(kube, "OpenAPIImport", "billing").get("ready") is True)
    await eventually(lambda: not src.status_writes_pending())
    version = registry.version
    kube.bookmark()
    await eventually(lambda: src.resource_versions()["openapiimports in all namespaces"]
                     == str(kube.resource_version), what="caught up")
    assert registry.version == version
    assert len(kube.writes_for("OpenAPIImport", "acme", "billing")) == 1
