"""deploy/modes/: the proxy and shadow Deployments render, validate, and agree with the code.

Each mode's envoy.yaml must be exactly what `stoa-link envoy-config --mode … --config link.yaml`
prints for the committed link.yaml (the generator and the manifests cannot drift apart), link.yaml
must load as settings of that mode, and the rendered objects must validate against the Kubernetes
schemas. No apiserver runs here: what a cluster adds (scheduling, the volume claim being bound) is
not checked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from link.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
MODES = ("proxy", "shadow")
KUBECTL = shutil.which("kubectl")


@pytest.mark.parametrize("mode", MODES)
def test_envoy_yaml_is_the_generators_output(mode: str) -> None:
    from link.envoyconf.mode_files import expected

    assert (ROOT / "deploy" / "modes" / mode / "envoy.yaml").read_text() == expected(mode), (
        "stale: run `make envoy-configs` (python -m link.envoyconf.mode_files --write)")


@pytest.mark.parametrize("mode", MODES)
def test_link_yaml_loads_in_its_mode(mode: str) -> None:
    settings = load_settings(str(ROOT / "deploy" / "modes" / mode / "link.yaml"), env={})
    assert settings.mode == mode
    assert settings.envoy.supervise is False  # Envoy is the Deployment's other container


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (for `kubectl kustomize`) is not installed")
@pytest.mark.parametrize("mode", MODES)
def test_overlay_renders_and_validates(mode: str) -> None:
    assert KUBECTL is not None
    text = subprocess.run([KUBECTL, "kustomize", str(ROOT / "deploy" / "modes" / mode)],
                          check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = sorted(d["kind"] for d in docs)
    expected = ["ConfigMap", "ConfigMap", "Deployment", "Namespace", "Service"]
    assert kinds == sorted(expected + (["PersistentVolumeClaim"] if mode == "shadow" else []))
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"envoy", "link"}
    assert containers["link"]["args"][:1] == ["serve"]
    # The configMaps the pod mounts are the ones rendered (with kustomize's hash suffix).
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in names
