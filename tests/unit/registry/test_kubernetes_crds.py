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

from link.registry.model import parse_tool, parse_toolset

CRDS = Path(__file__).resolve().parents[3] / "deploy" / "crds"
FILES = {"Tool": CRDS / "tools.gostoa.dev.yaml", "ToolSet": CRDS / "toolsets.gostoa.dev.yaml"}

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
                 "passthroughUserToken": True},
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


@pytest.mark.parametrize("kind", ["Tool", "ToolSet"])
def test_crd_is_a_valid_kubernetes_object(kind: str) -> None:
    doc = load(kind)
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_validate_catches_a_broken_crd() -> None:
    """The check above can fail: a misspelt schema keyword is refused."""
    doc = load("Tool")
    doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["requird"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize(("kind", "plural"), [("Tool", "tools"), ("ToolSet", "toolsets")])
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


@pytest.mark.parametrize("kind", ["Tool", "ToolSet"])
def test_schema_is_structural(kind: str) -> None:
    """Every node has a type, unless it is explicitly int-or-string or free-form (apiserver rule)."""
    for path, node in walk(schema_of(kind)):
        assert "type" in node or node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"), f"{kind} schema {path} has no type"


@pytest.mark.parametrize("kind", ["Tool", "ToolSet"])
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
    assert set(root["spec"]["properties"]) == {"upstream", "tools", "prefix", "refreshInterval"}
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
    assert sorted(d["metadata"]["name"] for d in docs) == ["tools.gostoa.dev", "toolsets.gostoa.dev"]
