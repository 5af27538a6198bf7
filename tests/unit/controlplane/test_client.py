"""Registration and heartbeat against a local control plane (tests/harness/controlplane.py)."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import link
from link.controlplane import ControlPlaneClient, RegistrationState
from link.metrics import DECISIONS, REGISTRY
from link.settings import Settings
from tests.harness.controlplane import ControlPlaneServer, GatedSleep, until
from tests.harness.procs import free_port


def make_settings(url: str, **controlplane: object) -> Settings:
    """Settings with the control plane at ``url`` and everything else at defaults."""
    return Settings.model_validate({"controlplane": {"url": url, **controlplane}})


@contextlib.asynccontextmanager
async def running(client: ControlPlaneClient) -> AsyncIterator[ControlPlaneClient]:
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


def _client(url: str, sleep: GatedSleep, **cp: object) -> ControlPlaneClient:
    return ControlPlaneClient(make_settings(url, **cp), sleep=sleep, env={"POD_NAME": "kong-7f9c-abcde"},
                              rng=random.Random(7))


def _assert_backoff(delays: list[float], initial: float, maximum: float) -> None:
    """Each delay lies in [d/2, d] of its doubling step d (equal jitter), capped at ``maximum``."""
    for n, delay in enumerate(delays):
        step = min(maximum, initial * 2**n)
        assert step / 2 <= delay <= step, (n, delay, step)


async def test_registers_with_the_contract_body(cp: ControlPlaneServer, gated: GatedSleep,
                                                tmp_path: Path) -> None:
    key_file = tmp_path / "gateway-key"
    key_file.write_text("s3cret\n")
    cp.gateway_key = "s3cret"
    client = _client(cp.url, gated, gateway_key_file=str(key_file), environment="production")
    async with running(client):
        (call,) = await cp.await_calls("register", 1)
        await until(lambda: client.state is RegistrationState.REGISTERED)
    assert call.status == 200
    assert call.headers["x-gateway-key"] == "s3cret"
    assert call.body == {
        "instance_name": "kong-7f9c-abcde",
        "gateway_mode": "sidecar",
        "version": link.__version__,
        "features": ["mcp", "policies", "metering", "ratelimit", "snapshots"],
        "environment": "production",
    }
    assert client.gateway_id == call.gateway_id


async def test_heartbeats_at_the_server_interval(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    client = _client(cp.url, gated)
    async with running(client):
        await gated.asleep(1)
        gated.release(3)
        beats = await cp.await_calls("heartbeat", 3)
        await gated.asleep(4)
    assert gated.delays == [7.0, 7.0, 7.0, 7.0]
    assert {b.gateway_id for b in beats} == {client.gateway_id or cp.of_kind("register")[0].gateway_id}
    assert all(b.status == 200 for b in beats)
    body = beats[0].body
    assert body["status"] == "healthy"
    assert isinstance(body["uptime_s"], int) and body["uptime_s"] >= 0
    assert set(body["metrics"]) >= {"requests_total"}


async def test_interval_below_the_floor_is_raised_to_it(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    cp.script("register", (200, {"gateway_id": "g-1", "heartbeat_interval_s": 0.001}))
    client = _client(cp.url, gated, heartbeat_interval_min_s=2.5)
    async with running(client):
        await gated.asleep(1)
    assert gated.delays == [2.5]


async def test_counters_increase_between_heartbeats(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    client = _client(cp.url, gated)
    async with running(client):
        await gated.asleep(1)
        gated.release()
        first = (await cp.await_calls("heartbeat", 1))[0].body["metrics"]["requests_total"]
        await gated.asleep(2)
        DECISIONS.labels(entry="ext_authz", outcome="success", reason="").inc(3)
        DECISIONS.labels(entry="ext_authz", outcome="rate_limited", reason="rate_limited").inc(2)
        gated.release()
        second = (await cp.await_calls("heartbeat", 2))[1].body["metrics"]
    assert second["requests_total"] == first + 5
    assert second["requests_denied"] >= 2


async def test_backs_off_with_jitter_on_5xx(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    cp.script("register", 503, 500, 502, 503)
    client = _client(cp.url, gated, backoff_initial_s=1, backoff_max_s=4)
    async with running(client):
        for n in range(1, 5):
            await gated.asleep(n)
            assert client.state is RegistrationState.RETRYING
            ok, detail = client.readiness()
            assert ok and "HTTP 5" in detail
            gated.release()
        calls = await cp.await_calls("register", 5)
        await gated.asleep(5)
        assert client.state is RegistrationState.REGISTERED
    assert [c.status for c in calls] == [503, 500, 502, 503, 200]
    _assert_backoff(gated.delays[:4], 1, 4)
    assert gated.delays[3] >= 2  # the cap (4) is reached, jitter keeps at least half of it
    assert gated.delays[4] == 7.0  # back to the server's interval after success


async def test_backs_off_while_refused_then_registers() -> None:
    port = free_port()
    server = ControlPlaneServer(port=port, heartbeat_interval_s=5)
    gated = GatedSleep()
    client = _client(server.url, gated, backoff_initial_s=0.5, backoff_max_s=60)
    async with running(client):
        for n in range(1, 6):
            await gated.asleep(n)
            assert client.state is RegistrationState.RETRYING
            assert "ConnectError" in client.last_error
            gated.release()
        await gated.asleep(6)
        with server:
            gated.release()
            await server.await_calls("register", 1)
            await gated.asleep(7)
            assert client.state is RegistrationState.REGISTERED
    assert gated.delays[6] == 5.0
    _assert_backoff(gated.delays[:6], 0.5, 60)
    assert gated.delays[5] > gated.delays[0] * 4  # it really grew


async def test_failed_heartbeats_back_off_and_keep_the_gateway_id(cp: ControlPlaneServer,
                                                                   gated: GatedSleep) -> None:
    client = _client(cp.url, gated, backoff_initial_s=1, backoff_max_s=8)
    async with running(client):
        await gated.asleep(1)
        gateway_id = client.gateway_id
        cp.script("heartbeat", 503, 503)
        for n in (1, 2, 3):
            gated.release()
            await cp.await_calls("heartbeat", n)
            await gated.asleep(n + 1)
    assert [c.status for c in cp.of_kind("heartbeat")] == [503, 503, 200]
    assert len(cp.of_kind("register")) == 1
    assert {c.gateway_id for c in cp.of_kind("heartbeat")} == {gateway_id}
    assert gated.delays[0] == 7.0
    _assert_backoff(gated.delays[1:3], 1, 8)
    assert gated.delays[3] == 7.0


async def test_registers_again_when_a_heartbeat_gets_404(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    client = _client(cp.url, gated)
    async with running(client):
        await gated.asleep(1)
        old = client.gateway_id
        cp.forget()
        gated.release()
        registers = await cp.await_calls("register", 2)
        await gated.asleep(2)
        assert client.state is RegistrationState.REGISTERED
        gated.release()
        beats = await cp.await_calls("heartbeat", 2)
        await gated.asleep(3)
    assert beats[0].status == 404 and beats[0].gateway_id == old
    assert registers[1].gateway_id != old and client.gateway_id == registers[1].gateway_id
    assert beats[1].status == 200 and beats[1].gateway_id == client.gateway_id
    # Re-registration is immediate: no backoff delay between the 404 and the new register.
    assert gated.delays == [7.0, 7.0, 7.0]


async def test_stops_with_a_clear_error_on_401(cp: ControlPlaneServer, gated: GatedSleep,
                                               caplog: pytest.LogCaptureFixture) -> None:
    cp.gateway_key = "right"
    client = _client(cp.url, gated, gateway_key="wrong")
    with caplog.at_level(logging.ERROR, logger="stoa.link.controlplane"):
        async with running(client):
            await cp.await_calls("register", 1)
            await until(lambda: not client.running)
            assert client.state is RegistrationState.STOPPED
            ok, detail = client.readiness()
    assert ok  # never blocks traffic
    assert "401" in detail and "gateway key" in detail
    assert gated.delays == []  # no retry was even scheduled
    assert len(cp.of_kind("register")) == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "401" in errors[0].getMessage() and "gateway_key" in errors[0].getMessage()


async def test_stops_on_403_heartbeat(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    client = _client(cp.url, gated)
    async with running(client):
        await gated.asleep(1)
        cp.script("heartbeat", 403)
        gated.release()
        await until(lambda: not client.running)
    assert client.state is RegistrationState.STOPPED
    assert "403" in client.last_error


async def test_gateway_key_file_is_read_again_on_each_registration(cp: ControlPlaneServer, gated: GatedSleep,
                                                                   tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    client = _client(cp.url, gated, gateway_key_file=str(key_file), gateway_key="inline-ignored")
    async with running(client):
        # The Secret is not mounted yet: back off, without calling the control plane.
        await gated.asleep(1)
        assert cp.of_kind("register") == []
        assert "gateway_key_file" in client.last_error
        key_file.write_text("first")
        gated.release()
        await gated.asleep(2)
        assert client.state is RegistrationState.REGISTERED
        key_file.write_text("rotated")
        cp.forget()
        gated.release()
        registers = await cp.await_calls("register", 2)
    assert [r.headers["x-gateway-key"] for r in registers] == ["first", "rotated"]


async def test_unusable_register_answer_backs_off(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    cp.script("register", (200, {"heartbeat_interval_s": 30}), (200, b"not json"),
              (200, {"gateway_id": "g", "heartbeat_interval_s": "soon"}))
    client = _client(cp.url, gated)
    async with running(client):
        reasons = []
        for n in (1, 2, 3):
            await gated.asleep(n)
            reasons.append(client.last_error)
            gated.release()
        await gated.asleep(4)
        assert client.state is RegistrationState.REGISTERED
    assert "gateway_id" in reasons[0] and "not JSON" in reasons[1] and "heartbeat_interval_s" in reasons[2]


async def test_edge_mcp_mode_registers_as_edge_mcp(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    settings = Settings.model_validate({"mode": "edge-mcp", "controlplane": {"url": cp.url}})
    client = ControlPlaneClient(settings, sleep=gated, env={})
    async with running(client):
        (call,) = await cp.await_calls("register", 1)
    assert call.body["gateway_mode"] == "edge_mcp"


async def test_metrics_show_registration_and_heartbeats(cp: ControlPlaneServer, gated: GatedSleep) -> None:
    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    ok_before = sample("stoa_link_controlplane_heartbeats_total", {"result": "ok"})
    nf_before = sample("stoa_link_controlplane_heartbeats_total", {"result": "not_found"})
    client = _client(cp.url, gated)
    async with running(client):
        await gated.asleep(1)
        assert sample("stoa_link_controlplane_registered") == 1
        gated.release()
        await gated.asleep(2)
        cp.forget()
        gated.release()
        await gated.asleep(3)
        assert len(cp.of_kind("register")) == 2
    assert sample("stoa_link_controlplane_registered") == 0  # after stop
    assert sample("stoa_link_controlplane_heartbeats_total", {"result": "ok"}) == ok_before + 1
    assert sample("stoa_link_controlplane_heartbeats_total", {"result": "not_found"}) == nf_before + 1


async def test_stop_interrupts_a_long_backoff() -> None:
    client = ControlPlaneClient(make_settings(f"http://127.0.0.1:{free_port()}", backoff_initial_s=3600,
                                              backoff_max_s=3600))
    await client.start()
    await until(lambda: client.state is RegistrationState.RETRYING)
    await client.stop()  # real asyncio.sleep(>=1800 s) is cancelled, not waited out
    assert not client.running and client.state is RegistrationState.STOPPED


async def test_real_sleep_end_to_end() -> None:
    """With the real clock: a tiny server interval yields a steady stream of heartbeats."""
    with ControlPlaneServer(heartbeat_interval_s=0.02) as server:
        client = ControlPlaneClient(make_settings(server.url, heartbeat_interval_min_s=0.01))
        async with running(client):
            await until(lambda: len(server.of_kind("heartbeat")) >= 3)
    assert all(c.status == 200 for c in server.of_kind("heartbeat"))
