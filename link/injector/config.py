"""What the injector adds to a pod, and the names both sides (webhook and overlays) agree on."""

from __future__ import annotations

from dataclasses import dataclass, field

import link

ANNOTATION_INJECT = "stoa.dev/inject"
ANNOTATION_GATEWAY = "stoa.dev/primary-gateway"
ANNOTATION_INJECTED = "stoa.dev/injected"
ANNOTATION_VERSION = "stoa.dev/injector-version"

GATEWAYS = ("kong", "gravitee", "webmethods")

ENVOY_CONTAINER = "stoa-envoy"
LINK_CONTAINER = "stoa-link"

# Ports inside the pod. Envoy's listener is what the gateway's Service must target.
ENVOY_PORT = 8080
ENVOY_HEALTH_PORT = 9902  # `stoa-link envoy-config --health-port` (its default)
ENVOY_ADMIN_PORT = 9901  # loopback only (the generated bootstrap binds it to 127.0.0.1)
LINK_GRPC_PORT = 9191  # loopback only: only the pod's own Envoy may call Link
LINK_ADMIN_PORT = 8081  # /health/live, /health/ready, /metrics: kubelet and Prometheus reach it
RESERVED_PORTS = (ENVOY_PORT, ENVOY_HEALTH_PORT, ENVOY_ADMIN_PORT, LINK_GRPC_PORT, LINK_ADMIN_PORT)

ENVOY_CONFIG_DIR = "/etc/stoa-envoy"
LINK_DATA_DIR = "/var/lib/stoa"
LINK_SECRETS_DIR = "/var/run/secrets/stoa"


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
    link_args: tuple[str, ...] = ("serve",)
    envoy_log_level: str = "info"
    settings_configmap: str = "stoa-link-settings"
    secret_name: str = "stoa-link-secrets"
    envoy_resources: Resources = field(default_factory=lambda: Resources("100m", "128Mi", "256Mi"))
    link_resources: Resources = field(default_factory=lambda: Resources("100m", "256Mi", "512Mi"))
