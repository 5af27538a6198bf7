"""deploy/observability: the Grafana dashboard and the alert rules use only metrics Link exports.

Every ``stoa_link_*`` name in a query must be a sample name of the code's
Prometheus registry (``link.metrics.REGISTRY``, which every ``metrics`` module
of ``link`` and ``mcp_server`` registers on), and every label a query selects
or groups by must be one of that metric's labels (or one Prometheus adds when
it scrapes a pod). A renamed metric or label fails here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import link
import mcp_server
from link.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
# Labels Prometheus attaches to a scraped pod (kubernetes_sd relabeling), and the bucket bound.
SCRAPE_LABELS = {"namespace", "pod", "container", "job", "instance", "le"}
_METRIC = re.compile(r"\b(stoa_link_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b(stoa_link_[a-z0-9_]+)\s*\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|ignoring|on|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def _import_metrics_modules() -> None:
    for package in (link, mcp_server):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] == "metrics":
                importlib.import_module(info.name)


def exported() -> dict[str, set[str]]:
    """Every sample name the registry can expose -> that metric's label names."""
    _import_metrics_modules()
    out: dict[str, set[str]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():
        out[name] = set(getattr(collector, "_labelnames", ()))
    return out


def dashboard_queries() -> Iterator[tuple[str, str]]:
    dash = json.loads((OBS / "grafana-dashboard.json").read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            yield f"variable {var['name']}", query["query"]


def rule_queries() -> Iterator[tuple[str, str]]:
    doc = yaml.safe_load((OBS / "prometheus-rules.yaml").read_text())
    for group in doc["spec"]["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]


def problems(where: str, expr: str, metrics: dict[str, set[str]]) -> list[str]:
    """What in one query does not exist in the registry."""
    found: list[str] = []
    names = set(_METRIC.findall(expr))
    if not names:
        found.append(f"{where}: no stoa_link_* metric in {expr!r}")
    for name in sorted(names - set(metrics)):
        found.append(f"{where}: {name} is not exported by Link")
    known = set().union(*(metrics.get(n, set()) for n in names)) | SCRAPE_LABELS
    for name, body in _SELECTOR.findall(expr):
        for label in _MATCHER.findall(body):
            if label not in metrics.get(name, set()) | SCRAPE_LABELS:
                found.append(f"{where}: {name} has no label {label!r}")
    for group in _GROUPING.findall(expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            if label not in known:
                found.append(f"{where}: groups by {label!r}, a label of none of {sorted(names)}")
    return found


@pytest.mark.parametrize("source", [dashboard_queries, rule_queries], ids=["dashboard", "rules"])
def test_every_query_uses_exported_metrics_and_labels(source: Any) -> None:
    metrics = exported()
    queries = list(source())
    assert queries
    found = [p for where, expr in queries for p in problems(where, expr, metrics)]
    assert found == []


@pytest.mark.parametrize(("expr", "expected"), [
    ('rate(stoa_link_no_such_metric_total[5m])', "is not exported"),
    ('sum by (colour) (rate(stoa_link_decisions_total[5m]))', "groups by 'colour'"),
    ('rate(stoa_link_decisions_total{flavour="x"}[5m])', "has no label 'flavour'"),
    ('up == 0', "no stoa_link_* metric"),
])
def test_the_check_catches_drift(expr: str, expected: str) -> None:
    assert any(expected in p for p in problems("probe", expr, exported()))


def test_the_dashboard_covers_what_a_platform_team_watches() -> None:
    text = " ".join(expr for _, expr in dashboard_queries())
    for metric in ("stoa_link_decision_seconds_bucket", "stoa_link_decisions_total", "stoa_link_requests_total",
                   "stoa_link_metering_spool_bytes", "stoa_link_metering_events_sent_total",
                   "stoa_link_identity_jwks_fetches_total", "stoa_link_mcp_tool_calls_total"):
        assert metric in text, metric
    dash = json.loads((OBS / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_every_alert_has_a_severity_and_says_what_to_do() -> None:
    doc = yaml.safe_load((OBS / "prometheus-rules.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    alerts = [r for g in doc["spec"]["groups"] for r in g["rules"]]
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
def test_the_observability_kustomization_renders() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(OBS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    objs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out.stdout) if o}
    cm = objs[("ConfigMap", "stoa-link-grafana-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["grafana-dashboard.json"])["uid"] == "stoa-link"
    assert ("PrometheusRule", "stoa-link") in objs
