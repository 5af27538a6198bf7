"""install(app): the client is a background component; readiness never waits for the control plane."""

from __future__ import annotations

from prometheus_client import generate_latest

from link.app import LinkApp
from link.controlplane import ControlPlaneClient, RegistrationState
from link.metrics import REGISTRY
from link.settings import Settings
from tests.harness.controlplane import ControlPlaneServer, until
from tests.harness.procs import free_port


def _app(url: str | None) -> LinkApp:
    settings = Settings.model_validate({"controlplane": {"url": url, "heartbeat_interval_min_s": 0.01}})
    return LinkApp(settings, plugins=("link.controlplane",))


def test_off_without_a_url() -> None:
    app = _app(None)
    assert not any(isinstance(c, ControlPlaneClient) for c in app.components)
    assert "controlplane" not in app.extras
    ok, detail = app.ready_checks["controlplane"]()
    assert ok and "off" in detail


async def test_ready_while_the_control_plane_is_unreachable() -> None:
    app = _app(f"http://127.0.0.1:{free_port()}")
    client = app.extras["controlplane"]
    assert client in app.components
    await app.start()  # returns at once, with nothing listening
    try:
        await until(lambda: client.state is RegistrationState.RETRYING)
        _, details = app.readiness()
        assert details["controlplane"]["ready"] is True
        assert "registration failing" in details["controlplane"]["detail"]
    finally:
        await app.stop()
    assert not client.running


async def test_registration_shows_in_readiness_and_metrics() -> None:
    with ControlPlaneServer(heartbeat_interval_s=0.05) as cp:
        app = _app(cp.url)
        await app.start()
        try:
            client = app.extras["controlplane"]
            await until(lambda: client.state is RegistrationState.REGISTERED)
            _, details = app.readiness()
            assert details["controlplane"]["detail"].startswith(f"registered as {client.gateway_id}")
            exposition = generate_latest(REGISTRY).decode()
            assert "stoa_link_controlplane_registered 1.0" in exposition
            beat = (await cp.await_calls("heartbeat", 1))[0]
            ready_now = app.readiness()[0]
        finally:
            await app.stop()
    # The heartbeat's status mirrors the app's own readiness.
    assert beat.body["status"] == ("healthy" if ready_now else "degraded")
    assert beat.body["uptime_s"] >= 0
