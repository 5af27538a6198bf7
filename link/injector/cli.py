"""``stoa-link injector``: run the sidecar injection webhook.

    stoa-link injector --tls-cert /tls/tls.crt --tls-key /tls/tls.key [--port 8443]
        [--envoy-image IMAGE] [--link-image IMAGE] [--image-pull-policy POLICY]
        [--link-arg ARG ...] [--settings-configmap NAME] [--secret-name NAME]
        [--no-mcp] [--envoy-log-level LEVEL] [--log-level LEVEL]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from link.injector.config import InjectorConfig
from link.injector.server import ServeOptions, serve

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    d = InjectorConfig()
    p = argparse.ArgumentParser(prog="stoa-link injector",
                                description="Kubernetes mutating admission webhook adding the STOA sidecar.")
    p.add_argument("--tls-cert", required=True, metavar="FILE",
                   help="PEM certificate (reloaded when renewed)")
    p.add_argument("--tls-key", required=True, metavar="FILE", help="PEM private key")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--envoy-image", default=d.envoy_image)
    p.add_argument("--link-image", default=d.link_image)
    p.add_argument("--image-pull-policy", default=d.image_pull_policy,
                   choices=["Always", "IfNotPresent", "Never"])
    p.add_argument("--link-arg", action="append", metavar="ARG",
                   help=f"argument of the Link container, repeatable (default: {' '.join(d.link_args)})")
    p.add_argument("--settings-configmap", default=d.settings_configmap,
                   help="ConfigMap (in the pod's namespace, optional) with Link's STOA_* settings")
    p.add_argument("--secret-name", default=d.secret_name,
                   help="Secret (in the pod's namespace, optional): env for Link and files under "
                        "/var/run/secrets/stoa (e.g. gateway-key)")
    p.add_argument("--no-mcp", action="store_true",
                   help="do not serve MCP on port 3001 in the Link container (sets mcp.enabled=false)")
    p.add_argument("--envoy-log-level", default=d.envoy_log_level,
                   choices=["trace", "debug", "info", "warning", "error", "critical", "off"])
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def parse_args(argv: Sequence[str]) -> tuple[ServeOptions, str]:
    """Flags -> (:class:`ServeOptions`, log level). Raises ValueError on bad values (argparse exits 2)."""
    args = build_parser().parse_args(list(argv))
    if not 0 < args.port <= 65535:
        raise ValueError(f"--port: expected 1..65535, got {args.port}")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if not os.access(path, os.R_OK):
            raise ValueError(f"{flag}: cannot read {path}")
    config = InjectorConfig(
        envoy_image=args.envoy_image,
        link_image=args.link_image,
        image_pull_policy=args.image_pull_policy,
        link_args=tuple(args.link_arg) if args.link_arg else InjectorConfig().link_args,
        envoy_log_level=args.envoy_log_level,
        settings_configmap=args.settings_configmap,
        secret_name=args.secret_name,
        mcp=not args.no_mcp,
    )
    options = ServeOptions(tls_cert=args.tls_cert, tls_key=args.tls_key, host=args.host, port=args.port,
                           config=config)
    return options, str(args.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stoa-link injector``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, level = parse_args(argv)
    except ValueError as exc:
        print(f"stoa-link injector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    try:
        serve(options)
    except (OSError, ValueError) as exc:  # certificate that does not load, port in use
        print(f"stoa-link injector: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
