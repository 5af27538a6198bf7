"""The stdio bridge's token cache and OAuth environment: file modes, untrusted files, damaged files,
pruning, and the settings a desktop client's config can get wrong."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from mcp_server.bridge_oauth import OAuthClient, OAuthConfigError, Token, TokenCache


def _token(name: str = "a", *, expires_in: float = 300, refresh: str | None = None) -> Token:
    now = time.time()
    return Token(name, now + expires_in, now + expires_in / 2, refresh)


def test_the_cache_file_is_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "new" / "tokens.json")
    cache.save("k", _token("tok", refresh="r"))
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    loaded = TokenCache(cache.path).load("k")
    assert loaded is not None and (loaded.access_token, loaded.refresh_token) == ("tok", "r")
    assert [p.name for p in cache.path.parent.iterdir()] == ["tokens.json"]  # no temporary file left


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666])
def test_a_cache_others_may_read_or_write_is_ignored_and_left_alone(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tokens.json"
    planted = json.dumps({"version": 1, "tokens": {"k": {"access_token": "planted"}}})
    path.write_text(planted)
    path.chmod(mode)
    cache = TokenCache(path)
    assert cache.load("k") is None
    cache.save("k", _token())
    assert path.read_text() == planted and stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.parametrize("content", ["", "{", "[]", '{"tokens": []}', '{"tokens": {"k": "x"}}',
                                     '{"tokens": {"k": {"access_token": 1}}}'])
def test_a_damaged_cache_reads_as_empty_and_is_rewritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    path.chmod(0o600)
    cache = TokenCache(path)
    assert cache.load("k") is None
    cache.save("k", _token("fresh"))
    loaded = cache.load("k")
    assert loaded is not None and loaded.access_token == "fresh"


def test_expired_tokens_without_a_refresh_token_are_pruned(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "tokens.json")
    cache.save("old", _token(expires_in=-10))
    cache.save("old-refreshable", _token(expires_in=-10, refresh="r"))
    cache.save("new", _token())
    assert set(json.loads(cache.path.read_text())["tokens"]) == {"old-refreshable", "new"}
    cache.save("new", None)
    assert set(json.loads(cache.path.read_text())["tokens"]) == {"old-refreshable"}


@pytest.mark.parametrize(("body", "expires"), [
    ({"access_token": "a", "token_type": "Bearer", "expires_in": 100}, True),
    ({"access_token": "a", "token_type": "bearer", "expires_in": "100"}, True),
    ({"access_token": "a"}, False),
])
def test_a_token_is_due_in_its_last_quarter_or_minute(body: dict[str, object], expires: bool) -> None:
    token = Token.from_response(body, 1000.0)
    if expires:
        assert (token.expires_at, token.renew_at) == (1100.0, 1075.0)
        assert not token.due(1074.0) and token.due(1075.0) and not token.expired(1099.0)
    else:
        assert token.expires_at is None and not token.due(1e12)
    assert Token.from_response({"access_token": "a", "expires_in": 3600}, 0.0).renew_at == 3540.0


@pytest.mark.parametrize("body", [{}, {"access_token": ""}, {"access_token": 5}, [],
                                  {"access_token": "a", "token_type": "mac"}])
def test_a_token_answer_without_a_bearer_token_is_refused(body: object) -> None:
    with pytest.raises(Exception, match=r"access_token|bearer"):
        Token.from_response(body, 0.0)


@pytest.mark.parametrize(("env", "reason"), [
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "a\nb"}, "STOA_MCP_CLIENT_SECRET: required"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "  "}, "STOA_MCP_CLIENT_SECRET: required"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "s", "STOA_MCP_ISSUER": "ftp://x"}, "not an https URL"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "s", "STOA_MCP_ISSUER": "http://10.0.0.1/r"},
     "not an https URL"),
])
def test_bad_oauth_environments_name_the_variable(env: dict[str, str], reason: str) -> None:
    with pytest.raises(OAuthConfigError, match=reason):
        OAuthClient.from_env(env)


def test_the_environment_defaults(tmp_path: Path) -> None:
    assert OAuthClient.from_env({}) is None
    secret = tmp_path / "s"
    secret.write_text("pw\n")
    creds = OAuthClient.from_env({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET_FILE": str(secret),
                                        "STOA_MCP_SCOPE": " mcp:tools   openid ", "XDG_CACHE_HOME": str(tmp_path),
                                        "STOA_MCP_ISSUER": "https://idp.example/realms/stoa/"})
    assert creds is not None
    assert (creds.client_secret, creds.scope, creds.issuer) == ("pw", "mcp:tools openid", "https://idp.example/realms/stoa")
    assert creds.cache == tmp_path / "stoa-link" / "mcp-tokens.json"
    off = OAuthClient.from_env({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "s",
                                      "STOA_MCP_TOKEN_CACHE": "off"})
    assert off is not None and off.cache is None


def test_every_variable_the_bridge_reads_is_one_a_server_start_accepts() -> None:
    # Link refuses unknown STOA_* variables at start-up; a shell set up for the bridge must not stop a server.
    from link.settings import CLIENT_ENV
    from mcp_server import bridge_oauth
    from mcp_server.stdio_bridge import TOKEN_ENV

    read = {TOKEN_ENV} | {getattr(bridge_oauth, name) for name in bridge_oauth.__all__ if name.endswith("_ENV")}
    assert read <= CLIENT_ENV
