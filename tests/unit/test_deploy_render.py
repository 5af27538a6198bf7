"""deploy/: every overlay renders with `kubectl kustomize`, every object validates, and the pieces fit.

Built-in kinds are validated against the Kubernetes schemas (kubernetes-validate,
strict); CRD-typed objects (cert-manager Issuer/Certificate, ArgoCD Application)
are checked by structure.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from link.cli import main as cli_main
from link.envoyconf.files import expected_files
from link.injector import ANNOTATION_INJECT, ENVOY_CONTAINER, LINK_CONTAINER, InjectorConfig, sidecar_containers
from link.injector.manifests import WORKLOADS
from link.injector.manifests import main as manifests_main
from link.registry.kubernetes.api import PLURALS
from link.registry.kubernetes.source import WATCHED_KINDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GATEWAYS = ("kong", "gravitee", "webmethods", "agentgateway")
# overlay -> the namespace it installs into
OVERLAYS = {"kong": "kong", "gravitee": "gravitee", "webmethods": "webmethods", "agentgateway": "agentgateway",
            "injector": "stoa-system"}
K8S_VERSION = kubernetes_validate.latest_version()
CRD_TYPED = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                  "MutatingWebhookConfiguration"}
_HASH = re.compile(r"-[a-z0-9]{10}$")

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (for `kubectl kustomize`) is not installed")


@functools.cache
def render(path: str) -> tuple[dict[str, Any], ...]:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def find(objs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def unhash(name: str) -> str:
    """``stoa-link-envoy-kong-df7t7t862d`` -> ``stoa-link-envoy-kong`` (kustomize's generator suffix)."""
    return _HASH.sub("", name)


def _check_cert_manager(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    if obj["kind"] == "Issuer":
        assert set(spec) & {"selfSigned", "ca", "acme", "vault"}, "an Issuer needs one issuer type"
    else:
        assert spec["secretName"] and spec["issuerRef"]["name"] and spec["dnsNames"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders_and_every_object_validates(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    kinds = {o["kind"] for o in objs}
    assert {"CustomResourceDefinition", "Deployment", "Service", "MutatingWebhookConfiguration",
            "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Namespace"} <= kinds
    assert find(objs, "Namespace")["metadata"]["name"] == OVERLAYS[overlay]
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRD_TYPED:
            _check_cert_manager(obj)
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == OVERLAYS[overlay], f"{obj['kind']}/{obj['metadata']['name']}"


def test_base_renders_without_a_namespace() -> None:
    objs = render("base")
    assert {o["spec"]["names"]["kind"] for o in objs if o["kind"] == "CustomResourceDefinition"} == {
        "Tool", "ToolSet", "Resource", "Prompt", "OpenAPIImport"}
    assert all("namespace" not in o["metadata"] for o in objs)


@pytest.mark.parametrize("overlay", GATEWAYS)
def test_gateway_deployment_carries_the_injected_sidecar(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    workload = WORKLOADS[overlay]
    pod = find(objs, "Deployment", workload.deployment)["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    # The gateway's own container is kept beside the two sidecar containers (strategic merge puts
    # patch containers first; container order has no meaning in a pod).
    assert len(containers) == 3 and {ENVOY_CONTAINER, LINK_CONTAINER} < set(containers)

    # After kustomize, the containers are the injector's, but for the generated ConfigMap names.
    expected = {c["name"]: c for c in sidecar_containers(overlay, InjectorConfig())}
    for name in (ENVOY_CONTAINER, LINK_CONTAINER):
        got = yaml.safe_load(yaml.safe_dump(containers[name]))
        for ref in got.get("envFrom", []):
            if "configMapRef" in ref:
                ref["configMapRef"]["name"] = unhash(ref["configMapRef"]["name"])
        assert got == expected[name]
    assert pod["metadata"]["annotations"]["stoa.dev/injected"] == "true"

    # Every ConfigMap the pod needs is rendered (the others are optional); every Secret is optional.
    config_maps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert unhash(volumes["stoa-envoy-config"]["configMap"]["name"]) == f"stoa-link-envoy-{overlay}"
    assert unhash(volumes["stoa-link-config"]["configMap"]["name"]) == "stoa-link-config"
    for v in volumes.values():
        if "configMap" in v:
            assert v["configMap"]["name"] in config_maps or v["configMap"].get("optional") is True
        if "secret" in v:
            assert v["secret"].get("optional") is True
    for ref in containers[LINK_CONTAINER]["envFrom"]:
        if "configMapRef" in ref:
            assert ref["configMapRef"]["name"] in config_maps
    # Link reads Tools as the account the RBAC is bound to.
    assert pod["spec"]["serviceAccountName"] == "stoa-link"


@pytest.mark.parametrize("overlay", GATEWAYS)
def test_gateway_service_points_at_envoy(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    workload = WORKLOADS[overlay]
    service = find(objs, "Service", workload.service)
    pod = find(objs, "Deployment", workload.deployment)["spec"]["template"]
    named_ports = {p["name"]: (c["name"], p["containerPort"])
                   for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == workload.service_port]
    assert named_ports[port["targetPort"]] == (ENVOY_CONTAINER, 8080)
    selector = service["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", GATEWAYS)
def test_envoy_configmap_is_the_generator_output(overlay: str, tmp_path: Path) -> None:
    objs = render(f"overlays/{overlay}")
    (cm,) = [o for o in objs
             if o["kind"] == "ConfigMap" and unhash(o["metadata"]["name"]) == f"stoa-link-envoy-{overlay}"]
    out = tmp_path / "envoy.yaml"
    assert cli_main(["envoy-config", "--primary-gateway", overlay, "-o", str(out)]) == 0
    assert cm["data"]["envoy.yaml"] == out.read_text() == expected_files()[f"{overlay}.yaml"]


def test_generated_overlay_files_are_current() -> None:
    assert manifests_main(["--check"]) == 0, "run `python -m link.injector.manifests --write`"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_injector_wiring_names_the_overlay_namespace(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    namespace = OVERLAYS[overlay]
    webhook = find(objs, "MutatingWebhookConfiguration")
    (hook,) = webhook["webhooks"]
    service = hook["clientConfig"]["service"]
    assert (service["name"], service["namespace"], service["path"]) == ("stoa-link-injector", namespace, "/mutate")
    injector_svc = find(objs, "Service", "stoa-link-injector")
    assert service["port"] in {p["port"] for p in injector_svc["spec"]["ports"]}
    cert = find(objs, "Certificate", "stoa-link-injector")
    assert f"stoa-link-injector.{namespace}.svc" in cert["spec"]["dnsNames"]
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{namespace}/stoa-link-injector"
    injector = find(objs, "Deployment", "stoa-link-injector")["spec"]["template"]["spec"]
    assert any(v.get("secret", {}).get("secretName") == cert["spec"]["secretName"] for v in injector["volumes"])
    binding = find(objs, "ClusterRoleBinding", "stoa-link-registry")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stoa-link", "namespace": namespace}]


def test_webhook_policy_and_selectors() -> None:
    objs = render("overlays/kong")
    (hook,) = find(objs, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["namespaceSelector"] == {"matchLabels": {"stoa.dev/injection": "enabled"}}
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert ANNOTATION_INJECT in hook["matchConditions"][0]["expression"]
    # The injector's own pods are never sent to it (they could not be created while it is down).
    labels = find(objs, "Deployment", "stoa-link-injector")["spec"]["template"]["metadata"]["labels"]
    (expr,) = hook["objectSelector"]["matchExpressions"]
    assert expr["operator"] == "NotIn" and labels[expr["key"]] in expr["values"]


def test_rbac_is_the_registry_kinds_and_the_pods_events_only() -> None:
    objs = render("overlays/kong")
    roles = {o["metadata"]["name"]: o for o in objs if o["kind"] in ("Role", "ClusterRole")}
    assert sorted(roles) == ["stoa-link-events", "stoa-link-registry"]
    # Events: create, in the pod's own namespace (a Role, not a ClusterRole), nothing else.
    events = roles["stoa-link-events"]
    assert events["kind"] == "Role" and events["metadata"]["namespace"] == "kong"
    assert events["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    rules = sorted((tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])))
                   for r in roles["stoa-link-registry"]["rules"])
    # Exactly what the Kubernetes source watches (and writes the status of), no more.
    watched = sorted(PLURALS[kind] for kind in WATCHED_KINDS)
    assert watched == ["openapiimports", "prompts", "resources", "tools", "toolsets"]
    assert rules == [
        (("gostoa.dev",), tuple(watched), ("get", "list", "watch")),
        (("gostoa.dev",), tuple(f"{p}/status" for p in watched), ("patch", "update")),
    ]
    bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert sorted(b["roleRef"]["name"] for b in bindings) == ["stoa-link-events", "stoa-link-registry"]
    assert {(b["subjects"][0]["name"], b["subjects"][0]["namespace"]) for b in bindings} == {("stoa-link", "kong")}
    injector_sa = find(objs, "ServiceAccount", "stoa-link-injector")
    assert injector_sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", GATEWAYS)
def test_argocd_application_points_at_the_overlay(overlay: str) -> None:
    app = yaml.safe_load((DEPLOY / "argocd" / f"application-{overlay}.yaml").read_text())
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    spec = app["spec"]
    assert spec["source"]["path"] == f"deploy/overlays/{overlay}"
    assert (ROOT / spec["source"]["path"] / "kustomization.yaml").is_file()
    assert spec["source"]["repoURL"] and spec["source"]["targetRevision"]
    assert spec["destination"]["server"] and spec["destination"]["namespace"] == overlay
    assert spec["project"] and "ServerSideApply=true" in spec["syncPolicy"]["syncOptions"]


def test_one_image_setting_moves_link_everywhere(tmp_path: Path) -> None:
    """Editing the overlay's `images:` retargets Link, the injector, and what the injector injects."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    path = tmp_path / "deploy" / "overlays" / "kong" / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    (image,) = kustomization["images"]
    image.update(newName="registry.example.com/platform/stoa-link", newTag="1.2.3")
    path.write_text(yaml.safe_dump(kustomization))
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(path.parent)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    objs = tuple(d for d in yaml.safe_load_all(out.stdout) if d)
    wanted = "registry.example.com/platform/stoa-link:1.2.3"
    gateway = find(objs, "Deployment", WORKLOADS["kong"].deployment)["spec"]["template"]["spec"]
    assert {c["name"]: c["image"] for c in gateway["containers"]}[LINK_CONTAINER] == wanted
    (injector,) = find(objs, "Deployment", "stoa-link-injector")["spec"]["template"]["spec"]["containers"]
    assert injector["image"] == wanted
    assert f"--link-image={wanted}" in injector["args"]


@pytest.mark.parametrize("overlay", GATEWAYS)
def test_mcp_is_served_by_the_link_container_and_reachable(overlay: str) -> None:
    """MCP on 3001: a container port of Link, a port of the gateway's Service, allowed by the NetworkPolicy."""
    objs = render(f"overlays/{overlay}")
    workload = WORKLOADS[overlay]
    pod = find(objs, "Deployment", workload.deployment)["spec"]["template"]["spec"]
    link_c = {c["name"]: c for c in pod["containers"]}[LINK_CONTAINER]
    assert {"name": "stoa-mcp", "containerPort": 3001, "protocol": "TCP"} in link_c["ports"]
    env = {e["name"]: e.get("value") for e in link_c["env"]}
    assert (env["STOA_MCP_ENABLED"], env["STOA_MCP_HOST"], env["GATEWAY_PORT"]) == ("true", "0.0.0.0", "3001")
    assert link_c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 3001}
    service = find(objs, "Service", workload.service)
    assert {"name": "stoa-mcp", "port": 3001, "protocol": "TCP", "targetPort": "stoa-mcp"} in service["spec"]["ports"]
    (policy,) = [o for o in objs if o["kind"] == "NetworkPolicy"]
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert {8080, 8081, 3001} <= allowed
    # The gateway's own port is not open to other pods: only Envoy reaches it, over loopback.
    from link.settings import PRIMARY_GATEWAY_PORTS

    assert PRIMARY_GATEWAY_PORTS[overlay] not in allowed


@pytest.mark.parametrize("overlay", GATEWAYS)
def test_link_settings_file_loads_and_names_only_mounted_paths(overlay: str, tmp_path: Path) -> None:
    """The overlay's link.yaml is valid Link configuration, and every file it names is on a volume of Link."""
    from link.settings import load_settings

    objs = render(f"overlays/{overlay}")
    pod = find(objs, "Deployment", WORKLOADS[overlay].deployment)["spec"]["template"]["spec"]
    link_c = {c["name"]: c for c in pod["containers"]}[LINK_CONTAINER]
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and unhash(o["metadata"]["name"]) == "stoa-link-config"]
    path = tmp_path / "link.yaml"
    path.write_text(cm["data"]["link.yaml"])
    settings = load_settings(str(path), env={})
    assert settings.routes, "the overlay ships at least one example route"
    assert settings.policy.enabled and settings.policy.paths == []  # the built-in default policy
    assert settings.registry.source == "kubernetes"
    mounts = [m["mountPath"] for m in link_c["volumeMounts"]]
    named = [settings.identity.api_keys_file, *settings.policy.paths, *settings.contracts.paths,
             *([settings.registry.path] if settings.registry.path else [])]
    for file in filter(None, named):
        assert any(file == m or file.startswith(m.rstrip("/") + "/") for m in mounts), file
    # MCP checks Host against the names the Service gives it, so OAuth tokens can be bound to them:
    # with JWTs on (KEYCLOAK_URL) the same file must still load (no exit 2 for a missing mcp.resource_url).
    service, namespace = WORKLOADS[overlay].service, OVERLAYS[overlay]
    assert f"{service}.{namespace}.svc:3001" in settings.mcp.allowed_hosts
    container_env = {e["name"]: e["value"] for e in link_c["env"] if "value" in e}
    assert container_env["STOA_MCP_HOST"] == "0.0.0.0"  # off loopback: Host is checked only by allowed_hosts
    load_settings(str(path), env={**container_env, "KEYCLOAK_URL": "https://keycloak.example.com"})
    # The args point at this file where the ConfigMap is mounted.
    config_mount = next(m["mountPath"] for m in link_c["volumeMounts"] if m["name"] == "stoa-link-config")
    assert link_c["args"][link_c["args"].index("--config") + 1] == f"{config_mount}/link.yaml"
