"""OpenAPI in: the corpus under specs/ (3.0 YAML, 3.1 JSON) turned into Tools and a contract, and bad documents."""

from __future__ import annotations

import argparse
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from link.cli import main as cli_main
from link.openapi import OpenAPIError, Options, check_document, import_document, import_file
from link.openapi.importer import run_import
from link.openapi.tools import tool_name
from link.registry.model import parse_tool
from link.validate import validate_paths

SPECS = Path(__file__).parent / "specs"
BILLING = SPECS / "billing-3.0.yaml"
SHOP = SPECS / "shop-3.1.json"


def by_name(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["metadata"]["name"]: t for t in tools}


@pytest.fixture(scope="module")
def billing() -> dict[str, dict[str, Any]]:
    return by_name(import_file(BILLING, Options(namespace="tenant-acme")).tools)


@pytest.fixture(scope="module")
def shop() -> dict[str, dict[str, Any]]:
    return by_name(import_file(SHOP, Options(namespace="shop", base_url="https://shop.example/api")).tools)


def test_one_tool_per_operation_named_from_operation_id_or_method_and_path(billing: dict[str, Any],
                                                                          shop: dict[str, Any]) -> None:
    # HEAD is not a Tool method: skipped (and noted, see below); the DELETE has no operationId.
    assert sorted(billing) == ["create-invoice", "delete-invoices-by-invoice-id", "get-categories",
                               "get-invoice", "list-invoices"]
    # getItem and get_item normalise alike: the second in (path, method) order gets -2; upload is multipart only.
    assert sorted(shop) == ["get-item", "get-item-2", "post-lists-by-list-id-nodes"]
    for tool in [*billing.values(), *shop.values()]:
        parse_tool(tool)  # every manifest is one the registry accepts


@pytest.mark.parametrize(("raw", "expected"), [
    ("getInvoice", "get-invoice"), ("get_invoice", "get-invoice"), ("GetHTTPStatus", "get-http-status"),
    ("list invoices!", "list-invoices"), ("v1.items.list", "v1.items.list"), ("___", "operation"),
])
def test_tool_names_follow_the_registry_rules(raw: str, expected: str) -> None:
    assert tool_name(raw) == expected


def test_long_names_are_cut_to_128_with_a_stable_distinct_suffix() -> None:
    a, b = tool_name("a" * 200), tool_name("a" * 201)
    assert len(a) == len(b) == 128 and a.startswith("a" * 119 + "-") and a != b
    assert tool_name("a" * 200) == a


def test_endpoint_uses_server_variables_defaults_and_path_templates(billing: dict[str, Any]) -> None:
    assert billing["get-invoice"]["spec"]["endpoint"] == "https://eu.billing.example/v1/invoices/{invoiceId}"
    assert billing["get-invoice"]["spec"]["method"] == "GET"
    assert billing["create-invoice"]["spec"]["method"] == "POST"


def test_base_url_flag_replaces_the_document_servers() -> None:
    tools = import_file(BILLING, Options(namespace="t", base_url="http://127.0.0.1:9/api")).tools
    assert {t["spec"]["endpoint"] for t in tools} >= {"http://127.0.0.1:9/api/invoices/{invoiceId}"}


def test_path_level_parameters_merge_and_operation_level_ones_override(billing: dict[str, Any],
                                                                      shop: dict[str, Any]) -> None:
    assert billing["get-invoice"]["spec"]["inputSchema"] == {
        "type": "object", "properties": {"invoiceId": {"type": "string"}}, "required": ["invoiceId"]}
    assert shop["get-item"]["spec"]["inputSchema"]["properties"]["sku"] == {"type": "string", "pattern": "^[A-Z]+$"}
    assert shop["get-item-2"]["spec"]["inputSchema"]["properties"]["sku"]["description"] == "path level"


def test_refs_are_resolved_allof_bodies_flattened_and_3_0_dialect_converted(billing: dict[str, Any]) -> None:
    schema = billing["create-invoice"]["spec"]["inputSchema"]
    assert "$ref" not in json.dumps(schema)
    assert schema["properties"]["amount"] == {"type": "number", "exclusiveMinimum": 0}  # 3.0 boolean bound
    assert schema["properties"]["currency"] == {"type": "string", "enum": ["EUR", "USD"]}
    assert schema["required"] == ["amount", "currency", "customer"]
    out = billing["create-invoice"]["spec"]["outputSchema"]
    assert out["properties"]["note"] == {"type": ["string", "null"]}  # nullable
    assert out["properties"]["total"]["required"] == ["amount", "currency"]


def test_query_parameters_of_get_are_arguments_header_ones_are_left_out(billing: dict[str, Any]) -> None:
    props = billing["list-invoices"]["spec"]["inputSchema"]["properties"]
    assert props == {"limit": {"type": "integer", "minimum": 1, "maximum": 100}}


def test_oneof_bodies_stay_whole_under_allof_and_3_1_ref_siblings_apply(shop: dict[str, Any]) -> None:
    schema = shop["get-item-2"]["spec"]["inputSchema"]
    assert [set(s["required"]) for s in schema["allOf"][0]["oneOf"]] == [{"sku"}, {"restock"}]
    out = shop["get-item"]["spec"]["outputSchema"]
    assert out["description"] == "one item" and out["properties"]["price"] == {"type": ["number", "null"]}


def test_recursive_refs_are_cut_and_reported_not_looped() -> None:
    result = import_file(SHOP, Options(namespace="shop", base_url="https://shop.example"))
    nodes = by_name(result.tools)["post-lists-by-list-id-nodes"]["spec"]
    assert nodes["inputSchema"]["properties"]["next"]["description"].startswith("recursive reference")
    assert nodes["outputSchema"]["properties"]["value"] == {"type": "integer"}  # from the 2XX +json response
    assert any("recursive $ref '#/components/schemas/Node'" in n for n in result.notes)


def test_a_self_referencing_chain_of_refs_is_an_error_not_a_loop() -> None:
    doc = yaml.safe_load(BILLING.read_text())
    doc["components"]["schemas"]["Loop"] = {"$ref": "#/components/schemas/Loop"}
    doc["paths"]["/invoices"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/Loop"}
    result = import_document(check_document(doc), Options(namespace="t"))
    assert any("recursive" in n for n in result.notes)


def test_security_global_operation_level_and_none(billing: dict[str, Any], shop: dict[str, Any]) -> None:
    assert billing["get-invoice"]["spec"]["auth"] == {"type": "bearer", "secretRef": "bearer-auth"}  # global
    assert billing["create-invoice"]["spec"]["auth"] == {  # operation level: apiKey in a header
        "type": "api_key", "headerName": "X-Billing-Key", "secretRef": "api-key"}
    assert "auth" not in billing["delete-invoices-by-invoice-id"]["spec"]  # security: [] = anonymous
    # basic is first but a Tool cannot send it: the OAuth 2 alternative is used (a provisioned bearer token).
    assert shop["get-item"]["spec"]["auth"] == {"type": "bearer", "secretRef": "oauth"}


def test_annotations_follow_the_method(billing: dict[str, Any]) -> None:
    get, post, delete = (billing[n]["spec"]["annotations"]
                         for n in ("get-invoice", "create-invoice", "delete-invoices-by-invoice-id"))
    assert get == {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": True,
                   "title": "Get one invoice"}
    assert (post["readOnlyHint"], post["destructiveHint"], post["idempotentHint"]) == (False, False, False)
    assert (delete["readOnlyHint"], delete["destructiveHint"], delete["idempotentHint"]) == (False, True, True)


def test_non_object_responses_give_no_output_schema(billing: dict[str, Any]) -> None:
    assert "outputSchema" not in billing["list-invoices"]["spec"]  # an array: MCP wants an object


def test_what_a_tool_cannot_carry_is_noted() -> None:
    notes = import_file(BILLING, Options(namespace="t")).notes + \
        import_file(SHOP, Options(namespace="t", base_url="https://x.example")).notes
    text = "\n".join(notes)
    assert "skipped: a Tool cannot use HEAD" in text
    assert "optional header parameter 'X-Trace' left out" in text
    assert "optional query parameter 'dryRun' left out" in text  # a query parameter beside a POST body
    assert "skipped: the request body is not JSON (multipart/form-data)" in text
    assert "already taken, named 'get-item-2'" in text


def test_the_import_is_deterministic() -> None:
    a = import_file(SHOP, Options(namespace="t", base_url="https://x.example"), contract=True)
    b = import_file(SHOP, Options(namespace="t", base_url="https://x.example"), contract=True)
    assert a.tools == b.tools and a.contract == b.contract


def test_contract_follows_the_platform_rules_and_validates_traffic() -> None:
    result = import_file(BILLING, Options(namespace="tenant-acme"), contract=True)
    c = result.contract
    assert c is not None
    spec = c["spec"]
    assert (c["metadata"]["name"], spec["version"], spec["status"]) == ("billing-api", "1.2.0", "draft")
    assert spec["classification"] == "H" and spec["required_policies"] == ["rate-limit", "auth-jwt"]
    eps = {(e["methods"][0], e["path"]): e for e in spec["endpoints"]}
    assert eps[("DELETE", "/invoices/{invoiceId}")]["llm"]["requires_human_approval"] is True
    assert eps[("HEAD", "/invoices/{invoiceId}")]["llm"]["side_effects"] == "read"  # the contract keeps HEAD
    published = import_file(BILLING, Options(namespace="tenant-acme"), contract=True, publish=True,
                            classification="VH").contract
    assert published is not None and published["spec"]["status"] == "published"
    assert published["spec"]["required_policies"] == ["rate-limit", "auth-jwt", "mtls", "audit-logging"]
    # The contract's input schema checks real requests (the data plane's own validator).
    from link.contracts.model import parse_contract
    contract, problems = parse_contract(c)
    assert contract is not None and not problems
    ep = next(e for e in contract.endpoints if e.path == "/invoices" and e.methods == ("GET",))
    assert ep.input_schema is not None and ep.input_schema["properties"]["limit"]["maximum"] == 100


def test_cli_writes_files_that_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for spec, extra in ((BILLING, []), (SHOP, ["--base-url", "https://shop.example"])):
        rc = cli_main(["import", "openapi", str(spec), "--namespace", "tenant-acme", "--out", str(tmp_path),
                       "--contract", *extra])
        assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "billing-3.0.contract.yaml", "billing-3.0.tools.yaml", "shop-3.1.contract.yaml", "shop-3.1.tools.yaml"]
    assert validate_paths([str(tmp_path)]) == []
    assert "&id" not in (tmp_path / "billing-3.0.tools.yaml").read_text()  # no YAML aliases


def _billing() -> dict[str, Any]:
    return yaml.safe_load(BILLING.read_text())


def _broken(edit: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_billing())
    edit(doc)
    return doc


BAD: list[tuple[str, Any, str, str]] = [
    ("swagger 2", lambda d: d.clear() or d.update({"swagger": "2.0", "info": {}}), "#/swagger", "OpenAPI 2.0"),
    ("no openapi key", lambda d: d.pop("openapi"), "#/openapi", "not an OpenAPI 3"),
    ("openapi 4", lambda d: d.update(openapi="4.0.0"), "#/openapi", "not supported"),
    ("no info", lambda d: d.pop("info"), "#/info", "required"),
    ("broken schema ref", lambda d: d["components"]["schemas"].pop("Money"),
     "#/components/schemas/Invoice/properties/total", "points at nothing"),
    ("broken parameter ref", lambda d: d["components"]["parameters"].pop("Limit"),
     "#/paths/~1invoices/get/parameters/0", "points at nothing"),
    ("external ref", lambda d: d["components"]["schemas"].update(Money={"$ref": "other.yaml#/Money"}),
     "#/components/schemas/Money", "not local"),
    ("duplicate operationId", lambda d: d["paths"]["/categories"]["get"].update(operationId="getInvoice"),
     "/operationId", "duplicate operationId 'getInvoice'"),
    ("undeclared path param", lambda d: d["paths"].update({"/x/{y}": {"get": {"responses": {}}}}),
     "#/paths/~1x~1{y}/get", "not declared"),
    ("server variable without default", lambda d: d["servers"][0]["variables"]["region"].pop("default"),
     "#/servers/0/variables/region", "no default"),
    ("relative server", lambda d: d.update(servers=[{"url": "/v1"}]), "(servers)", "--base-url"),
    ("no servers", lambda d: d.pop("servers"), "(servers)", "--base-url"),
    ("unknown security scheme", lambda d: d.update(security=[{"nope": []}]), "/security", "'nope'"),
    ("parameter without in", lambda d: d["paths"]["/invoices"]["get"]["parameters"].append({"name": "q"}),
     "/parameters/2", "in: path|query"),
    ("paths not a mapping", lambda d: d.update(paths=[]), "#/paths", "mapping"),
]


@pytest.mark.parametrize(("case", "edit", "where", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_documents_are_refused_naming_the_place(case: str, edit: Any, where: str, reason: str,
                                                    tmp_path: Path) -> None:
    doc = _broken(edit)
    with pytest.raises(OpenAPIError) as info:
        import_document(check_document(doc), Options(namespace="t"))
    assert where in info.value.where and reason in info.value.reason, str(info.value)
    # The command says the same on stderr, exits 2, writes nothing and shows no traceback.
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(doc))
    err = io.StringIO()
    args = argparse.Namespace(spec=str(spec), namespace="t", out=str(tmp_path / "out"), base_url=None,
                              prefix="", contract=True, publish=False, classification="H")
    assert run_import(args, err) == 2
    assert where in err.getvalue() and "Traceback" not in err.getvalue()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("spec.yaml", "openapi: [unclosed", "not valid YAML"),
    ("spec.json", "{\"openapi\": ", "not valid JSON"),
    ("spec.yaml", "- just\n- a list\n", "expected a mapping"),
    ("spec.yaml", "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("missing.yaml", None, "cannot read"),
])
def test_unreadable_files_exit_2(tmp_path: Path, name: str, text: str | None, reason: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    rc = cli_main(["import", "openapi", str(path), "--namespace", "t", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and reason in err and "Traceback" not in err, err


def test_a_bad_namespace_is_refused() -> None:
    with pytest.raises(OpenAPIError, match="namespace"):
        import_file(BILLING, Options(namespace="Not_A_Tenant"))
