"""The webhook over real HTTPS: what the API server sees, certificate renewal, bad clients, the CLI."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509

from link.injector.cli import main as injector_main
from link.injector.cli import parse_args
from link.injector.server import InjectorServer, ServeOptions
from tests.harness.procs import free_port
from tests.unit.injector.certs import write_ca, write_server_cert

PODS = Path(__file__).parent / "pods"
UID = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"


def _review(gateway: str = "kong") -> dict[str, object]:
    pod = yaml.safe_load((PODS / f"{gateway}.yaml").read_text())
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": UID, "operation": "CREATE", "namespace": "kong", "object": pod,
                        "kind": {"group": "", "version": "v1", "kind": "Pod"}}}


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca_path, ca_key, ca = write_ca(tmp_path)
    crt, key, _ = write_server_cert(tmp_path, ca_key, ca)
    return ca_path, crt, key


@pytest.fixture
def server(tls: tuple[Path, Path, Path]) -> Iterator[InjectorServer]:
    _, crt, key = tls
    options = ServeOptions(tls_cert=str(crt), tls_key=str(key), host="127.0.0.1", port=free_port(),
                           max_body_bytes=1 << 20, handshake_timeout_s=2, cert_check_interval_s=0)
    with InjectorServer(options) as srv:
        yield srv


def _client(ca: Path) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=5)


def test_mutate_over_https(server: InjectorServer, tls: tuple[Path, Path, Path]) -> None:
    with _client(tls[0]) as client:
        r = client.post(f"https://127.0.0.1:{server.port}/mutate?timeout=10s", json=_review())
        health = client.get(f"https://127.0.0.1:{server.port}/healthz")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["kind"] == "AdmissionReview" and body["response"]["uid"] == UID
    assert body["response"]["allowed"] is True and body["response"]["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(body["response"]["patch"]))
    assert any(op["path"] == "/spec/containers/-" and op["value"]["name"] == "stoa-link" for op in ops)
    assert health.status_code == 200


def test_bad_requests_get_clear_answers(server: InjectorServer, tls: tuple[Path, Path, Path]) -> None:
    base = f"https://127.0.0.1:{server.port}"
    with _client(tls[0]) as client:
        not_json = client.post(f"{base}/mutate", content=b"<xml/>",
                               headers={"content-type": "application/json"})
        malformed = client.post(f"{base}/mutate", json={"kind": "AdmissionReview"})
        wrong_path = client.post(f"{base}/validate", json=_review())
        too_big = client.post(f"{base}/mutate", content=b" " * ((1 << 20) + 1))
        still_fine = client.post(f"{base}/mutate", json=_review("gravitee"))
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["response"]["status"]["message"]
    assert malformed.status_code == 200
    assert malformed.json()["response"]["allowed"] is False
    assert "apiVersion" in malformed.json()["response"]["status"]["message"]
    assert wrong_path.status_code == 404
    assert too_big.status_code == 413
    assert still_fine.json()["response"]["allowed"] is True


def test_plain_http_and_silent_clients_do_not_stop_the_server(server: InjectorServer,
                                                              tls: tuple[Path, Path, Path]) -> None:
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # never handshakes
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"http://127.0.0.1:{server.port}/mutate", json=_review(), timeout=5)
        with _client(tls[0]) as client:
            r = client.post(f"https://127.0.0.1:{server.port}/mutate", json=_review("webmethods"))
        assert r.json()["response"]["allowed"] is True
    finally:
        silent.close()


def _served_certificate(port: int, ca: Path) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_renewed_certificate_is_served_without_restart(tmp_path: Path) -> None:
    ca_path, ca_key, ca = write_ca(tmp_path)
    crt, key, first = write_server_cert(tmp_path, ca_key, ca)
    options = ServeOptions(tls_cert=str(crt), tls_key=str(key), host="127.0.0.1", port=free_port(),
                           cert_check_interval_s=0)
    with InjectorServer(options) as srv:
        assert _served_certificate(srv.port, ca_path).serial_number == first.serial_number
        _, _, second = write_server_cert(tmp_path, ca_key, ca)
        stamp = os.stat(crt).st_mtime + 1  # file systems with coarse timestamps still see a change
        os.utime(crt, (stamp, stamp))
        os.utime(key, (stamp, stamp))
        assert _served_certificate(srv.port, ca_path).serial_number == second.serial_number
        key.write_text("not a key")  # a broken renewal keeps the last good certificate
        os.utime(key, (stamp + 1, stamp + 1))
        assert _served_certificate(srv.port, ca_path).serial_number == second.serial_number


def test_cli_flags_build_the_options(tls: tuple[Path, Path, Path]) -> None:
    _, crt, key = tls
    options, level = parse_args(["--tls-cert", str(crt), "--tls-key", str(key), "--port", "9443",
                                 "--link-image", "registry.example/stoa-link:1.2.3", "--link-arg", "serve",
                                 "--link-arg=--log-level=debug", "--settings-configmap", "my-settings",
                                 "--log-level", "debug"])
    assert options.port == 9443 and level == "debug"
    assert options.config.link_image == "registry.example/stoa-link:1.2.3"
    assert options.config.link_args == ("serve", "--log-level=debug")
    assert options.config.settings_configmap == "my-settings"
    assert options.config == replace(options.config, envoy_image="envoyproxy/envoy:v1.40-latest")
    assert options.config.mcp is True


def test_no_mcp_flag_turns_mcp_off_in_what_is_injected(tls: tuple[Path, Path, Path]) -> None:
    _, crt, key = tls
    options, _ = parse_args(["--tls-cert", str(crt), "--tls-key", str(key), "--no-mcp"])
    assert options.config.mcp is False


def test_cli_refuses_unreadable_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = injector_main(["--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(tmp_path / "k")])
    assert code == 2
    assert "--tls-cert" in capsys.readouterr().err


def test_cli_reports_a_bad_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    code = injector_main(["--tls-cert", str(bad), "--tls-key", str(bad), "--host", "127.0.0.1",
                          "--port", str(free_port())])
    assert code == 1
    assert "cannot start" in capsys.readouterr().err
