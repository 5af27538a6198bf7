"""What proxy mode's flags mean for the rest of Link, written out as settings.

``--opa-endpoint URL`` makes a remote OPA (its REST Data API, at the path of
``policy.query``) the policy engine. With no routes configured, every request
takes one catch-all route whose identity is *optional*: a caller without
credentials reaches the policy as the anonymous principal, and the policy's
``allow`` decides; a caller with a bad credential is still a 401. With client
certificates configured, Envoy's verified certificate (XFCC, which Envoy sets
itself) is a credential.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from link.settings import ConfigError, RouteSettings, Settings, TransformSettings

__all__ = ["contract_routes", "effective_settings", "opa_data_url"]

_PARAM = re.compile(r"\{([^{}]*)\}")


def opa_data_url(endpoint: str, query: str) -> str:
    """``http://opa:8181`` + ``data.envoy.authz.allow`` -> ``http://opa:8181/v1/data/envoy/authz/allow``."""
    path = query.removeprefix("data.").replace(".", "/")
    return f"{endpoint.rstrip('/')}/v1/data/{path}"


def effective_settings(settings: Settings) -> Settings:
    """The settings proxy mode runs on (unchanged outside proxy mode)."""
    if settings.mode != "proxy":
        return settings
    p = settings.proxy
    update: dict[str, Any] = {}
    if p.opa_endpoint:
        update["policy"] = settings.policy.model_copy(update={
            "enabled": True, "engine": "remote", "remote_url": opa_data_url(p.opa_endpoint, settings.policy.query)})
    routes = list(settings.routes)
    if not routes and settings.contracts.enabled and settings.contracts.paths:
        routes = contract_routes(settings)
    if not routes:
        routes = [RouteSettings(name="default", prefix="/", optional_identity=True)]
    update["routes"] = routes
    if p.tls_client_ca_file:
        kinds = list(dict.fromkeys([*settings.identity.default_credentials, "mtls"]))
        update["identity"] = settings.identity.model_copy(update={
            "mtls_trust_xfcc": True, "default_credentials": kinds})
    return settings.model_copy(update=update)


def contract_routes(settings: Settings) -> list[RouteSettings]:
    """One route per endpoint of every non-draft UAC contract that names a ``backend_url``.

    "Define once, expose everywhere": the contract's path template is the route, its methods the
    route's methods, its backend URL the upstream (a different backend path becomes a template
    rewrite), its tenant the route's tenant, and the contract governs the route.
    """
    from link.contracts.catalog import ContractError, load_catalog

    try:
        catalog = load_catalog(settings.contracts.paths)
    except ContractError as exc:
        raise ConfigError("contracts.paths", str(exc).splitlines()[0]) from None
    routes: list[RouteSettings] = []
    for contract in catalog.contracts.values():
        if contract.status == "draft":
            continue
        for i, ep in enumerate(contract.endpoints):
            if not ep.backend_url:
                continue
            backend = urlsplit(ep.backend_url)
            upstream = f"{backend.scheme}://{backend.netloc}"
            backend_path = backend.path or "/"
            missing = set(_PARAM.findall(backend_path)) - set(_PARAM.findall(ep.path))
            if missing:
                raise ConfigError("contracts.paths", f"{contract.name}: endpoint {ep.path}: backend_url names "
                                  f"{sorted(missing)}, which the path does not")
            transform = None
            if backend_path != ep.path:
                transform = TransformSettings(path_template_rewrite=backend_path)
            routes.append(RouteSettings(
                name=f"{contract.name}.{ep.operation_id or i}", template=ep.path, methods=list(ep.methods),
                tenant=contract.tenant_id, api=contract.name, contract=contract.name, upstream=upstream,
                transform=transform))
    return routes
