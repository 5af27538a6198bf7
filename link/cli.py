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
import contextlib
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from link import __version__
from link.settings import (
    _SECTIONS,
    ENV_PREFIX,
    PLATFORM_ENV,
    PRIMARY_GATEWAY_PORTS,
    ConfigError,
    Settings,
    load_settings,
    parse_set_flags,
)

EXIT_CONFIG = 2


# The seed's own spellings (stoa-gateway --mode=sidecar --primary-gateway=kong --metering-enabled=true …).
_SEED_FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("--mode", "mode", "MODE", "sidecar (beside a gateway, MCP in the same process), edge-mcp (MCP alone), "
                               "proxy or shadow"),
    ("--primary-gateway", "primary_gateway", "NAME",
     f"the gateway Link runs beside: {', '.join(PRIMARY_GATEWAY_PORTS)}"),
    ("--metering-enabled", "metering.enabled", "BOOL", "meter every request to Kafka (needs a broker)"),
    ("--opa-enabled", "policy.enabled", "BOOL", "evaluate the Rego policy on every request"),
    ("--keycloak-url", "identity.keycloak_url", "URL", "the Keycloak base URL whose realm issues tokens"),
    ("--keycloak-realm", "identity.keycloak_realm", "REALM", "the Keycloak realm (default stoa)"),
    ("--port", "mcp.port", "PORT", "the MCP server's port (default 3001)"),
)


def _env_names(key: str) -> str:
    env = [var for var, k in PLATFORM_ENV.items() if k == key]
    own = f"{ENV_PREFIX}{key.replace('.', '_').upper()}"
    return ", ".join(dict.fromkeys([own, *env]))


def _default_of(key: str) -> str:
    head, _, tail = key.partition(".")
    field = Settings.model_fields[head] if not tail else _SECTIONS[head].model_fields[tail]
    default = field.get_default(call_default_factory=True)
    if default is None or default == [] or default == {}:
        return ""
    if isinstance(default, bool):
        return f"; default {str(default).lower()}"
    return f"; default {default}"


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    """The seed's flags, then one ``--section-key`` flag per scalar setting, each with its env names."""
    seed = parser.add_argument_group("the platform's flags")
    seeded = set()
    for flag, key, metavar, text in _SEED_FLAGS:
        seed.add_argument(flag, dest=f"set:{key}", metavar=metavar, help=f"{text} ({_env_names(key)})")
        seeded.add(flag)
    group = parser.add_argument_group("settings (flags > environment > --config file > defaults)")
    group.add_argument("--config", metavar="FILE", help="YAML settings file")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by dotted key")
    for name in Settings.model_fields:
        section = _SECTIONS.get(name)
        keys = [name] if section is None else [f"{name}.{sub}" for sub in section.model_fields]
        for key in keys:
            if key == "routes":
                continue  # a list of mappings: the --config file's
            flag = "--" + key.replace(".", "-").replace("_", "-")
            if flag in seeded:
                continue
            group.add_argument(flag, dest=f"set:{key}", metavar="VALUE",
                               help=f"{key} (env {_env_names(key)}{_default_of(key)})".replace("%", "%%"))
    # Seed spellings of the proxy and shadow modes.
    modes = parser.add_argument_group("proxy and shadow modes")
    # stoa-gateway --mode=proxy --upstream=… --opa-endpoint=…
    modes.add_argument("--upstream", dest="set:proxy.upstream", metavar="URL",
                       help="proxy mode: where requests go (routes may name their own upstream)")
    modes.add_argument("--opa-endpoint", dest="set:proxy.opa_endpoint", metavar="URL",
                       help="proxy mode: a remote OPA (REST API) decides every request")
    # stoa-gateway --mode=shadow --target=… --output=…
    modes.add_argument("--target", dest="set:shadow.target", metavar="URL",
                       help="shadow mode: the legacy API to observe (naming it opts it in)")
    modes.add_argument("--output", dest="set:shadow.output", metavar="DIR",
                       help="shadow mode: where learned drafts are written")
    modes.add_argument("--listen", dest="set:envoy.listen_port", metavar="PORT",
                       help="proxy and shadow modes: the port the supervised Envoy listens on (default 8080)")


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
    if level.lower() != "debug":
        # One line per control-plane heartbeat would drown the log; failures are logged by the client.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        # A broker outage: aiokafka's line per reconnect attempt, once per 30 s with a count.
        from link import logrepeat

        logrepeat.install()


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _configure_logging(settings.log_level)
    if settings.mode == "edge-mcp":
        return _run_mcp(settings)
    if settings.mode == "shadow":
        from link.shadow.cli import shadow_serve

        return shadow_serve(settings)
    if settings.mode == "proxy":
        from link.proxy.runner import run_proxy

        return run_proxy(settings)
    from link.runtime import serve_forever
    from link.workers import spawn_workers, wait_children

    shared_dir = None
    if settings.server.workers > 1 and not settings.controlplane.gateway_id_file:
        # Workers learn the gateway id this process registers through a file of their own.
        shared_dir = tempfile.mkdtemp(prefix="stoa-link-")
        settings = settings_from_args(args, {"controlplane.gateway_id_file": f"{shared_dir}/gateway-id"})
    sockets = None
    if settings.server.authz_transport == "http" and settings.server.workers > 1:
        # Bound once here, inherited by every worker (a bad address exits 2 naming the key).
        from link.httpauthz.server import bind_sockets, inherited_sockets

        sockets = inherited_sockets() or bind_sockets(settings)
    children = spawn_workers(settings, sys.argv[1:], sockets) if settings.server.workers > 1 else []
    try:
        with _spool_errors_are_config_errors():
            _run(serve_forever(settings, children, http_sockets=sockets))
    finally:
        wait_children(children, settings.server.shutdown_grace_s + 5)
        if shared_dir is not None:
            shutil.rmtree(shared_dir, ignore_errors=True)
    return 0


def _cmd_mcp(args: argparse.Namespace) -> int:
    if getattr(args, "stdio", False) or getattr(args, "login", False):
        return _cmd_mcp_stdio(args)
    settings = settings_from_args(args)
    _configure_logging(settings.log_level)
    if settings.mode == "sidecar":
        logging.getLogger("stoa.link").warning(
            "`stoa-link mcp` in sidecar mode: `stoa-link serve` already serves MCP in its own process; "
            "do not run both on one configuration (two registrations, one spool). "
            "For MCP alone, set GATEWAY_MODE=edge-mcp")
    return _run_mcp(settings)


def _cmd_mcp_stdio(args: argparse.Namespace) -> int:
    """A client bridge, not a server: it reads no Link settings (so none of the server's checks apply)."""
    command = "--login" if args.login else "--stdio"
    if not args.url:
        print(f"stoa-link mcp {command}: --url is required (the remote STOA Link MCP endpoint)", file=sys.stderr)
        return EXIT_CONFIG
    if args.login:
        from mcp_server.bridge_login import run_login

        return run_login(args.url)
    from mcp_server.stdio_bridge import run_stdio_bridge

    return run_stdio_bridge(args.url, token_env=args.token_env)


def _run_mcp(settings: Settings) -> int:
    try:
        from mcp_server.main import serve
    except ImportError as exc:
        print(f"stoa-link: the MCP server is not available: {exc}", file=sys.stderr)
        return 1
    with _spool_errors_are_config_errors():
        serve(settings)
    return 0


@contextlib.contextmanager
def _spool_errors_are_config_errors() -> Iterator[None]:
    """A spool that cannot be opened at start-up (another process's, not writable) is a setting to fix."""
    from link.metering.spool import SpoolError  # loaded with the servers anyway

    try:
        yield
    except SpoolError as exc:
        raise ConfigError("metering.spool_dir",
                          f"{exc} (--metering-spool-dir or STOA_METERING_SPOOL_DIR)") from None


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def _cmd_envoy_config(args: argparse.Namespace) -> int:
    from link.envoyconf import build_bootstrap, render_yaml
    from link.envoyconf.from_settings import envoy_options

    if args.mode in ("shadow", "proxy"):
        text = _mode_envoy_config(args)
        if args.output:
            with open(args.output, "w") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)
        return 0
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
    if args.authz_transport:
        overrides["authz_transport"] = args.authz_transport
    if args.link_http:
        overrides["link_http"] = tuple(a.strip() for a in args.link_http.split(",") if a.strip())
    if args.link or settings is None:
        overrides["link"] = tuple(a.strip() for a in (args.link or "127.0.0.1:9191").split(",") if a.strip())
    if args.ext_proc_prefix or settings is None:
        base = envoy_options(settings).ext_proc_prefixes if settings else ()
        overrides["ext_proc_prefixes"] = tuple(dict.fromkeys([*base, *args.ext_proc_prefix]))
    if args.otlp_endpoint:
        from link.telemetry.endpoint import parse_otlp_endpoint

        try:
            parse_otlp_endpoint(args.otlp_endpoint)
        except ValueError as exc:
            raise ConfigError("--otlp-endpoint", str(exc)) from None
        overrides["otlp_endpoint"] = args.otlp_endpoint
    for flag in ("max_downstream_connections", "max_heap_bytes"):
        value = getattr(args, flag)
        if value is not None:
            if value < 0:
                raise ConfigError(f"--{flag.replace('_', '-')}", "expected 0 (off) or a positive number")
            overrides[flag] = value
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


def _mode_envoy_config(args: argparse.Namespace) -> str:
    if args.mode == "shadow":
        from link.shadow.cli import shadow_envoy_config

        return shadow_envoy_config(args)
    from link.proxy.runner import proxy_bootstrap_yaml

    overrides: dict[str, Any] = {"mode": "proxy"}
    if args.upstream:
        overrides["proxy.upstream"] = args.upstream
    settings = load_settings(args.config, overrides=overrides)
    extra: dict[str, Any] = {"listen_address": args.listen_address, "listen_port": args.listen,
                             "admin_port": args.admin_port, "failure_mode": args.failure_mode,
                             "health_port": args.health_port}
    if args.link:
        extra["link"] = tuple(a.strip() for a in args.link.split(",") if a.strip())
    if args.authz_transport:
        extra["authz_transport"] = args.authz_transport
    if args.link_http:
        extra["link_http"] = tuple(a.strip() for a in args.link_http.split(",") if a.strip())
    try:
        return proxy_bootstrap_yaml(settings, args.sds_dir, **extra)
    except ValueError as exc:
        raise ConfigError("--upstream", str(exc)) from None


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        from link.validate import main as validate_main
    except ImportError as exc:
        print(f"stoa-link: validate is not available: {exc}", file=sys.stderr)
        return 1
    return int(validate_main(list(args.paths), query=args.query))


def _cmd_import(args: argparse.Namespace) -> int:
    from link.openapi.importer import run_import

    return run_import(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from link.demo.main import run_demo

    return run_demo(args)


def _cmd_shadow(args: argparse.Namespace) -> int:
    from link.shadow.cli import run_shadow_command

    return run_shadow_command(args)


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

    serve = sub.add_parser("serve", help="run Link: the decision service, the admin port and (sidecar) MCP",
                           usage="stoa-link serve [--config FILE] [--mode MODE] [--primary-gateway NAME] [FLAG …]")
    _setting_flags(serve)
    mcp = sub.add_parser("mcp", help="run the MCP server alone (edge-mcp)",
                         usage="stoa-link mcp [--config FILE] [--port PORT] [FLAG …]")
    _setting_flags(mcp)
    bridge = mcp.add_argument_group("desktop clients: bridge stdio to a remote MCP endpoint")
    bridge.add_argument("--stdio", action="store_true",
                        help="relay MCP between stdin/stdout and --url (for clients that launch servers)")
    bridge.add_argument("--url", metavar="URL", help="the remote STOA Link MCP endpoint, https://…/mcp")
    bridge.add_argument("--login", action="store_true",
                        help="sign in once for --url (browser, PKCE) so the bridge can refresh its tokens alone")
    bridge.add_argument("--token-env", default="STOA_MCP_TOKEN", metavar="NAME",
                        help="environment variable holding the bearer token (default STOA_MCP_TOKEN)")

    ec = sub.add_parser("envoy-config", help="print an Envoy bootstrap for the sidecar")
    ec.add_argument("--mode", choices=["sidecar", "proxy", "shadow"], default="sidecar",
                    help="sidecar (in front of the primary gateway), proxy (a full gateway) or shadow")
    ec.add_argument("--sds-dir", default="/etc/stoa/sds", metavar="DIR",
                    help="proxy mode with TLS: where the SDS files for the certificates are")
    ec.add_argument("--target", metavar="URL", help="shadow mode: the legacy API to observe")
    ec.add_argument("--primary-gateway", choices=list(PRIMARY_GATEWAY_PORTS), default="kong")
    ec.add_argument("--upstream", metavar="URL", help="default: the primary gateway's usual local port")
    ec.add_argument("--listen", type=int, default=8080, metavar="PORT")
    ec.add_argument("--listen-address", default="0.0.0.0")
    ec.add_argument("--admin-port", type=int, default=9901)
    ec.add_argument("--link", default=None, metavar="ADDRESS[,ADDRESS…]",
                    help="host:port or unix:/path of each Link process (default 127.0.0.1:9191)")
    ec.add_argument("--config", metavar="FILE",
                    help="Link's settings file: routes needing bodies get ext_proc, tracing and workers follow it")
    ec.add_argument("--failure-mode", default="closed", help="closed (503 when Link is down) or open")
    ec.add_argument("--authz-transport", choices=["http", "grpc"], default=None,
                    help="how ext_authz asks Link: http (http_service, the default) or grpc; "
                         "default: server.authz_transport of --config")
    ec.add_argument("--link-http", default=None, metavar="ADDRESS[,ADDRESS…]",
                    help="host:port or unix:/path of Link's HTTP decision server(s) (default 127.0.0.1:9190)")
    ec.add_argument("--authz-timeout-ms", type=int, default=200)
    ec.add_argument("--ext-proc-timeout-ms", type=int, default=200)
    ec.add_argument("--ext-proc-prefix", action="append", default=[], metavar="PREFIX",
                    help="routes whose bodies go to ext_proc (contracts, snapshots)")
    ec.add_argument("--otlp-endpoint", metavar="URL",
                    help="enable Envoy's OpenTelemetry tracer: HOST:PORT or http://HOST:PORT (plain gRPC), "
                         "https://HOST:PORT (TLS); the same form as tracing.otlp_endpoint")
    ec.add_argument("--health-port", type=int, default=9902, metavar="PORT",
                    help="listener answering GET /ready for Kubernetes probes (0 = none)")
    ec.add_argument("--max-downstream-connections", type=int, default=None, metavar="N",
                    help="overload manager: client connections at once, 0 = no cap (default 4096)")
    ec.add_argument("--max-heap-bytes", type=int, default=None, metavar="BYTES",
                    help="overload manager: heap before shedding load, 0 = no monitor (default 192 MiB)")
    ec.add_argument("-o", "--output", metavar="FILE")

    demo = sub.add_parser("demo", help="run Envoy, Link (with MCP) and a demo upstream locally; "
                                       "KAFKA_BOOTSTRAP_SERVERS=HOST:PORT meters to that broker")
    demo.add_argument("--listen", type=int, default=8080)
    demo.add_argument("--no-mcp", action="store_true", help="Link serves no MCP")
    demo.add_argument("--envoy", metavar="PATH", help="the envoy binary (default: envoy on PATH, else next to Python)")
    demo.add_argument("--duration", type=float, default=0.0, help="stop after N seconds (0 = until Ctrl-C)")

    val = sub.add_parser("validate", help="check Tool, ToolSet, UAC contracts, Rego, API keys and settings files")
    val.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    val.add_argument("--query", metavar="RULE", help="the decision the policy must answer "
                     "(default: policy.query of a settings file among PATHs, else data.envoy.authz.allow)")

    from link.openapi.importer import add_import_parser

    add_import_parser(sub)

    sub.add_parser("injector", help="run the sidecar injection webhook (see `stoa-link injector --help`)",
                   add_help=False)
    from link.shadow.cli import add_shadow_parser

    add_shadow_parser(sub)
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
        "shadow": _cmd_shadow,
        "import": _cmd_import,
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
