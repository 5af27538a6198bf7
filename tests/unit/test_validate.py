"""`stoa-link validate`: one line per problem with file, line, field and reason; exit 1 on any."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from link.demo.main import demo_settings
from link.validate import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEMO_ASSETS = ROOT / "link" / "demo" / "assets"

TOOL = """\
apiVersion: gostoa.dev/v1alpha1
kind: Tool
metadata: {{name: {name}, namespace: tenant-acme}}
spec:
  displayName: Get invoice
  description: Fetch one invoice
  endpoint: {endpoint}
  method: GET
"""


def _run(*paths: Path | str, query: str | None = None) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main([str(p) for p in paths], out=out, query=query)
    return code, out.getvalue().splitlines()


def test_the_examples_are_valid() -> None:
    assert _run(EXAMPLES / "policies", EXAMPLES / "contracts") == (0, [])


def test_contract_rules_are_reported_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("""\
name: billing
version: 1.0.0
tenant_id: tenant-acme
classification: H
required_policies: [rate-limit]
status: published
endpoints:
  - path: /invoices/{id}
    methods: [DELETE]
    input_schema: {type: object, properties: {id: {type: integer}}}
    llm:
      tool_name: delete_invoice
      side_effects: destructive
""")
    code, lines = _run(tmp_path)
    f = tmp_path / "c.yaml"
    assert code == 1
    assert lines == [
        f"{f}:5: required_policies: classification H requires auth-jwt",
        f"{f}:8: endpoints[0].backend_url: missing backend: a published endpoint needs a URL",
        f"{f}:11: endpoints[0].llm.requires_human_approval: a destructive endpoint requires human approval",
    ]


def test_duplicate_tool_names_across_files_and_kinds(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(TOOL.format(name="get_invoice", endpoint="https://b.internal/i/1"))
    (tmp_path / "b.yaml").write_text(TOOL.format(name="get_invoice", endpoint="https://b.internal/i/2"))
    code, lines = _run(tmp_path)
    assert code == 1
    assert lines == [f"{tmp_path / 'b.yaml'}:3: metadata.name: duplicate tool name 'get_invoice' in tenant "
                     f"tenant-acme (also {tmp_path / 'a.yaml'}:1)"]


def test_tool_missing_backend_names_the_field_and_line(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(TOOL.format(name="x", endpoint='""'))
    code, lines = _run(tmp_path / "t.yaml")
    assert code == 1
    assert lines == [f"{tmp_path / 't.yaml'}:7: spec.endpoint: required"]


def test_rego_errors_and_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package envoy.authz\n\nimport rego.v1\n\nallow if nosuch(input)\n")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\nversion: 1\n")
    (tmp_path / "other.yaml").write_text("kind: Deployment\n")
    code, lines = _run(tmp_path)
    assert code == 1
    assert f"{tmp_path / 'p.rego'}:5: unknown function nosuch" in lines
    assert any(line.startswith(f"{tmp_path / 'broken.yaml'}:") for line in lines)
    assert f"{tmp_path / 'other.yaml'}:1: kind: unknown kind 'Deployment': expected Tool, ToolSet, Resource or Prompt" in lines


def test_missing_path(tmp_path: Path) -> None:
    assert _run(tmp_path / "nope") == (1, [f"{tmp_path / 'nope'}: does not exist"])


# -- every asset kind of the demo -------------------------------------------------------------


def test_the_demo_assets_are_valid() -> None:
    assert _run(DEMO_ASSETS) == (0, [])


def _demo_folder(tmp_path: Path) -> Path:
    """The demo's assets, a ToolSet and the demo's own Link settings file, in one folder."""
    folder = tmp_path / "deploy"
    shutil.copytree(DEMO_ASSETS, folder)
    shutil.copy(EXAMPLES / "registry" / "toolset.yaml", folder / "registry" / "toolset.yaml")
    settings = demo_settings(tmp_path / "work", folder, 9191, 8081, 3001)
    settings["policy"].pop("decision_log")
    (folder / "link.yaml").write_text(yaml.safe_dump(settings))
    return folder


def test_a_folder_of_every_asset_kind_is_valid(tmp_path: Path) -> None:
    assert _run(_demo_folder(tmp_path)) == (0, [])


def test_the_command_checks_a_folder_of_every_kind(tmp_path: Path) -> None:
    folder = _demo_folder(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "link.cli", "validate", str(folder)],
                        capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
    (folder / "registry" / "demo-tools.yaml").write_text(
        (folder / "registry" / "demo-tools.yaml").read_text().replace("inputSchema:", "inputschema:"))
    bad = subprocess.run([sys.executable, "-m", "link.cli", "validate", str(folder)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "spec.inputschema: unknown key; did you mean 'inputSchema'?" in bad.stdout


# -- every problem of a file, unknown keys with a suggestion ------------------------------------

BROKEN_TOOL = """\
apiVersion: gostoa.dev/v1alpha1
kind: Tool
metadata: {name: get-invoice, namespace: tenant-acme}
spec:
  displayName: Get invoice
  endpoint: https://billing.internal/v1/invoices/{invoiceId}
  method: FETCH
  inputschema: {type: object}
  rateLimit: "lots"
  timeout: forever
  headers: {"bad header": x}
  auth: {type: bearer, secretref: token}
"""


def test_every_problem_of_a_tool_is_reported_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "tool.yaml"
    f.write_text(BROKEN_TOOL)
    code, lines = _run(f)
    assert code == 1
    text = "\n".join(lines)
    for expected in [
        f"{f}:4: spec.description: required",
        f"{f}:7: spec.method: expected one of",
        f"{f}:8: spec.inputschema: unknown key; did you mean 'inputSchema'?",
        f"{f}:9: spec.rateLimit:",
        f"{f}:10: spec.timeout: expected a duration",
        f"{f}:11: spec.headers: 'bad header' is not a valid header name",
        f"{f}:12: spec.auth.secretref: unknown key; did you mean 'secretRef'?",
    ]:
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_toolset_keys_are_checked_at_every_level(tmp_path: Path) -> None:
    f = tmp_path / "ts.yaml"
    f.write_text("""\
apiVersion: gostoa.dev/v1alpha1
kind: ToolSet
metadata: {name: kb, namespace: tenant-acme}
spec:
  upstream: {url: "http://127.0.0.1:3101/mcp", tranport: sse}
  tools:
    - {name: search, alais: kb_search}
  refresh: 5m
""")
    code, lines = _run(f)
    assert code == 1
    assert lines == [
        f"{f}:5: spec.upstream.tranport: unknown key; did you mean 'transport'?",
        f"{f}:7: spec.tools[0].alais: unknown key; did you mean 'alias'?",
        f"{f}:8: spec.refresh: unknown key; did you mean 'refreshInterval'?",
    ]


def test_every_bad_api_key_entry_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "api-keys.yaml"
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    f.write_text(f"""\
{a}: {{consumer: app-a, tenant: tenant-acme, scopes: [read]}}
{b}: {{consumer: app-b}}
{c}: {{consumer: app-c, tenant: t, role: admin}}
{d}: {{consumer: app-d, tenant: t, scopes: 42}}
""")
    code, lines = _run(f)
    assert code == 1
    assert [line.split(": ", 1)[0] for line in lines] == [f"{f}:2", f"{f}:3", f"{f}:4"]
    assert "tenant is required" in lines[0] and "unknown fields ['role']" in lines[1] and "scopes" in lines[2]


def test_every_problem_of_a_settings_file_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "link.yaml"
    f.write_text("""\
mode: sidecar
server:
  workers: 0
policy:
  enabled: false
  querry: data.x.allow
metering:
  linger_ms: -1
tracing: {enabled: true, otlp_endpoint: "grpc://collector:4317"}
""")
    code, lines = _run(f)
    assert code == 1
    text = "\n".join(lines)
    assert f"{f}:3: server.workers:" in text
    assert f"{f}:6: policy.querry: unknown setting; did you mean policy.query?" in text
    assert f"{f}:8: metering.linger_ms:" in text
    assert f"{f}:9: tracing.otlp_endpoint: unsupported scheme 'grpc'" in text


# -- the policy answers the decision Link asks for ----------------------------------------------

OTHER_PACKAGE = "package acme.gate\n\nimport rego.v1\n\ndefault allow := false\n\nallow if input.x == 1\n"


def _settings_with_policy(tmp_path: Path, query: str | None = None) -> Path:
    (tmp_path / "policy.rego").write_text(OTHER_PACKAGE)
    doc: dict[str, object] = {"mode": "sidecar", "policy": {"enabled": True, "paths": ["policy.rego"]}}
    if query:
        doc["policy"]["query"] = query  # type: ignore[index]
    f = tmp_path / "link.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return f


def test_the_settings_policy_must_answer_the_settings_query(tmp_path: Path) -> None:
    f = _settings_with_policy(tmp_path)
    code, lines = _run(tmp_path)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"{f}:4: policy.paths: {tmp_path / 'policy.rego'}: ")
    assert "no rule answers data.envoy.authz.allow (policy.query)" in lines[0]


def test_a_configured_query_is_the_one_checked(tmp_path: Path) -> None:
    _settings_with_policy(tmp_path, query="data.acme.gate.allow")
    assert _run(tmp_path) == (0, [])


@pytest.mark.parametrize(("query", "ok"), [(None, False), ("data.acme.gate.allow", True),
                                           ("data.envoy.authz.allow", False)])
def test_a_lone_policy_must_answer_the_decision(tmp_path: Path, query: str | None, ok: bool) -> None:
    (tmp_path / "p.rego").write_text(OTHER_PACKAGE)
    code, lines = _run(tmp_path, query=query)
    if ok:
        assert (code, lines) == (0, [])
    else:
        assert code == 1
        assert lines == [f"{tmp_path / 'p.rego'}: no rule answers data.envoy.authz.allow, the decision Link asks "
                         "for (set policy.query, or --query, if this policy answers another)"]



def test_required_policies_link_cannot_keep_are_reported(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("""\
name: payments
version: 1.0.0
tenant_id: tenant-acme
classification: VVH
required_policies: [rate-limit, auth-jwt, mtls, audit-logging, data-encryption, geo-restriction, ip-allowlist]
endpoints: []
""")
    code, lines = _run(tmp_path)
    f = tmp_path / "c.yaml"
    assert code == 1
    assert lines == [
        f"{f}:5: required_policies: requires 'geo-restriction', which Link cannot enforce (it has no source of "
        "caller location); enforce it in front of Envoy and remove the contract from contracts.paths until then",
        f"{f}:5: required_policies: requires 'ip-allowlist', a policy Link does not know (known: audit-logging, "
        "auth-jwt, data-encryption, geo-restriction, mtls, rate-limit)",
    ]


def test_token_exchange_is_accepted_and_passthrough_is_refused_with_its_line(tmp_path: Path) -> None:
    ok = TOOL.format(name="a", endpoint="https://billing.internal/a") + \
        "  auth: {type: none, tokenExchange: {audience: billing-api, scope: 'invoices:read'}}\n"
    (tmp_path / "ok.yaml").write_text(ok)
    assert _run(tmp_path / "ok.yaml") == (0, [])
    old = TOOL.format(name="b", endpoint="https://billing.internal/b") + \
        "  auth: {type: none, passthroughUserToken: true}\n"
    (tmp_path / "old.yaml").write_text(old)
    code, lines = _run(tmp_path / "old.yaml")
    assert code == 1
    [line] = lines
    assert line.startswith(f"{tmp_path / 'old.yaml'}:9: spec.auth.passthroughUserToken: removed: ")
    assert "tokenExchange" in line


def test_a_key_the_parser_also_refuses_is_said_once_with_the_suggestion(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TOOL.format(name="a", endpoint="https://billing.internal/a")
                 + "  auth: {type: none, tokenExchange: {audiense: billing-api}}\n")
    assert _run(f) == (1, [f"{f}:9: spec.auth.tokenExchange.audiense: unknown key; did you mean 'audience'?"])
