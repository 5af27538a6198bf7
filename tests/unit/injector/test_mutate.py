"""mutate(): AdmissionReview in, JSON patch out, applied to real-looking Kong, Gravitee, webMethods pods."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from link.injector import (
    ANNOTATION_INJECTED,
    ENVOY_CONTAINER,
    LINK_CONTAINER,
    InjectorConfig,
    envoy_configmap_name,
    mutate,
    mutate_body,
)

PODS = Path(__file__).parent / "pods"
GATEWAYS = ("kong", "gravitee", "webmethods", "agentgateway")
CONFIG = InjectorConfig()
K8S_VERSION = kubernetes_validate.latest_version()


def load_pod(gateway: str) -> dict[str, Any]:
    return yaml.safe_load((PODS / f"{gateway}.yaml").read_text())


def review(pod: Any, *, operation: str = "CREATE", kind: str = "Pod", group: str = "") -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for a pod creation."""
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    namespace = metadata.get("namespace", "default") if isinstance(metadata, dict) else "default"
    resource = "pods" if kind == "Pod" else kind.lower() + "s"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def answer(rev: dict[str, Any]) -> dict[str, Any]:
    out = mutate(rev, CONFIG)
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    response = out["response"]
    assert response["uid"] == rev["request"]["uid"]
    json.dumps(out)  # what the server sends must serialise
    return response


def apply(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(pod, ops)


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_annotated_pod_gets_the_sidecar(gateway: str) -> None:
    pod = load_pod(gateway)
    original = copy.deepcopy(pod)
    patched = apply(pod, answer(review(pod)))

    # The gateway's own containers and volumes are kept as they were, in place.
    n = len(original["spec"]["containers"])
    assert patched["spec"]["containers"][:n] == original["spec"]["containers"]
    assert [c["name"] for c in patched["spec"]["containers"][n:]] == [ENVOY_CONTAINER, LINK_CONTAINER]
    for v in original["spec"].get("volumes", []):
        assert v in patched["spec"]["volumes"]
    assert patched["metadata"]["annotations"][ANNOTATION_INJECTED] == "true"
    for key, value in original["metadata"]["annotations"].items():
        assert patched["metadata"]["annotations"][key] == value

    containers = by_name(patched["spec"]["containers"])
    volumes = by_name(patched["spec"]["volumes"])
    envoy, link = containers[ENVOY_CONTAINER], containers[LINK_CONTAINER]
    assert envoy["image"] == CONFIG.envoy_image and link["image"] == CONFIG.link_image
    assert volumes["stoa-envoy-config"]["configMap"]["name"] == envoy_configmap_name(gateway)
    config_mount = next(m for m in envoy["volumeMounts"] if m["name"] == "stoa-envoy-config")
    config_path = envoy["args"][envoy["args"].index("-c") + 1]
    assert config_path == f"{config_mount['mountPath']}/envoy.yaml"  # the ConfigMap's key, where Envoy reads it
    env = {e["name"]: e.get("value") for e in link["env"]}
    assert env["PRIMARY_GATEWAY"] == gateway and env["GATEWAY_MODE"] == "sidecar"
    assert env["STOA_SERVER_GRPC_ADDRESS"] == "127.0.0.1:9191"  # Link is reachable from the pod only
    assert link["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": 8081}
    assert link["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": 8081}
    for c in (envoy, link):
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["runAsNonRoot"] is True
        for mount in c["volumeMounts"]:
            assert mount["name"] in volumes, f"{c['name']} mounts a volume the pod does not have"

    # No two containers of the pod claim the same port.
    ports = [p["containerPort"] for c in patched["spec"]["containers"] for p in c.get("ports", [])]
    assert len(ports) == len(set(ports))
    # The result is a valid Pod for the Kubernetes API.
    kubernetes_validate.validate(patched, K8S_VERSION, strict=True)


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_injection_is_idempotent(gateway: str) -> None:
    pod = load_pod(gateway)
    patched = apply(pod, answer(review(pod)))
    again = answer(review(patched))
    assert again["allowed"] is True and "patch" not in again


def test_a_pod_that_already_runs_link_is_left_alone() -> None:
    pod = load_pod("kong")
    pod["spec"]["containers"].append({"name": LINK_CONTAINER, "image": "example/stoa-link:dev"})
    response = answer(review(pod))
    assert response == {"uid": response["uid"], "allowed": True}


@pytest.mark.parametrize("annotations", [None, {}, {"stoa.dev/primary-gateway": "kong"},
                                         {"stoa.dev/inject": "false", "stoa.dev/primary-gateway": "kong"}])
def test_pods_not_asking_for_injection_are_untouched(annotations: dict[str, str] | None) -> None:
    pod = load_pod("kong")
    if annotations is None:
        del pod["metadata"]["annotations"]
    else:
        pod["metadata"]["annotations"] = annotations
    response = answer(review(pod))
    assert response == {"uid": response["uid"], "allowed": True}


def test_an_odd_inject_value_is_untouched_with_a_warning() -> None:
    pod = load_pod("gravitee")
    pod["metadata"]["annotations"]["stoa.dev/inject"] = "yes"
    response = answer(review(pod))
    assert response["allowed"] is True and "patch" not in response
    assert "stoa.dev/inject" in response["warnings"][0] and '"true"' in response["warnings"][0]


@pytest.mark.parametrize(("operation", "kind", "group"), [
    ("UPDATE", "Pod", ""), ("DELETE", "Pod", ""), ("CONNECT", "Pod", ""),
    ("CREATE", "Deployment", "apps"), ("CREATE", "Service", ""),
])
def test_other_operations_and_kinds_are_untouched(operation: str, kind: str, group: str) -> None:
    response = answer(review(load_pod("kong"), operation=operation, kind=kind, group=group))
    assert response == {"uid": response["uid"], "allowed": True}


@pytest.mark.parametrize(("gateway", "needle"), [(None, "missing"), ("nginx", "'nginx'"), ("", "''")])
def test_annotated_pod_with_a_bad_gateway_is_refused(gateway: str | None, needle: str) -> None:
    pod = load_pod("kong")
    if gateway is None:
        del pod["metadata"]["annotations"]["stoa.dev/primary-gateway"]
    else:
        pod["metadata"]["annotations"]["stoa.dev/primary-gateway"] = gateway
    response = answer(review(pod))
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    message = response["status"]["message"]
    assert "stoa.dev/primary-gateway" in message and needle in message
    assert "kong, gravitee, webmethods" in message


def test_port_collision_is_refused_with_the_culprit() -> None:
    pod = load_pod("kong")
    pod["spec"]["containers"][0]["ports"].append({"name": "alt", "containerPort": 8080})
    response = answer(review(pod))
    assert response["allowed"] is False and "proxy:8080" in response["status"]["message"]


def test_volume_collision_and_host_network_are_refused() -> None:
    pod = load_pod("gravitee")
    pod["spec"]["volumes"].append({"name": "stoa-link-data", "emptyDir": {}})
    response = answer(review(pod))
    assert response["allowed"] is False and "stoa-link-data" in response["status"]["message"]
    pod = load_pod("webmethods")
    pod["spec"]["hostNetwork"] = True
    response = answer(review(pod))
    assert response["allowed"] is False and "hostNetwork" in response["status"]["message"]


def _good() -> dict[str, Any]:
    return review(load_pod("kong"))


def _set(path: str, value: Any) -> dict[str, Any]:
    rev = _good()
    node: Any = rev
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is KeyError:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return rev


@pytest.mark.parametrize(("rev", "needle"), [
    (None, "AdmissionReview object"),
    ([1, 2], "AdmissionReview object"),
    ("review", "AdmissionReview object"),
    ({}, "kind AdmissionReview"),
    (_set("apiVersion", "admission.k8s.io/v1beta1"), "admissionReviewVersions"),
    (_set("request", KeyError), "request is missing"),
    (_set("request", "x"), "request is missing"),
    (_set("request.uid", KeyError), "uid is missing"),
    (_set("request.uid", 42), "uid is missing"),
    (_set("request.object", KeyError), "request.object"),
    (_set("request.object", ["pod"]), "request.object"),
    (_set("request.object.metadata", "kong"), "request.object.metadata"),
    (_set("request.object.metadata.annotations", ["stoa.dev/inject"]), "annotations"),
    (_set("request.object.spec", KeyError), "spec.containers"),
    (_set("request.object.spec.containers", []), "spec.containers"),
    (_set("request.object.spec.containers", "proxy"), "spec.containers"),
])
def test_malformed_reviews_get_a_clear_admission_error(rev: Any, needle: str) -> None:
    out = mutate(rev, CONFIG)
    response = out["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400 and response["status"]["reason"] == "BadRequest"
    assert needle in response["status"]["message"]
    expected_uid = rev["request"]["uid"] if isinstance(rev, dict) and isinstance(
        rev.get("request"), dict) and isinstance(rev["request"].get("uid"), str) else ""
    assert response["uid"] == expected_uid


def test_a_body_that_is_not_json_gets_400() -> None:
    status, out = mutate_body(b"{not json", CONFIG)
    assert status == 400
    assert out["response"]["allowed"] is False and "not JSON" in out["response"]["status"]["message"]
    status, out = mutate_body(json.dumps(_good()).encode(), CONFIG)
    assert status == 200 and out["response"]["allowed"] is True


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["metadata", "spec", "kind", "apiVersion"]), _json, max_size=4),
       st.sampled_from(["true", "TRUE", None]))
def test_garbage_pods_never_crash(obj: dict[str, Any], inject: str | None) -> None:
    if inject is not None and isinstance(obj.get("metadata"), dict):
        obj["metadata"]["annotations"] = {"stoa.dev/inject": inject, "stoa.dev/primary-gateway": "kong"}
    out = mutate(review(obj), CONFIG)
    assert isinstance(out["response"]["allowed"], bool)
    json.dumps(out)


@settings(max_examples=100, deadline=None)
@given(_json)
def test_garbage_reviews_never_crash(rev: Any) -> None:
    out = mutate(rev, CONFIG)
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["message"]


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_injected_link_serves_mcp_and_reads_what_the_cluster_supplies(gateway: str) -> None:
    """MCP on 3001 in the Link container; link.yaml required, policy/contracts/tools/API keys optional."""
    patched = apply(load_pod(gateway), answer(review(load_pod(gateway))))
    link = by_name(patched["spec"]["containers"])[LINK_CONTAINER]
    assert {"name": "stoa-mcp", "containerPort": 3001, "protocol": "TCP"} in link["ports"]
    env = {e["name"]: e.get("value") for e in link["env"]}
    assert (env["STOA_MCP_ENABLED"], env["STOA_MCP_HOST"], env["GATEWAY_PORT"]) == ("true", "0.0.0.0", "3001")
    assert link["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 3001}
    assert link["args"] == ["serve", "--config", "/etc/stoa-link/config/link.yaml"]
    volumes = by_name(patched["spec"]["volumes"])
    mounts = {m["mountPath"]: m["name"] for m in link["volumeMounts"]}
    assert volumes[mounts["/etc/stoa-link/config"]]["configMap"] == {"name": "stoa-link-config"}
    for path, kind in (("/etc/stoa-link/policy", "configMap"), ("/etc/stoa-link/contracts", "configMap"),
                       ("/etc/stoa-link/tools", "configMap"), ("/var/run/secrets/stoa-api-keys", "secret")):
        assert volumes[mounts[path]][kind]["optional"] is True, path
    # A shared scratch directory for a Unix socket between Envoy and Link.
    envoy = by_name(patched["spec"]["containers"])[ENVOY_CONTAINER]
    shared = {m["name"] for m in envoy["volumeMounts"]} & {m["name"] for m in link["volumeMounts"]}
    assert [volumes[n] for n in shared] == [{"name": "stoa-run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]


def test_without_mcp_the_container_says_so() -> None:
    config = InjectorConfig(mcp=False)
    patched = apply(load_pod("kong"), mutate(review(load_pod("kong")), config)["response"])
    link = by_name(patched["spec"]["containers"])[LINK_CONTAINER]
    assert [p["containerPort"] for p in link["ports"]] == [8081]
    assert {e["name"]: e.get("value") for e in link["env"]}["STOA_MCP_ENABLED"] == "false"
    assert link["startupProbe"]["httpGet"] == {"path": "/health/live", "port": 8081}


def test_a_pod_using_the_mcp_port_is_refused() -> None:
    pod = load_pod("kong")
    pod["spec"]["containers"][0]["ports"].append({"name": "mcp", "containerPort": 3001, "protocol": "TCP"})
    response = answer(review(pod))
    assert response["allowed"] is False and response["status"]["code"] == 422
    assert "proxy:3001" in response["status"]["message"]
