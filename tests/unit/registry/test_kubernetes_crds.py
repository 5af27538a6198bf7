"""The Tool and ToolSet CRDs in deploy/crds/: valid Kubernetes objects, structural, matching the contract."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from link.registry.model import ResourceError, parse_tool, parse_toolset

CRDS = Path(__file__).resolve().parents[3] / "deploy" / "crds"
FILES = {"Tool": CRDS / "tools.gostoa.dev.yaml", "ToolSet": CRDS / "toolsets.gostoa.dev.yaml",
         "Resource": CRDS / "resources.gostoa.dev.yaml", "Prompt": CRDS / "prompts.gostoa.dev.yaml",
         "OpenAPIImport": CRDS / "openapiimports.gostoa.dev.yaml"}

# The examples of shared/CONTRACTS.md, as a user would write them.
TOOL = {
    "apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
    "metadata": {"name": "get-invoice", "namespace": "tenant-acme"},
    "spec": {
        "displayName": "Get invoice", "description": "Fetch one invoice",
        "endpoint": "https://billing.internal/v1/invoices/{invoiceId}", "method": "GET",
        "inputSchema": {"type": "object", "properties": {"invoiceId": {"type": "string"}},
                        "required": ["invoiceId"]},
        "outputSchema": {},
        "auth": {"type": "bearer", "secretRef": "billing-token", "headerName": "X-Api-Key",
                 "tokenExchange": {"audience": "billing-api", "resource": "https://billing.internal/",
                                   "scope": "invoices:read"}},
        "rateLimit": "100/min", "timeout": "30s", "headers": {"X-Source": "stoa"},
        "annotations": {"title": "Invoice", "readOnlyHint": True, "destructiveHint": False,
                        "idempotentHint": True, "openWorldHint": False},
    },
    "status": {"ready": True, "observedGeneration": 3, "message": "", "conditions": []},
}
TOOLSET = {
    "apiVersion": "gostoa.dev/v1alpha1", "kind": "ToolSet",
    "metadata": {"name": "knowledge-base", "namespace": "tenant-acme"},
    "spec": {
        "upstream": {"url": "https://mcp.internal/mcp", "transport": "streamable-http",
                     "auth": {"type": "header", "secretRef": "kb-key", "headerName": "X-Key"},
                     "timeoutSeconds": 30},
        "tools": [{"name": "search", "alias": "kb_search", "enabled": True}],
        "prefix": "kb_", "refreshInterval": "5m",
    },
    "status": {"connected": True, "toolCount": 4, "discoveredTools": ["search", "fetch"],
               "lastSync": "2026-01-01T00:00:00Z", "error": ""},
}


def load(kind: str) -> dict[str, Any]:
    doc = yaml.safe_load(FILES[kind].read_text())
    assert isinstance(doc, dict)
    return doc


def schema_of(kind: str) -> dict[str, Any]:
    [version] = load(kind)["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def validator(kind: str) -> jsonschema.Draft4Validator:
    """The CRD schema as a JSON Schema validator (the x-kubernetes-* keywords are ignored)."""
    return jsonschema.Draft4Validator(schema_of(kind), format_checker=jsonschema.FormatChecker())


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path or ".", node)]
    for name, child in (node.get("properties") or {}).items():
        out += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{*}}")
    return out


@pytest.mark.parametrize("kind", list(FILES))
def test_crd_is_a_valid_kubernetes_object(kind: str) -> None:
    doc = load(kind)
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_validate_catches_a_broken_crd() -> None:
    """The check above can fail: a misspelt schema keyword is refused."""
    doc = load("Tool")
    doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["requird"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize(("kind", "plural"), [("Tool", "tools"), ("ToolSet", "toolsets"),
                                              ("Resource", "resources"), ("Prompt", "prompts"),
                                              ("OpenAPIImport", "openapiimports")])
def test_crd_names_scope_and_version(kind: str, plural: str) -> None:
    doc = load(kind)
    spec = doc["spec"]
    assert doc["metadata"]["name"] == f"{plural}.gostoa.dev"
    assert spec["group"] == "gostoa.dev"
    assert spec["scope"] == "Namespaced"  # the namespace is the tenant
    assert spec["names"]["kind"] == kind and spec["names"]["plural"] == plural
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", list(FILES))
def test_schema_is_structural(kind: str) -> None:
    """Every node has a type, unless it is explicitly int-or-string or free-form (apiserver rule)."""
    for path, node in walk(schema_of(kind)):
        assert "type" in node or node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"), f"{kind} schema {path} has no type"


@pytest.mark.parametrize("kind", list(FILES))
def test_printer_columns_point_at_schema_fields(kind: str) -> None:
    [version] = load(kind)["spec"]["versions"]
    paths = {p for p, _ in walk(schema_of(kind))}
    columns = version["additionalPrinterColumns"]
    assert {"Ready", "Age"} <= {c["name"] for c in columns}
    for col in columns:
        assert col["jsonPath"] == ".metadata.creationTimestamp" or col["jsonPath"] in paths, col


def test_tool_spec_fields_are_the_contracts() -> None:
    spec = schema_of("Tool")["properties"]["spec"]
    assert set(spec["properties"]) == {"displayName", "description", "endpoint", "method", "inputSchema",
                                       "outputSchema", "auth", "rateLimit", "timeout", "headers", "annotations"}
    assert set(spec["required"]) == {"displayName", "description", "endpoint"}
    assert spec["properties"]["method"]["default"] == "POST"
    status = schema_of("Tool")["properties"]["status"]["properties"]
    assert {"ready", "message", "observedGeneration", "conditions"} <= set(status)


def test_toolset_fields_are_the_contracts() -> None:
    root = schema_of("ToolSet")["properties"]
    # serve: a virtual server (ADR 0015); resources, prompts and include curate it (ADR 0030)
    assert set(root["spec"]["properties"]) == {"upstream", "tools", "prefix", "refreshInterval", "serve",
                                               "resources", "prompts", "include"}
    assert set(root["spec"]["properties"]["upstream"]["properties"]) == {"url", "transport", "auth", "timeoutSeconds"}
    status = set(root["status"]["properties"])
    assert {"connected", "toolCount", "discoveredTools", "lastSync", "error"} <= status
    assert {"ready", "message", "observedGeneration"} <= status  # what Link's verdict writes


def test_contract_examples_pass_the_crds_and_link() -> None:
    validator("Tool").validate(TOOL)
    validator("ToolSet").validate(TOOLSET)
    assert parse_tool(TOOL).name == "get-invoice"
    assert parse_toolset(TOOLSET).prefix == "kb_"


@pytest.mark.parametrize(("field", "value", "why"), [
    ("method", "FETCH", "is not one of"),
    ("rateLimit", "100/fortnight", "does not match"),
    ("endpoint", "ftp://files/x", "does not match"),
    ("auth", {"type": "kerberos"}, "is not one of"),
    ("headers", {"X-Count": 3}, "is not of type 'string'"),
    ("annotations", {"readOnlyHint": "yes"}, "is not of type 'boolean'"),
])
def test_tool_crd_refuses_bad_fields(field: str, value: Any, why: str) -> None:
    bad = copy.deepcopy(TOOL)
    bad["spec"][field] = value
    errors = [e.message for e in validator("Tool").iter_errors(bad)]
    assert errors and any(why in e for e in errors), errors


@pytest.mark.parametrize("missing", ["displayName", "description", "endpoint"])
def test_tool_crd_requires_fields(missing: str) -> None:
    bad = copy.deepcopy(TOOL)
    del bad["spec"][missing]
    assert any(f"'{missing}' is a required property" in e.message for e in validator("Tool").iter_errors(bad))


def test_toolset_crd_refuses_bad_fields() -> None:
    bad = copy.deepcopy(TOOLSET)
    bad["spec"]["upstream"]["transport"] = "websocket"
    del bad["spec"]["tools"][0]["name"]
    messages = sorted(e.message for e in validator("ToolSet").iter_errors(bad))
    assert any("'websocket' is not one of" in m for m in messages)
    assert any("'name' is a required property" in m for m in messages)


def test_kustomization_lists_both_crds() -> None:
    kustomization = yaml.safe_load((CRDS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in FILES.values())


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_both_crds() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(CRDS)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert sorted(d["metadata"]["name"] for d in docs) == ["openapiimports.gostoa.dev", "prompts.gostoa.dev",
                                                            "resources.gostoa.dev", "tools.gostoa.dev",
                                                            "toolsets.gostoa.dev"]


def test_content_crds_take_what_link_takes_and_refuse_unknown_keys() -> None:
    """The conformance fixture's entries pass both the CRD schemas and Link; a misspelt key fails the CRD."""
    from link.registry.content import parse_prompt, parse_resource

    fixture = Path(__file__).resolve().parents[2] / "conformance" / "tools" / "content.yaml"
    docs = [d for d in yaml.safe_load_all(fixture.read_text().replace("${CONFORMANCE_UPSTREAM}", "http://up.test"))]
    assert {d["kind"] for d in docs} == {"Resource", "Prompt"}
    for doc in docs:
        validator(doc["kind"]).validate(doc)
        (parse_resource if doc["kind"] == "Resource" else parse_prompt)(doc)
    bad = copy.deepcopy(next(d for d in docs if d["kind"] == "Resource"))
    bad["spec"]["mimetype"] = "text/plain"
    assert any("Additional properties" in e.message for e in validator("Resource").iter_errors(bad))




@pytest.mark.parametrize(("serve", "expected"), [(None, False), (True, True), (False, False)])
def test_a_toolset_may_ask_to_be_served_as_its_own_endpoint(serve: bool | None, expected: bool) -> None:
    spec = {**TOOLSET["spec"], **({"serve": serve} if serve is not None else {})}
    manifest = {**TOOLSET, "spec": spec}
    validator("ToolSet").validate(manifest)
    assert parse_toolset(manifest).serve is expected


@pytest.mark.parametrize("bad", ["yes", 1, {"enabled": True}])
def test_serve_must_be_a_boolean_for_link_and_the_crd(bad: object) -> None:
    manifest = {**TOOLSET, "spec": {**TOOLSET["spec"], "serve": bad}}
    with pytest.raises(ResourceError, match=r"spec\.serve"):
        parse_toolset(manifest)
    with pytest.raises(jsonschema.ValidationError):
        validator("ToolSet").validate(manifest)


BILLING = Path(__file__).resolve().parents[1] / "openapi" / "specs" / "billing-3.0.yaml"


def openapi_import(**spec: Any) -> dict[str, Any]:
    document = yaml.safe_load(BILLING.read_text())
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "OpenAPIImport",
            "metadata": {"name": "billing", "namespace": "tenant-acme", "generation": 1},
            "spec": {"openapi": {"document": document}, "baseUrl": "https://billing.internal", "prefix": "b-",
                     **spec},
            "status": {"ready": True, "toolCount": 5, "tools": ["b-get-invoice"], "observedGeneration": 1,
                       "conditions": []}}


@pytest.mark.parametrize("as_text", [False, True])
def test_an_openapi_import_passes_the_crd_and_link(as_text: bool) -> None:
    """The document as an object, or as its YAML text (kubectl --from-file): both are Link's Tools."""
    from link.registry.kubernetes.imports import expand

    manifest = openapi_import()
    if as_text:
        manifest["spec"]["openapi"]["document"] = BILLING.read_text()
    validator("OpenAPIImport").validate(manifest)
    tools = expand(manifest)
    assert sorted(t.name for t in tools) == ["b-create-invoice", "b-delete-invoices-by-invoice-id",
                                             "b-get-categories", "b-get-invoice", "b-list-invoices"]
    assert {t.tenant for t in tools} == {"tenant-acme"}
    assert all(t.endpoint.startswith("https://billing.internal/") for t in tools)


@pytest.mark.parametrize(("change", "why"), [
    ({"openapi": {"path": "specs/billing.yaml"}}, "'document' is a required property"),
    ({"openapi": {"document": {}, "path": "x.yaml"}}, "Additional properties"),
    ({"baseUrl": "ftp://billing"}, "does not match"),
    ({"prefix": "Billing_"}, "does not match"),
    ({"schedule": "5m"}, "Additional properties"),
])
def test_openapi_import_crd_refuses_bad_fields(change: dict[str, Any], why: str) -> None:
    bad = openapi_import()
    bad["spec"].update(change)
    errors = [e.message for e in validator("OpenAPIImport").iter_errors(bad)]
    assert errors and any(why in e for e in errors), errors


def test_a_toolset_curating_resources_prompts_and_inclusions_passes_the_crd_and_link() -> None:
    spec = {**TOOLSET["spec"], "serve": True,
            "resources": [{"uri": "doc://guide"}, {"uri": "doc://items/{item}", "enabled": False}],
            "prompts": [{"name": "greet", "alias": "hello", "enabled": True}],
            "include": {"tools": ["search"], "resources": ["handbook"], "prompts": ["onboarding"]}}
    manifest = {**TOOLSET, "spec": spec}
    validator("ToolSet").validate(manifest)
    parsed = parse_toolset(manifest)
    assert parsed.include.resources == ("handbook",) and parsed.exposed_prompt("greet") == "hello"


@pytest.mark.parametrize("spec", [
    {"resources": [{"url": "doc://guide"}]},
    {"prompts": [{"alias": "x"}]},
    {"include": {"toolz": ["x"]}},
    {"include": {"resources": "handbook"}},
])
def test_a_misspelt_curation_fails_both_the_crd_and_link(spec: dict[str, Any]) -> None:
    manifest = {**TOOLSET, "spec": {**TOOLSET["spec"], **spec}}
    with pytest.raises(jsonschema.ValidationError):
        validator("ToolSet").validate(manifest)
    if "url" not in str(spec):  # Link ignores unknown keys inside an item, the CRD refuses them
        with pytest.raises(ResourceError):
            parse_toolset(manifest)


@pytest.mark.parametrize("kind", ["Tool", "ToolSet"])
def test_validate_knows_exactly_the_keys_of_the_crd(kind: str) -> None:
    """``stoa-link validate`` flags unknown keys from its own table: it must be the CRD's, field by field."""
    from link.validate_resources import KNOWN_KEYS

    root = schema_of(kind)
    for path, keys in KNOWN_KEYS[kind].items():
        node = root
        for part in [p for p in path.split(".") if p]:
            node = node["items"] if part == "*" else node["properties"][part]
        crd_keys = set(node.get("properties", {}))
        if path == "spec.auth" and kind == "Tool":
            crd_keys.add("passthroughUserToken")  # known to validate only to give the parser's own message
        assert set(keys) == crd_keys, path
