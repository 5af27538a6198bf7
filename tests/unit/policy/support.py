"""Helpers of the policy unit tests: requests, contexts and phases built from Rego text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from link.model import CredentialKind, Principal, Request, RequestContext, RouteMatch
from link.pipeline.policy import PolicyPhase
from link.settings import load_settings


def make_ctx(
    method: str = "GET",
    path: str = "/",
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
    body: bytes | None = None,
    roles: tuple[str, ...] = (),
    scopes: tuple[str, ...] = (),
    tenant: str = "acme",
    subject: str = "alice",
    route: RouteMatch | None = None,
) -> RequestContext:
    """A request context as the identity phase leaves it (a verified JWT principal)."""
    hdrs = {"host": "api.local", "user-agent": "test", "x-request-id": "req-1", **(headers or {})}
    if body is not None:
        hdrs.setdefault("content-type", "application/json")
        hdrs.setdefault("content-length", str(len(body)))
    request = Request(method=method, path=path, headers=hdrs, query=query, host="api.local", body=body,
                      source_address="10.1.2.3", source_port=40000, destination_address="10.0.0.1",
                      destination_port=8080)
    request.ensure_request_id()
    principal = Principal(kind=CredentialKind.JWT, subject=subject, consumer="app-1", tenant=tenant,
                          scopes=frozenset(scopes), roles=frozenset(roles), claims={"sub": subject})
    return RequestContext(request=request, principal=principal, route=route)


def write_policy(directory: Path, text: str, name: str = "policy.rego") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def make_phase(tmp_path: Path, rego: str | None = None, **policy: Any) -> PolicyPhase:
    """A policy phase on ``rego`` (written to tmp_path) with ``policy.*`` settings."""
    overrides: dict[str, Any] = {f"policy.{k}": v for k, v in policy.items()}
    if rego is not None and "policy.paths" not in overrides:
        overrides["policy.paths"] = [str(write_policy(tmp_path, rego))]
    settings = load_settings(env={}, overrides=overrides)
    return PolicyPhase(settings.policy)
