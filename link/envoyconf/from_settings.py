"""Derive the Envoy options from Link's own settings, so routes are declared once."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from link.envoyconf.bootstrap import EnvoyOptions
from link.settings import RouteSettings, Settings


def body_prefix(route: RouteSettings) -> str | None:
    """The path prefix Envoy should send to ext_proc for this route, or None if it needs no bodies.

    A route needs bodies when it asks for them (``ext_proc``), captures error snapshots of
    upstream responses, or validates request bodies against a contract.
    """
    if not (route.ext_proc or route.snapshots or route.contract):
        return None
    path = route.prefix if route.prefix is not None else (route.template or "/")
    # A template's literal head is the prefix Envoy can match on: /orders/{id}/items -> /orders/
    head = path.split("{", 1)[0]
    return head or "/"


def envoy_options(settings: Settings, **overrides: Any) -> EnvoyOptions:
    """EnvoyOptions for these settings; ``overrides`` win (ports, addresses, upstream…)."""
    prefixes: list[str] = []
    for route in settings.routes:
        prefix = body_prefix(route)
        if prefix is not None and prefix not in prefixes:
            prefixes.append(prefix)
    e = settings.envoy
    for prefix in e.ext_proc_prefixes:
        if prefix not in prefixes:
            prefixes.append(prefix)
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
        "max_request_body_bytes": e.max_request_body_bytes,
        "access_log_buffer_bytes": e.access_log_buffer_bytes,
        "access_log_flush_ms": e.access_log_flush_ms,
    }
    from link.workers import worker_addresses

    opts["link"] = tuple(worker_addresses(settings))
    t = settings.tracing
    if t.enabled and t.otlp_endpoint:
        parts = urlsplit(t.otlp_endpoint if "://" in t.otlp_endpoint else f"//{t.otlp_endpoint}")
        opts["otlp_endpoint"] = f"{parts.hostname}:{parts.port or 4317}"
        opts["trace_sampling_percent"] = round(t.sample_ratio * 100.0, 4)
    opts.update(overrides)
    return EnvoyOptions(**opts)
