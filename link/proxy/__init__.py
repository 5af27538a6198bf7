"""Proxy mode: Link as a full API gateway, with no primary gateway (``stoa-link serve --mode=proxy``).

:mod:`.effective` turns the seed's flags into the settings the pipeline runs on,
:mod:`link.envoyconf.proxy` builds Envoy's side, :mod:`.transform` changes JSON
bodies on routes that declare it, :mod:`.runner` runs Link with its own Envoy.
"""
