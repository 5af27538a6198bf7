"""Listening sockets bound up front, so a busy or wrong address stops start-up with a sentence.

Every server of a Link process (gRPC, admin, MCP, HTTP authz) binds its address
before anything else starts. A failure becomes a :class:`~link.settings.ConfigError`
naming the setting, the cause and the fix; the CLI prints it on one line and
exits with code 2.
"""

from __future__ import annotations

import errno
import socket

from link.settings import PLATFORM_ENV, ConfigError

__all__ = ["bind_tcp", "check_free", "split_address"]


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as a pair."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _how_to_change(key: str) -> str:
    flag = "--" + key.replace(".", "-").replace("_", "-")
    env = next((var for var, k in PLATFORM_ENV.items() if k == key), None)
    env = env or "STOA_" + key.replace(".", "_").upper()
    return f"{flag} or {env}"


def _reason(exc: OSError, address: str, key: str) -> str:
    change = _how_to_change(key)
    if exc.errno == errno.EADDRINUSE:
        return (f"{address} is already in use by another process; stop that process "
                f"or choose a free address ({change})")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{address}: the host is not an address of this machine; use one it has ({change})"
    if exc.errno == errno.EACCES:
        return f"{address}: binding this port needs privileges; use a port above 1023 ({change})"
    if isinstance(exc, socket.gaierror):
        return f"{address}: the host name does not resolve ({change})"
    return f"cannot listen on {address}: {exc.strerror or exc} ({change})"


def bind_tcp(address: str, key: str) -> socket.socket:
    """A TCP socket bound to ``address`` (not yet listening); ``key`` names the setting in errors."""
    try:
        host, port = split_address(address)
    except ValueError:
        raise ConfigError(key, f"expected HOST:PORT, got {address!r}") from None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(key, _reason(exc, address, key)) from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As every server does: a port left in TIME_WAIT by our previous run is free to take.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise ConfigError(key, _reason(exc, address, key)) from None
    return sock


def check_free(address: str, key: str) -> None:
    """Raise the same error as :func:`bind_tcp` if ``address`` cannot be bound now.

    For servers that bind by themselves (gRPC); the window between this check and
    their bind is a few milliseconds of start-up.
    """
    bind_tcp(address, key).close()
