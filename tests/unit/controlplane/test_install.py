"""install(app): the client is a background component; readiness never waits for the control plane."""

from __future__ import annotations

from pathlib import Path

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


def test_mcp_is_a_feature_only_where_mcp_is_served() -> None:
    from link.controlplane import enabled_features

    def features(**over: object) -> list[str]:
        return enabled_features(Settings.model_validate(over))

    assert "mcp" in features(mode="sidecar")  # `serve` serves MCP in the same process
    assert "mcp" in features(mode="edge-mcp")
    assert "mcp" not in features(mode="sidecar", mcp={"enabled": False})


async def test_one_registration_per_pod_the_workers_follow_its_gateway_id(tmp_path: Path) -> None:
    """The registering process writes the id; a worker (no url, same file) stamps its events with it."""
    shared = str(tmp_path / "gateway-id")
    with ControlPlaneServer(heartbeat_interval_s=0.05) as cp:
        first = LinkApp(Settings.model_validate({"controlplane": {
            "url": cp.url, "heartbeat_interval_min_s": 0.01, "gateway_id_file": shared}}),
            plugins=("link.controlplane",))
        worker = LinkApp(Settings.model_validate({"controlplane": {"gateway_id_file": shared}}),
                         plugins=("link.controlplane",))
        seen: list[str] = []
        worker.on_gateway_id(seen.append)
        assert "controlplane" not in worker.extras  # no client: the worker never registers
        await worker.start()
        await first.start()
        try:
            await until(lambda: worker.gateway_id is not None, timeout=10)
            registered = first.extras["controlplane"].gateway_id
            _, details = worker.readiness()
        finally:
            await first.stop()
            await worker.stop()
        assert len(cp.of_kind("register")) == 1
    assert worker.gateway_id == first.gateway_id == registered
    assert seen == [registered]
    assert details["controlplane"]["detail"] == f"worker of gateway {registered} (the first process registers)"
