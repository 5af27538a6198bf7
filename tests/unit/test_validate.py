"""`stoa-link validate`: one line per problem with file, line, field and reason; exit 1 on any."""

from __future__ import annotations

import io
from pathlib import Path

from link.validate import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

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


def _run(*paths: Path | str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main([str(p) for p in paths], out=out)
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
    assert f"{tmp_path / 'other.yaml'}:1: kind: unknown kind 'Deployment': expected Tool, ToolSet or a UAC " \
           "contract" in lines


def test_missing_path(tmp_path: Path) -> None:
    assert _run(tmp_path / "nope") == (1, [f"{tmp_path / 'nope'}: does not exist"])
