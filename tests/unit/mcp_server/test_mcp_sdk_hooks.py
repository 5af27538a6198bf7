"""Every private part of the MCP SDK the server relies on, checked by name and signature.

The SDK offers no public way to do these few things (see each entry's ``why``). A new SDK
release may move any of them without notice, and several of our uses degrade silently
(``getattr(..., None)``, a wrapper nobody calls any more): so each hook is checked here, and a
failure names the hook, the module of ours that uses it and what to re-read. pyproject.toml
bounds ``mcp`` to the minor these checks were written against.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement


@dataclass(frozen=True)
class Hook:
    name: str  # the SDK attribute, as we use it
    used_by: str  # our module
    check: Callable[[], None]


def params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def fingerprint(fn: Any) -> str:
    return hashlib.sha256("".join(inspect.getsource(fn).split()).encode()).hexdigest()[:16]


def calls(owner: Any, needle: str) -> bool:
    """Whether the SDK's own code of ``owner`` (module or function) contains ``needle``."""
    return needle in inspect.getsource(owner)


# -- the hooks -------------------------------------------------------------------------------

def _serialize_server_result() -> None:
    # listing.py replaces the module attribute; it only works if the runner looks it up at call time.
    from mcp.server import runner
    from mcp_types import methods

    expect(params(methods.serialize_server_result)[:3] == ["method", "version", "data"],
           f"signature is now {inspect.signature(methods.serialize_server_result)}")
    expect(getattr(runner, "_methods", None) is methods,
           "mcp.server.runner no longer imports mcp_types.methods as _methods: the wrapper would never be called")
    expect(calls(runner, "_methods.serialize_server_result("),
           "mcp.server.runner no longer calls _methods.serialize_server_result(...)")


def _session_connection() -> None:
    from mcp.server.connection import Connection
    from mcp.server.context import ServerRequestContext
    from mcp.server.session import ServerSession

    expect("session" in {f.name for f in fields(ServerRequestContext)}, "ServerRequestContext.session is gone")
    connection = Connection(object(), protocol_version="2025-06-18")  # type: ignore[arg-type]
    session = ServerSession(object(), connection)  # type: ignore[arg-type]
    expect(getattr(session, "_connection", None) is connection,
           "ServerSession no longer keeps its Connection in _connection: list_changed notifications, "
           "resource subscriptions and logging/setLevel would silently stop")
    for method, args in (("send_tool_list_changed", []), ("send_resource_list_changed", []),
                         ("send_prompt_list_changed", []), ("send_resource_updated", ["uri"])):
        fn = getattr(Connection, method, None)
        expect(inspect.iscoroutinefunction(fn), f"Connection.{method} is gone or no longer async")
        positional = [p for p, v in inspect.signature(fn).parameters.items()
                      if v.kind is v.POSITIONAL_OR_KEYWORD][1:]
        expect(positional == args, f"Connection.{method} now takes {inspect.signature(fn)}")


def _otel_middleware() -> None:
    from mcp.server._otel import OpenTelemetryMiddleware
    from mcp.server.lowlevel.server import Server

    server = Server("probe")
    expect(isinstance(server.middleware, list), "Server.middleware is no longer a list")
    expect(sum(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware) == 1,
           "a new Server no longer carries one OpenTelemetryMiddleware: removing it removes nothing")


def _admit_session() -> None:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager as Manager

    # resume.py's _admit_session repeats the SDK's with its own transport class: re-read on any change.
    expect(params(Manager._admit_session) == ["self", "requestor"],
           f"signature is now {inspect.signature(Manager._admit_session)}")
    expect(calls(Manager._handle_stateful_request, "self._admit_session("),
           "the SDK no longer admits sessions through _admit_session: the override is dead")
    expect(fingerprint(Manager._admit_session) == "41cd6f3f3261639a",
           "the SDK's _admit_session changed: compare it with ResumableSessionManager._admit_session, "
           "update ours, then this fingerprint")


def _discard_session() -> None:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager as Manager

    expect(params(Manager._discard_session) == ["self", "session_id", "transport"],
           f"signature is now {inspect.signature(Manager._discard_session)}")
    expect(calls(Manager, "self._discard_session("), "the SDK no longer ends sessions through _discard_session")


def _handle_stateful_request() -> None:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager as Manager

    expect(params(Manager._handle_stateful_request) == ["self", "scope", "receive", "send"],
           f"signature is now {inspect.signature(Manager._handle_stateful_request)}")
    expect(calls(Manager, "self._handle_stateful_request("),
           "the SDK no longer routes session requests through _handle_stateful_request")


def _manager_state() -> None:
    from mcp.server.lowlevel.server import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager as Manager

    expect({"event_store", "json_response", "security_settings", "session_idle_timeout", "max_sessions",
            "max_request_body_size", "app"} <= set(params(Manager.__init__)),
           f"constructor is now {inspect.signature(Manager.__init__)}")
    manager = Manager(app=Server("probe"))
    for name in ("max_sessions", "json_response", "security_settings", "retry_interval", "session_idle_timeout"):
        expect(hasattr(manager, name), f"the manager no longer has .{name}")
    for name in ("_server_instances", "_session_owners"):
        expect(isinstance(getattr(manager, name, None), dict), f"the manager no longer keeps a dict {name}")


def _transport_hooks() -> None:
    from mcp.server.streamable_http import StreamableHTTPServerTransport as Transport

    expect({"mcp_session_id", "is_json_response_enabled", "event_store", "security_settings", "retry_interval",
            "idle_timeout"} <= set(params(Transport.__init__)),
           f"constructor is now {inspect.signature(Transport.__init__)}")
    expect(params(Transport._create_session_message) == ["self", "message", "request", "request_id",
                                                         "protocol_version"],
           f"_create_session_message is now {inspect.signature(Transport._create_session_message)}")
    expect(params(Transport._mint_priming_event) == ["self", "stream_id", "protocol_version"],
           f"_mint_priming_event is now {inspect.signature(Transport._mint_priming_event)}")
    for name in ("self._create_session_message(", "self._mint_priming_event("):
        expect(calls(Transport, name), f"the transport no longer calls {name}...)")


def _transport_idle_state() -> None:
    from mcp.server.streamable_http import StreamableHTTPServerTransport as Transport

    # sessionstate.serving repeats what handle_request does around a request (see also
    # test_mcp_sessionstate.py, which exercises it).
    transport = Transport(mcp_session_id="probe", idle_timeout=30.0)
    for name in ("_idle_timeout", "_requests_in_flight", "idle_scope"):
        expect(hasattr(transport, name), f"the transport no longer has .{name}")
    expect(calls(Transport.handle_request, "self._requests_in_flight += 1"),
           "handle_request no longer counts requests in flight in _requests_in_flight")
    expect(fingerprint(Transport.handle_request) == "1b0a690d25099078",
           "the SDK's StreamableHTTPServerTransport.handle_request changed: compare it with "
           "mcp_server/sessionstate.py serving(), update ours, then this fingerprint")


HOOKS = [
    Hook("mcp_types.methods.serialize_server_result (wrapped)", "mcp_server/listing.py", _serialize_server_result),
    Hook("ServerSession._connection", "mcp_server/server.py, clientlog.py, content_server.py", _session_connection),
    Hook("mcp.server._otel.OpenTelemetryMiddleware", "mcp_server/server.py", _otel_middleware),
    Hook("StreamableHTTPSessionManager._admit_session (overridden)", "mcp_server/resume.py", _admit_session),
    Hook("StreamableHTTPSessionManager._discard_session (overridden)", "mcp_server/resume.py", _discard_session),
    Hook("StreamableHTTPSessionManager._handle_stateful_request (overridden)", "mcp_server/resume.py",
         _handle_stateful_request),
    Hook("StreamableHTTPSessionManager._server_instances/_session_owners", "mcp_server/resume.py", _manager_state),
    Hook("StreamableHTTPServerTransport._create_session_message/_mint_priming_event (overridden)",
         "mcp_server/resume.py", _transport_hooks),
    Hook("StreamableHTTPSessionManager._server_instances/_session_owners (read)", "mcp_server/sessionstate.py",
         _manager_state),
    Hook("StreamableHTTPServerTransport._idle_timeout/_requests_in_flight/idle_scope",
         "mcp_server/sessionstate.py", _transport_idle_state),
]


@pytest.mark.parametrize("hook", HOOKS, ids=[h.name for h in HOOKS])
def test_sdk_hook_is_where_we_expect_it(hook: Hook) -> None:
    try:
        hook.check()
    except (AssertionError, AttributeError, ImportError, TypeError) as exc:
        pytest.fail(f"MCP SDK hook moved: {hook.name} (used by {hook.used_by}): {exc}", pytrace=False)


def test_the_installed_sdk_is_the_bounded_one() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    bound = next(Requirement(r) for r in pyproject["project"]["dependencies"] if Requirement(r).name == "mcp")
    installed = importlib.metadata.version("mcp")
    assert bound.specifier.contains(installed), f"mcp {installed} is outside {bound}: re-check the SDK hooks"
    assert any(s.operator == "<" for s in bound.specifier), f"{bound} has no upper bound: the hooks are private"
