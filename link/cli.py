"""The ``stoa-link`` command.

    stoa-link serve [--config FILE] [--mode=sidecar] [--primary-gateway=kong] [--metering-enabled=true] …
    stoa-link envoy-config --primary-gateway kong|gravitee|webmethods [--upstream URL] [--listen PORT] …
    stoa-link demo
    stoa-link mcp
    stoa-link validate PATH…
    stoa-link injector …

Every setting has a flag named after its key (``metering.topic`` -> ``--metering-topic``);
``--set KEY=VALUE`` works for any key. A bad setting exits with code 2 and names the key.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from link import __version__
from link.settings import _SECTIONS, ConfigError, Settings, load_settings, parse_set_flags

EXIT_CONFIG = 2


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--section-key`` flag per scalar setting, plus the seed's short spellings."""
    group = parser.add_argument_group("settings (flags > environment > --config file > defaults)")
    group.add_argument("--config", metavar="FILE", help="YAML settings file")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by dotted key")
    for name, f in Settings.model_fields.items():
        section = _SECTIONS.get(name)
        if section is None:
            if name == "routes":
                continue
            group.add_argument(f"--{name.replace('_', '-')}", dest=f"set:{name}", metavar="VALUE",
                               help=f.description or argparse.SUPPRESS)
            continue
        for sub in section.model_fields:
            key = f"{name}.{sub}"
            flag = f"--{name}-{sub}".replace("_", "-")
            group.add_argument(flag, dest=f"set:{key}", metavar="VALUE", help=argparse.SUPPRESS)
    # Seed spellings (stoa-gateway --opa-enabled, --keycloak-url, --port).
    group.add_argument("--opa-enabled", dest="set:policy.enabled", metavar="BOOL", help=argparse.SUPPRESS)
    group.add_argument("--keycloak-url", dest="set:identity.keycloak_url", metavar="URL", help=argparse.SUPPRESS)
    group.add_argument("--keycloak-realm", dest="set:identity.keycloak_realm", metavar="REALM",
                       help=argparse.SUPPRESS)
    group.add_argument("--port", dest="set:mcp.port", metavar="PORT", help=argparse.SUPPRESS)


def settings_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Settings:
    overrides: dict[str, Any] = dict(extra or {})
    for dest, value in vars(args).items():
        if dest.startswith("set:") and value is not None:
            overrides[dest[4:]] = value
    overrides.update(parse_set_flags(getattr(args, "set", []) or []))
    return load_settings(getattr(args, "config", None), overrides=overrides)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _configure_logging(settings.log_level)
    if settings.mode == "edge-mcp":
        return _run_mcp(settings)
    from link.runtime import serve_forever
    from link.workers import spawn_workers, wait_children

    children = spawn_workers(settings, sys.argv[1:]) if settings.server.workers > 1 else []
    try:
        _run(serve_forever(settings, children))
    finally:
        wait_children(children, settings.server.shutdown_grace_s + 5)
    return 0


def _cmd_mcp(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _configure_logging(settings.log_level)
    return _run_mcp(settings)


def _run_mcp(settings: Settings) -> int:
    try:
        from mcp_server.main import serve
    except ImportError as exc:
        print(f"stoa-link: the MCP server is not available: {exc}", file=sys.stderr)
        return 1
    serve(settings)
    return 0


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def _cmd_envoy_config(args: argparse.Namespace) -> int:
    from link.envoyconf import build_bootstrap, render_yaml
    from link.envoyconf.from_settings import envoy_options

    if args.failure_mode not in ("closed", "open"):
        raise ConfigError("--failure-mode", "expected closed or open")
    if not 0 < args.listen <= 65535:
        raise ConfigError("--listen", "expected a port between 1 and 65535")
    # Routes, tracing and Link's address come from Link's settings when --config is given;
    # the flags below override them.
    settings = load_settings(args.config, overrides={"policy.enabled": False}) if args.config else None
    overrides: dict[str, Any] = {
        "primary_gateway": args.primary_gateway,
        "listen_address": args.listen_address,
        "listen_port": args.listen,
        "admin_port": args.admin_port,
        "failure_mode": args.failure_mode,
        "authz_timeout_ms": args.authz_timeout_ms,
        "ext_proc_timeout_ms": args.ext_proc_timeout_ms,
        "health_port": args.health_port,
    }
    if args.upstream:
        overrides["upstream"] = args.upstream
    if args.link or settings is None:
        overrides["link"] = tuple(a.strip() for a in (args.link or "127.0.0.1:9191").split(",") if a.strip())
    if args.ext_proc_prefix or settings is None:
        base = envoy_options(settings).ext_proc_prefixes if settings else ()
        overrides["ext_proc_prefixes"] = tuple(dict.fromkeys([*base, *args.ext_proc_prefix]))
    if args.otlp_endpoint:
        overrides["otlp_endpoint"] = args.otlp_endpoint
    if settings is None:
        from link.envoyconf import EnvoyOptions

        opts = EnvoyOptions(**overrides)
    else:
        opts = envoy_options(settings, **overrides)
    try:
        bootstrap = build_bootstrap(opts)
    except ValueError as exc:
        raise ConfigError("--upstream", str(exc)) from None
    header = (f"Generated by `stoa-link envoy-config --primary-gateway {args.primary_gateway}"
              f"{' --failure-mode ' + args.failure_mode if args.failure_mode != 'closed' else ''}`. Do not edit.")
    text = render_yaml(bootstrap, header=header)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        from link.validate import main as validate_main
    except ImportError as exc:
        print(f"stoa-link: validate is not available: {exc}", file=sys.stderr)
        return 1
    return int(validate_main(list(args.paths)))


def _cmd_demo(args: argparse.Namespace) -> int:
    from link.demo.main import run_demo

    return run_demo(args)


def _cmd_injector(args: argparse.Namespace, rest: Sequence[str]) -> int:
    try:
        from link.injector.cli import main as injector_main
    except ImportError as exc:
        print(f"stoa-link: the injector is not available: {exc}", file=sys.stderr)
        return 1
    return int(injector_main(list(rest)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stoa-link", description="STOA Link governance sidecar")
    parser.add_argument("--version", action="version", version=f"stoa-link {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the Link gRPC + admin servers")
    _setting_flags(serve)
    mcp = sub.add_parser("mcp", help="run the companion MCP server")
    _setting_flags(mcp)

    ec = sub.add_parser("envoy-config", help="print an Envoy bootstrap for the sidecar")
    ec.add_argument("--primary-gateway", choices=["kong", "gravitee", "webmethods"], default="kong")
    ec.add_argument("--upstream", metavar="URL", help="default: the primary gateway's usual local port")
    ec.add_argument("--listen", type=int, default=8080, metavar="PORT")
    ec.add_argument("--listen-address", default="0.0.0.0")
    ec.add_argument("--admin-port", type=int, default=9901)
    ec.add_argument("--link", default=None, metavar="ADDRESS[,ADDRESS…]",
                    help="host:port or unix:/path of each Link process (default 127.0.0.1:9191)")
    ec.add_argument("--config", metavar="FILE",
                    help="Link's settings file: routes needing bodies get ext_proc, tracing and workers follow it")
    ec.add_argument("--failure-mode", default="closed", help="closed (503 when Link is down) or open")
    ec.add_argument("--authz-timeout-ms", type=int, default=200)
    ec.add_argument("--ext-proc-timeout-ms", type=int, default=200)
    ec.add_argument("--ext-proc-prefix", action="append", default=[], metavar="PREFIX",
                    help="routes whose bodies go to ext_proc (contracts, snapshots)")
    ec.add_argument("--otlp-endpoint", metavar="HOST:PORT", help="enable Envoy's OpenTelemetry tracer")
    ec.add_argument("--health-port", type=int, default=9902, metavar="PORT",
                    help="listener answering GET /ready for Kubernetes probes (0 = none)")
    ec.add_argument("-o", "--output", metavar="FILE")

    demo = sub.add_parser("demo", help="run Envoy, Link, the MCP server and a demo upstream locally")
    demo.add_argument("--listen", type=int, default=8080)
    demo.add_argument("--no-mcp", action="store_true", help="do not start the MCP server")
    demo.add_argument("--duration", type=float, default=0.0, help="stop after N seconds (0 = until Ctrl-C)")

    val = sub.add_parser("validate", help="check Tool, ToolSet, UAC manifests and Rego files")
    val.add_argument("paths", nargs="+")

    sub.add_parser("injector", help="run the sidecar injection webhook (see `stoa-link injector --help`)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "injector":
        return _cmd_injector(argparse.Namespace(), argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "serve": _cmd_serve,
        "mcp": _cmd_mcp,
        "envoy-config": _cmd_envoy_config,
        "validate": _cmd_validate,
        "demo": _cmd_demo,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"stoa-link: configuration error: {exc.key}: {exc.reason}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
