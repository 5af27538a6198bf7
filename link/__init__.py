"""STOA Link: a governance sidecar for API gateways."""

__version__ = "0.1.0"
