"""Envoy's overload manager as generated: a global cap on client connections and a heap watch.

The sidecar's bootstrap and the shadow mode's (a legacy API's front proxy) alike.
Real Envoy, real sockets: the cap is reached by holding connections open, and the
connection past it is closed by Envoy at accept while the health listener and the
admin interface (both exempt) still answer. Without the monitors Envoy warns at
start-up that no downstream connection limit is configured; with them it does not.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.request

import pytest

from link.envoyconf import EnvoyOptions, build_bootstrap, render_yaml
from link.envoyconf.shadow import ShadowApi, ShadowEnvoyOptions, build_shadow_bootstrap
from tests.harness.envoy import EnvoyProcess
from tests.harness.procs import free_port, wait_until

pytestmark = pytest.mark.integration

_WARNING = "no configured limit to the number of allowed active downstream connections"


def _envoy(mode: str = "sidecar", **options: int) -> tuple[EnvoyProcess, int]:
    port, health = free_port(), free_port()
    if mode == "shadow":
        bootstrap = build_shadow_bootstrap(ShadowEnvoyOptions(
            apis=(ShadowApi(name="legacy", target=f"http://127.0.0.1:{free_port()}"),),
            listen_address="127.0.0.1", listen_port=port, admin_port=0, health_port=health,
            link=f"127.0.0.1:{free_port()}", **options))
    else:
        bootstrap = build_bootstrap(EnvoyOptions(
            listen_address="127.0.0.1", listen_port=port, admin_port=0, health_port=health,
            link_filters=False, upstream=f"http://127.0.0.1:{free_port()}", **options))
    return EnvoyProcess(render_yaml(bootstrap), port, log_level="warning"), health


MODES = pytest.mark.parametrize("mode", ["sidecar", "shadow"])


@pytest.mark.parametrize(("options", "warns"), [
    ({}, False),  # the defaults: a connection cap and a heap monitor
    ({"max_heap_bytes": 0}, False),  # the connection cap alone silences the warning
    ({"max_downstream_connections": 0}, True),
    ({"max_downstream_connections": 0, "max_heap_bytes": 0}, True),
])
@MODES
def test_startup_warning_follows_the_connection_cap(mode: str, options: dict[str, int], warns: bool) -> None:
    envoy, health = _envoy(mode, **options)
    with envoy:
        assert wait_until(lambda: _ready(health), timeout=10)
        assert (_WARNING in envoy.log_text()) is warns


def _ready(port: int) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
        return bool(r.status == 200)
    return False


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@MODES
def test_connections_past_the_cap_are_closed_and_probes_still_answer(mode: str) -> None:
    cap = 4
    envoy, health = _envoy(mode, max_downstream_connections=cap)
    held: list[socket.socket] = []
    with envoy:
        active = f"listener.127.0.0.1_{envoy.port}.downstream_cx_active"
        # The harness's own "is it listening" connection must be gone before counting.
        assert wait_until(lambda: envoy.stats("listener").get(active) == 0, timeout=10)
        try:
            for _ in range(cap):
                held.append(socket.create_connection(("127.0.0.1", envoy.port), timeout=5))
            assert wait_until(lambda: envoy.stats("listener").get(active) == cap, timeout=10)
            extra = socket.create_connection(("127.0.0.1", envoy.port), timeout=5)
            held.append(extra)
            assert _closed_by_peer(extra), "the connection past the cap was kept open"
            overflow = f"listener.127.0.0.1_{envoy.port}.downstream_global_cx_overflow"
            assert envoy.stats("listener")[overflow] == 1
            # Exempt: kubelet's probes and the loopback admin interface.
            assert _ready(health)
            # The held connections are still served: under the cap nothing is refused.
            assert not _closed_by_peer_nowait(held[0])
        finally:
            for s in held:
                s.close()


def _closed_by_peer_nowait(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)
