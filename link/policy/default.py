"""The built-in default policy, used when ``policy.enabled`` is true and ``policy.paths`` is empty.

A fresh install must not answer 503 to everyone: with no policy of its own, Link
enforces ``default.rego`` (shipped in the package): authenticated callers are
allowed, anonymous ones only on routes declared anonymous and for tools of
public MCP tenants. A policy the operator *did* configure is never replaced by
this one: if it is missing or broken, Link stays not ready and says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

from link.policy.sources import PolicyModule, PolicySource, SourceError

__all__ = ["DEFAULT_POLICY_FILE", "DEFAULT_QUERY", "default_source"]

DEFAULT_POLICY_FILE = "builtin:link/policy/default.rego"
DEFAULT_QUERY = "data.envoy.authz.allow"


def default_source(query: str, anonymous_routes: Iterable[str] = (),
                   public_tenants: Iterable[str] = ()) -> PolicySource:
    """The default policy with its data; raises :class:`SourceError` if ``query`` is not the one it answers."""
    if query != DEFAULT_QUERY:
        raise SourceError("policy.paths", f"is empty, and the built-in default policy answers {DEFAULT_QUERY}, "
                                          f"not policy.query {query}; set policy.paths to your policy")
    text = resources.files("link.policy").joinpath("default.rego").read_text(encoding="utf-8")
    data = {"stoa": {"default_policy": {"anonymous_routes": sorted(set(anonymous_routes)),
                                        "public_tenants": sorted(set(public_tenants))}}}
    return PolicySource(modules=(PolicyModule(DEFAULT_POLICY_FILE, text),), data=data, revision="builtin-default")
