"""Envoy bootstrap generation (named so it does not clash with the ``envoy`` package)."""

from link.envoyconf.bootstrap import EnvoyOptions, build_bootstrap, render_yaml

__all__ = ["EnvoyOptions", "build_bootstrap", "render_yaml"]
