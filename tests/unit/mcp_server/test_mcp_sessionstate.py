"""The SDK session state the direct path reads: fails loudly when the SDK moves its private tables.

If one of these fails after an SDK upgrade, :mod:`mcp_server.sessionstate` must follow the SDK (until
then it declines every session, so handshake-era calls all take the SDK's path).
"""

from __future__ import annotations

import math

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from mcp_server.sessionstate import open_session, serving


def _user(client: str) -> AuthenticatedUser:
    return AuthenticatedUser(AccessToken(token="", client_id=client, scopes=[], subject=client))


def _manager_with(session: str, owner: AuthenticatedUser | None) -> tuple[StreamableHTTPSessionManager, StreamableHTTPServerTransport]:
    manager = StreamableHTTPSessionManager(app=Server("t"), json_response=True)
    transport = StreamableHTTPServerTransport(mcp_session_id=session, is_json_response_enabled=True, idle_timeout=60)
    # The SDK's own registration (StreamableHTTPSessionManager._admit_session) fills these two tables.
    manager._server_instances[session] = transport
    if owner is not None:
        manager._session_owners[session] = authorization_context(owner)
    return manager, transport


def test_the_sdk_still_keeps_the_tables_the_direct_path_reads() -> None:
    manager, transport = _manager_with("s1", None)
    assert isinstance(manager._server_instances, dict) and isinstance(manager._session_owners, dict)
    assert transport._idle_timeout == 60 and transport._requests_in_flight == 0
    assert hasattr(transport, "idle_scope") and transport.is_terminated is False


def test_open_session_only_for_its_owner() -> None:
    acme = _user("acme")
    manager, transport = _manager_with("s1", acme)
    assert open_session(manager, "s1", acme) is transport
    assert open_session(manager, "s1", _user("beta")) is None  # another credential
    assert open_session(manager, "s1", None) is None  # anonymous
    assert open_session(manager, "s2", acme) is None  # unknown
    anonymous, transport2 = _manager_with("s3", None)
    assert open_session(anonymous, "s3", None) is transport2
    assert open_session(anonymous, "s3", acme) is None


async def test_a_closed_or_expiring_session_is_declined() -> None:
    manager, transport = _manager_with("s1", None)
    await transport.terminate()
    assert open_session(manager, "s1", None) is None
    manager, transport = _manager_with("s2", None)
    transport.idle_scope = anyio.CancelScope()
    transport.idle_scope.cancel()
    assert open_session(manager, "s2", None) is None


async def test_serving_suspends_the_idle_countdown_and_restarts_it() -> None:
    _, transport = _manager_with("s1", None)
    transport.idle_scope = scope = anyio.CancelScope()
    scope.deadline = anyio.current_time() + 1
    with serving(transport):
        assert scope.deadline == math.inf and transport._requests_in_flight == 1
        with serving(transport):
            assert transport._requests_in_flight == 2
        assert scope.deadline == math.inf  # another request still in flight
    assert transport._requests_in_flight == 0
    assert anyio.current_time() + 59 < scope.deadline <= anyio.current_time() + 60
