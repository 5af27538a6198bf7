"""The cluster side: the API client, the names of the custom resources, and short error texts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from link.settings import RegistrySettings

__all__ = ["FIELD_MANAGER", "LOGGER", "PLURALS", "VERSION", "KubernetesConfigError", "brief",
           "build_api_client"]

# One logger for the whole source, whichever module speaks.
LOGGER = "stoa.link.registry.kubernetes"

VERSION = "v1alpha1"
PLURALS: Mapping[str, str] = {"Tool": "tools", "ToolSet": "toolsets", "Resource": "resources",
                               "Prompt": "prompts", "OpenAPIImport": "openapiimports"}
FIELD_MANAGER = "stoa-link"

# The config loaders are untyped in the client library.
_load_incluster_config: Any = k8s_config.load_incluster_config
_load_kube_config: Any = k8s_config.load_kube_config


class KubernetesConfigError(Exception):
    """No usable cluster configuration (neither in-cluster nor a kubeconfig)."""


def build_api_client(settings: RegistrySettings, *, pool_size: int = 10) -> k8s_client.ApiClient:
    """An API client for production: in-cluster config in a pod, else the kubeconfig.

    ``registry.kubeconfig`` wins when set; otherwise a pod's service account is
    used, and outside a pod ``$KUBECONFIG`` or ``~/.kube/config``.
    """
    cfg = k8s_client.Configuration()
    try:
        if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            _load_incluster_config(client_configuration=cfg)
        else:
            _load_kube_config(config_file=settings.kubeconfig, client_configuration=cfg)
    except (k8s_config.ConfigException, OSError) as exc:
        where = settings.kubeconfig or "in-cluster service account or ~/.kube/config"
        raise KubernetesConfigError(f"registry.kubeconfig: cannot load a cluster configuration from "
                                    f"{where}: {exc}") from None
    # One connection per watch stream plus the status writer, so none is discarded.
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, pool_size)
    return k8s_client.ApiClient(cfg)


def brief(exc: BaseException) -> str:
    """One short line on an API error or a connection failure, for logs and readiness."""
    if isinstance(exc, ApiException):
        return f"{exc.status} {(exc.reason or '').strip()}".strip()
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
