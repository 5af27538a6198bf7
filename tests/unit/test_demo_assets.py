"""The demo's embedded assets (Tool manifests, contract, policy) pass `stoa-link validate`."""

from __future__ import annotations

from importlib import resources

from link.cli import main as cli_main


def test_demo_assets_validate(capsys) -> None:  # type: ignore[no-untyped-def]
    assets = resources.files("link.demo") / "assets"
    paths = [str(assets / "registry"), str(assets / "contracts"), str(assets / "policy.rego")]
    assert cli_main(["validate", *paths]) == 0, capsys.readouterr().out


def test_validate_reports_a_broken_tool(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "tool.yaml"
    bad.write_text("apiVersion: gostoa.dev/v1alpha1\nkind: Tool\nmetadata: {name: t, namespace: acme}\n"
                   "spec:\n  displayName: T\n  description: d\n  method: FETCH\n")
    assert cli_main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert str(bad) in out and "spec." in out
