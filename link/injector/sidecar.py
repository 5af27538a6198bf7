"""The sidecar itself: the Envoy and Link containers and their volumes, as Kubernetes JSON.

The webhook (``link.injector.admission``) and the static Kustomize overlays
(``link.injector.manifests``) both take their containers from here, so an
injected pod and an overlay-patched Deployment run exactly the same sidecar.
"""

from __future__ import annotations

from typing import Any

from link.injector.config import (
    ENVOY_CONFIG_DIR,
    ENVOY_CONTAINER,
    ENVOY_HEALTH_PORT,
    ENVOY_PORT,
    LINK_ADMIN_PORT,
    LINK_API_KEYS_DIR,
    LINK_CONFIG_DIR,
    LINK_CONTAINER,
    LINK_CONTRACTS_DIR,
    LINK_DATA_DIR,
    LINK_GRPC_PORT,
    LINK_HTTP_PORT,
    LINK_MCP_PORT,
    LINK_POLICY_DIR,
    LINK_SECRETS_DIR,
    LINK_TOOLS_DIR,
    SHARED_RUN_DIR,
    InjectorConfig,
    envoy_configmap_name,
)

VOLUME_ENVOY_CONFIG = "stoa-envoy-config"
VOLUME_ENVOY_TMP = "stoa-envoy-tmp"
VOLUME_LINK_DATA = "stoa-link-data"
VOLUME_LINK_TMP = "stoa-link-tmp"
VOLUME_LINK_SECRETS = "stoa-link-secrets"
VOLUME_LINK_CONFIG = "stoa-link-config"
VOLUME_LINK_POLICY = "stoa-link-policy"
VOLUME_LINK_CONTRACTS = "stoa-link-contracts"
VOLUME_LINK_TOOLS = "stoa-link-tools"
VOLUME_LINK_API_KEYS = "stoa-link-api-keys"
VOLUME_SHARED_RUN = "stoa-run"
VOLUME_NAMES = (VOLUME_ENVOY_CONFIG, VOLUME_ENVOY_TMP, VOLUME_LINK_DATA, VOLUME_LINK_TMP, VOLUME_LINK_SECRETS,
                VOLUME_LINK_CONFIG, VOLUME_LINK_POLICY, VOLUME_LINK_CONTRACTS, VOLUME_LINK_TOOLS,
                VOLUME_LINK_API_KEYS, VOLUME_SHARED_RUN)

# Where Link finds what the cluster supplies: (volume, mount path, read-only).
_LINK_INPUTS = (
    (VOLUME_LINK_CONFIG, LINK_CONFIG_DIR),
    (VOLUME_LINK_POLICY, LINK_POLICY_DIR),
    (VOLUME_LINK_CONTRACTS, LINK_CONTRACTS_DIR),
    (VOLUME_LINK_TOOLS, LINK_TOOLS_DIR),
    (VOLUME_LINK_API_KEYS, LINK_API_KEYS_DIR),
)

ENVOY_UID = 101  # the `envoy` user of the official image
LINK_UID = 10001  # the `stoa` user of the Link image (Dockerfile)


def _security_context(uid: int) -> dict[str, Any]:
    # Both containers run with a read-only root filesystem; everything they write is on a volume.
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def envoy_container(config: InjectorConfig) -> dict[str, Any]:
    """Envoy, the pod's front proxy: listens on 8080, asks Link, forwards to the gateway on loopback."""
    # Envoy's admin (port 9901) listens on 127.0.0.1 only (it can stop the proxy), so kubelet probes the
    # generated health listener: /ready answers 200, or 503 once Envoy starts draining.
    def listener(**timing: int) -> dict[str, Any]:
        return {"httpGet": {"path": "/ready", "port": ENVOY_HEALTH_PORT}, **timing}

    return {
        "name": ENVOY_CONTAINER,
        "image": config.envoy_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["envoy"],
        "args": [
            "-c", f"{ENVOY_CONFIG_DIR}/envoy.yaml",
            "--disable-hot-restart",  # no shared-memory restart protocol in a container
            "--log-level", config.envoy_log_level,
        ],
        "ports": [{"name": "stoa-http", "containerPort": ENVOY_PORT, "protocol": "TCP"},
                  {"name": "stoa-health", "containerPort": ENVOY_HEALTH_PORT, "protocol": "TCP"}],
        "readinessProbe": listener(periodSeconds=5, failureThreshold=3),
        "livenessProbe": listener(initialDelaySeconds=10, periodSeconds=10, failureThreshold=3),
        "resources": config.envoy_resources.as_k8s(),
        "securityContext": _security_context(ENVOY_UID),
        "volumeMounts": [
            {"name": VOLUME_ENVOY_CONFIG, "mountPath": ENVOY_CONFIG_DIR, "readOnly": True},
            {"name": VOLUME_ENVOY_TMP, "mountPath": "/tmp"},
            {"name": VOLUME_SHARED_RUN, "mountPath": SHARED_RUN_DIR},
        ],
    }


def link_container(gateway: str, config: InjectorConfig) -> dict[str, Any]:
    """STOA Link: Envoy's decision service on loopback, admin on 8081, MCP on 3001: one process."""

    def probe(path: str, port: int = LINK_ADMIN_PORT, **timing: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": port}, **timing}

    ports = [{"name": "stoa-admin", "containerPort": LINK_ADMIN_PORT, "protocol": "TCP"}]
    if config.mcp:
        ports.append({"name": "stoa-mcp", "containerPort": LINK_MCP_PORT, "protocol": "TCP"})
    # The process has started once MCP answers (it is served last); until then liveness waits.
    startup = probe("/healthz", LINK_MCP_PORT, periodSeconds=2, failureThreshold=30) if config.mcp else \
        probe("/health/live", periodSeconds=2, failureThreshold=30)
    return {
        "name": LINK_CONTAINER,
        "image": config.link_image,
        "imagePullPolicy": config.image_pull_policy,
        "args": list(config.link_args),
        # Settings of the deployment come from the namespace's ConfigMap/Secret; the explicit env
        # below fixes only what the pod layout requires, and wins over them.
        "envFrom": [
            {"configMapRef": {"name": config.settings_configmap, "optional": True}},
            {"secretRef": {"name": config.secret_name, "optional": True}},
        ],
        "env": [
            {"name": "GATEWAY_MODE", "value": "sidecar"},
            {"name": "PRIMARY_GATEWAY", "value": gateway},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            # Readiness changes become Events on this pod (link/kubeevents.py), by name and uid.
            {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "STOA_SERVER_GRPC_ADDRESS", "value": f"127.0.0.1:{LINK_GRPC_PORT}"},
            # Envoy's HTTP ext_authz decisions (the default transport), loopback only.
            {"name": "STOA_SERVER_HTTP_ADDRESS", "value": f"127.0.0.1:{LINK_HTTP_PORT}"},
            {"name": "STOA_SERVER_ADMIN_ADDRESS", "value": f"0.0.0.0:{LINK_ADMIN_PORT}"},
            {"name": "STOA_METERING_SPOOL_DIR", "value": f"{LINK_DATA_DIR}/spool"},
            {"name": "STOA_SNAPSHOTS_DB_PATH", "value": f"{LINK_DATA_DIR}/snapshots.db"},
            # MCP in the same process (ADR 0009), reachable from other pods through the Service.
            {"name": "STOA_MCP_ENABLED", "value": "true" if config.mcp else "false"},
            {"name": "STOA_MCP_HOST", "value": "0.0.0.0"},
            {"name": "GATEWAY_PORT", "value": str(LINK_MCP_PORT)},
        ],
        "ports": ports,
        "startupProbe": startup,
        "livenessProbe": probe("/health/live", periodSeconds=10, failureThreshold=3),
        "readinessProbe": probe("/health/ready", periodSeconds=5, failureThreshold=2),
        "resources": config.link_resources.as_k8s(),
        "securityContext": _security_context(LINK_UID),
        "volumeMounts": [
            {"name": VOLUME_LINK_DATA, "mountPath": LINK_DATA_DIR},
            {"name": VOLUME_LINK_TMP, "mountPath": "/tmp"},
            {"name": VOLUME_LINK_SECRETS, "mountPath": LINK_SECRETS_DIR, "readOnly": True},
            *({"name": name, "mountPath": path, "readOnly": True} for name, path in _LINK_INPUTS),
            {"name": VOLUME_SHARED_RUN, "mountPath": SHARED_RUN_DIR},
        ],
    }


def sidecar_containers(gateway: str, config: InjectorConfig) -> list[dict[str, Any]]:
    """Envoy first, then Link."""
    return [envoy_container(config), link_container(gateway, config)]


def sidecar_volumes(gateway: str, config: InjectorConfig) -> list[dict[str, Any]]:
    """The Envoy ConfigMap, scratch space, Link's data directory and its optional Secret."""
    return [
        {"name": VOLUME_ENVOY_CONFIG, "configMap": {"name": envoy_configmap_name(gateway)}},
        {"name": VOLUME_ENVOY_TMP, "emptyDir": {"sizeLimit": "64Mi"}},
        # The metering spool and the snapshot store; sized for an outage of the Kafka cluster.
        {"name": VOLUME_LINK_DATA, "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": VOLUME_LINK_TMP, "emptyDir": {"sizeLimit": "64Mi"}},
        # Mounted as files so a rotated gateway key is seen without a restart.
        {"name": VOLUME_LINK_SECRETS, "secret": {"secretName": config.secret_name, "optional": True}},
        # link.yaml is required: without it the pod waits in ContainerCreating with an event naming it.
        {"name": VOLUME_LINK_CONFIG, "configMap": {"name": config.config_configmap}},
        # The rest is optional: an absent one is an empty directory, and Link's settings decide
        # whether it is read (policy.paths, contracts.paths, registry.path, identity.api_keys_file).
        {"name": VOLUME_LINK_POLICY, "configMap": {"name": config.policy_configmap, "optional": True}},
        {"name": VOLUME_LINK_CONTRACTS, "configMap": {"name": config.contracts_configmap, "optional": True}},
        {"name": VOLUME_LINK_TOOLS, "configMap": {"name": config.tools_configmap, "optional": True}},
        {"name": VOLUME_LINK_API_KEYS, "secret": {"secretName": config.api_keys_secret, "optional": True}},
        {"name": VOLUME_SHARED_RUN, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]


__all__ = [
    "VOLUME_NAMES",
    "envoy_container",
    "link_container",
    "sidecar_containers",
    "sidecar_volumes",
]
