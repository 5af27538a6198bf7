"""What the injector adds to a pod, and the names both sides (webhook and overlays) agree on."""

from __future__ import annotations

from dataclasses import dataclass, field

import link

ANNOTATION_INJECT = "stoa.dev/inject"
ANNOTATION_GATEWAY = "stoa.dev/primary-gateway"
ANNOTATION_INJECTED = "stoa.dev/injected"
ANNOTATION_VERSION = "stoa.dev/injector-version"

GATEWAYS = ("kong", "gravitee", "webmethods", "agentgateway")

ENVOY_CONTAINER = "stoa-envoy"
LINK_CONTAINER = "stoa-link"

# Ports inside the pod. Envoy's listener is what the gateway's Service must target.
ENVOY_PORT = 8080
ENVOY_HEALTH_PORT = 9902  # `stoa-link envoy-config --health-port` (its default)
ENVOY_ADMIN_PORT = 9901  # loopback only (the generated bootstrap binds it to 127.0.0.1)
LINK_GRPC_PORT = 9191  # loopback only: only the pod's own Envoy may call Link
LINK_HTTP_PORT = 9190  # loopback only: Link's HTTP ext_authz decision server (server.http_address)
LINK_ADMIN_PORT = 8081  # /health/live, /health/ready, /metrics: kubelet and Prometheus reach it
LINK_MCP_PORT = 3001  # MCP (Streamable HTTP, SSE, REST), served by the same `stoa-link serve` process
RESERVED_PORTS = (ENVOY_PORT, ENVOY_HEALTH_PORT, ENVOY_ADMIN_PORT, LINK_HTTP_PORT, LINK_GRPC_PORT, LINK_ADMIN_PORT,
                  LINK_MCP_PORT)

ENVOY_CONFIG_DIR = "/etc/stoa-envoy"
LINK_DATA_DIR = "/var/lib/stoa"
LINK_SECRETS_DIR = "/var/run/secrets/stoa"
# What a cluster supplies to Link, each from its own ConfigMap or Secret (docs/deploy.md, ADR 0009).
LINK_CONFIG_DIR = "/etc/stoa-link/config"  # ConfigMap stoa-link-config: link.yaml (routes, policy.paths …)
LINK_CONFIG_FILE = f"{LINK_CONFIG_DIR}/link.yaml"
LINK_POLICY_DIR = "/etc/stoa-link/policy"  # ConfigMap stoa-link-policy (optional): .rego files or a bundle
LINK_CONTRACTS_DIR = "/etc/stoa-link/contracts"  # ConfigMap stoa-link-contracts (optional): UAC contracts
LINK_TOOLS_DIR = "/etc/stoa-link/tools"  # ConfigMap stoa-link-tools (optional): Tool/ToolSet manifests
LINK_API_KEYS_DIR = "/var/run/secrets/stoa-api-keys"  # Secret stoa-link-api-keys (optional): hashed API keys
# An emptyDir both containers mount: room for a Unix socket between Envoy and Link.
SHARED_RUN_DIR = "/var/run/stoa"


def envoy_configmap_name(gateway: str) -> str:
    """The ConfigMap holding ``envoy.yaml`` from ``stoa-link envoy-config --primary-gateway <gateway>``."""
    return f"stoa-link-envoy-{gateway}"


@dataclass(frozen=True, slots=True)
class Resources:
    """Requests (and a memory limit) for one container."""

    cpu: str
    memory: str
    memory_limit: str

    def as_k8s(self) -> dict[str, dict[str, str]]:
        # No CPU limit on purpose: throttling a proxy on the request path costs latency, not just speed.
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, "limits": {"memory": self.memory_limit}}


@dataclass(frozen=True, slots=True)
class InjectorConfig:
    """Images and names the injected sidecar uses.

    Link's own settings are not baked in: the Link container reads them from the
    optional ConfigMap ``settings_configmap`` and Secret ``secret_name`` of the
    pod's namespace (``envFrom``), so one injector serves every namespace.
    """

    envoy_image: str = "envoyproxy/envoy:v1.40-latest"
    link_image: str = f"ghcr.io/stoa-platform/stoa-link:{link.__version__}"
    image_pull_policy: str = "IfNotPresent"
    link_args: tuple[str, ...] = ("serve", "--config", LINK_CONFIG_FILE)
    envoy_log_level: str = "info"
    settings_configmap: str = "stoa-link-settings"
    secret_name: str = "stoa-link-secrets"
    config_configmap: str = "stoa-link-config"
    policy_configmap: str = "stoa-link-policy"
    contracts_configmap: str = "stoa-link-contracts"
    tools_configmap: str = "stoa-link-tools"
    api_keys_secret: str = "stoa-link-api-keys"
    # MCP on LINK_MCP_PORT in the Link process (port, Service port, probe); False sets mcp.enabled=false.
    mcp: bool = True
    envoy_resources: Resources = field(default_factory=lambda: Resources("100m", "128Mi", "256Mi"))
    link_resources: Resources = field(default_factory=lambda: Resources("100m", "256Mi", "512Mi"))
