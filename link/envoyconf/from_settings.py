"""Derive the Envoy options from Link's own settings, so routes are declared once."""

from __future__ import annotations

from typing import Any

from link.envoyconf.bootstrap import EnvoyOptions
from link.settings import RouteSettings, Settings


def _route_prefix(route: RouteSettings) -> str:
    path = route.prefix if route.prefix is not None else (route.template or "/")
    # A template's literal head is the prefix Envoy can match on: /orders/{id}/items -> /orders/
    head = path.split("{", 1)[0]
    return head or "/"


def body_prefix(route: RouteSettings) -> str | None:
    """The path prefix Envoy should send to ext_proc for this route, or None if it needs no stream.

    ext_proc serves a route that asks for it (``ext_proc``) or captures error snapshots of
    upstream responses; request bodies for contracts travel in the ext_authz check instead.
    """
    if not (route.ext_proc or route.snapshots):
        return None
    return _route_prefix(route)


def check_body_prefix(route: RouteSettings, settings: Settings) -> tuple[str, int] | None:
    """(prefix, max bytes) when the route's request body must travel in the ext_authz check.

    A route bound to a contract validates its body; the contract's own limit
    (``contracts.max_body_bytes``) bounds the buffer, and Envoy answers 413 beyond it.
    """
    if not route.contract or not settings.contracts.enabled:
        return None
    return _route_prefix(route), settings.contracts.max_body_bytes


def snapshot_prefixes(settings: Settings) -> list[str]:
    """The path prefixes of the routes that opted in to error snapshots."""
    return list(dict.fromkeys(_route_prefix(r) for r in settings.routes if r.snapshots))


def _tapped(settings: Settings) -> bool:
    """Snapshots come from Envoy's tap filter (not ext_proc)."""
    s = settings.snapshots
    return s.enabled and s.capture == "tap"


def envoy_options(settings: Settings, **overrides: Any) -> EnvoyOptions:
    """EnvoyOptions for these settings; ``overrides`` win (ports, addresses, upstream…)."""
    prefixes: list[str] = []
    checked: dict[str, int] = {}
    tapped = _tapped(settings)
    for route in settings.routes:
        # With the tap filter a snapshot route needs no ext_proc stream of its own.
        prefix = body_prefix(route.model_copy(update={"snapshots": False})) if tapped else body_prefix(route)
        if prefix is not None and prefix not in prefixes:
            prefixes.append(prefix)
        body = check_body_prefix(route, settings)
        if body is not None:
            checked[body[0]] = max(checked.get(body[0], 0), body[1])
    e = settings.envoy
    for prefix in e.ext_proc_prefixes:
        if prefix not in prefixes:
            prefixes.append(prefix)
    s = settings.server
    ident = settings.identity
    opts: dict[str, Any] = {
        "primary_gateway": settings.primary_gateway,
        "upstream": e.upstream,
        "listen_address": e.listen_address,
        "listen_port": e.listen_port,
        "admin_port": e.admin_port,
        "failure_mode": e.failure_mode,
        "authz_timeout_ms": e.authz_timeout_ms,
        "ext_proc_timeout_ms": e.ext_proc_timeout_ms,
        "ext_proc_prefixes": tuple(prefixes),
        "authz_body_prefixes": tuple(checked.items()),
        "max_request_body_bytes": e.max_request_body_bytes,
        "access_log_buffer_bytes": e.access_log_buffer_bytes,
        "access_log_flush_ms": e.access_log_flush_ms,
        "max_downstream_connections": e.max_downstream_connections,
        "max_heap_bytes": e.max_heap_bytes,
        # Envoy strips the headers Link owns from every client request, whatever Link's state.
        "identity_header_prefix": ident.strip_header_prefix,
        "identity_headers": (ident.header_tenant, ident.header_consumer, ident.header_subject),
        "snapshot_tap": tapped,
        "authz_transport": s.authz_transport,
        "link_http": (f"unix:{s.http_uds}" if s.http_uds else s.http_address,),
        "api_key_header": ident.api_key_header,
        # A Rego policy may read any request header: all of them travel unless a list is configured.
        "authz_request_headers": tuple(s.authz_request_headers) or (("*",) if settings.policy.enabled else ()),
        "authz_upstream_headers": tuple(s.authz_upstream_headers),
        "authz_client_headers": tuple(s.authz_client_headers),
    }
    from link.workers import worker_addresses

    opts["link"] = tuple(worker_addresses(settings))
    t = settings.tracing
    if t.enabled and t.otlp_endpoint:
        opts["otlp_endpoint"] = t.otlp_endpoint  # the same form for Envoy as for Link's exporter
        opts["trace_sampling_percent"] = round(t.sample_ratio * 100.0, 4)
    opts.update(overrides)
    return EnvoyOptions(**opts)
