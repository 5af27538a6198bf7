"""Bad settings of the HTTP decision server stop start-up with the key and the reason (the CLI exits 2)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from link.httpauthz.server import bind_sockets
from link.settings import ConfigError, load_settings


@pytest.mark.parametrize(("key", "value", "words"), [
    ("server.authz_transport", "soap", "http"),
    ("server.http_address", "nowhere", "HOST:PORT"),
    ("server.http_max_header_bytes", 10, "greater than or equal"),
    ("server.http_header_timeout_s", 0, "greater than"),
])
def test_bad_values_name_the_key(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={}, overrides={key: value})
    assert err.value.key == key and words in err.value.reason


def test_a_busy_port_names_the_key() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        settings = load_settings(None, env={}, overrides={"server.http_address": f"127.0.0.1:{port}"})
        with pytest.raises(ConfigError) as err:
            bind_sockets(settings)
    assert err.value.key == "server.http_address" and "already in use" in err.value.reason


def test_a_unix_socket_in_a_missing_directory_names_the_key(tmp_path: Path) -> None:
    settings = load_settings(None, env={}, overrides={"server.http_uds": str(tmp_path / "missing" / "a.sock")})
    with pytest.raises(ConfigError) as err:
        bind_sockets(settings)
    assert err.value.key == "server.http_uds"


def test_a_stale_socket_file_is_replaced_but_never_a_regular_file(tmp_path: Path) -> None:
    stale = tmp_path / "authz.sock"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(stale))
    old.close()  # the file stays, as after a crash
    settings = load_settings(None, env={}, overrides={"server.http_uds": str(stale)})
    (sock,) = bind_sockets(settings)
    sock.close()
    regular = tmp_path / "data.txt"
    regular.write_text("keep me")
    settings = load_settings(None, env={}, overrides={"server.http_uds": str(regular)})
    with pytest.raises(ConfigError):
        bind_sockets(settings)
    assert regular.read_text() == "keep me"
