"""The replay command: runnable curl, secrets removed, quoting safe."""

from __future__ import annotations

import shlex

from link.events import Exchange, HttpMessage
from link.settings import SnapshotSettings
from link.snapshots import PiiMasker, SnapshotOrigin, build_snapshot
from link.snapshots.replay import replay_command


def test_replay_command_quotes_and_skips_transport_headers() -> None:
    cmd = replay_command(
        "post", "/orders?x=1",
        {":authority": "api.example", ":scheme": "https", "content-type": "application/json",
         "content-length": "12", "x-stoa-tenant": "acme", "x-envoy-internal": "true", "x-note": "it's"},
        '{"a": "b\'c"}',
    )
    argv = shlex.split(cmd)
    assert argv[:6] == ["curl", "-sS", "-X", "POST", "https://api.example/orders?x=1", "-H"]
    assert "content-type: application/json" in argv
    assert "x-note: it's" in argv
    assert not any(a.startswith(("content-length", "x-stoa-", "x-envoy-")) for a in argv)
    assert argv[-2:] == ["--data-raw", '{"a": "b\'c"}']


def test_snapshot_replay_has_no_secrets() -> None:
    ex = Exchange(
        request_id="r1", timestamp=1.0, method="PUT", path="/pay?api_key=k3y-value-123&n=1", status=500,
        request=HttpMessage(
            headers={"authorization": "Bearer s3cr3t-token-value", "cookie": "sid=abcdef123456",
                     "content-type": "application/json", "host": "shop.local"},
            body=b'{"password": "pa55word!", "email": "x@y.io"}', body_truncated=True,
        ),
        response=HttpMessage(headers={"content-type": "application/json"}, body=b'{"message": "boom"}'),
    )
    doc = build_snapshot(ex, PiiMasker(SnapshotSettings().mask_keys), SnapshotOrigin("gw", "i", "sidecar"))
    cmd = doc["replay_command"]
    for secret in ("s3cr3t-token-value", "abcdef123456", "pa55word!", "x@y.io", "k3y-value-123"):
        assert secret not in cmd
    argv = shlex.split(cmd.split("  #")[0])
    assert argv[4] == "http://shop.local/pay?api_key=[masked]&n=1"
    assert "authorization: [REDACTED]" in argv  # the name stays so whoever replays knows what to supply
    assert cmd.endswith("# body excerpt only: the original body was longer")
    assert doc["error_message"] == "boom"
    assert doc["error_type"] == "upstream_5xx"


def test_pii_found_reflects_content_not_routine_redaction() -> None:
    masker = PiiMasker(SnapshotSettings().mask_keys)
    ex = Exchange(request_id="r", timestamp=1.0, method="GET", path="/a", status=502,
                  request=HttpMessage(headers={"authorization": "Bearer abcdefgh"}),
                  response=HttpMessage(headers={"content-type": "text/plain"}, body=b"bad gateway"))
    doc = build_snapshot(ex, masker, SnapshotOrigin("gw", "i", "sidecar"))
    assert (doc["pii_found"], doc["pii_kinds"]) == (False, [])
    assert doc["request"]["headers"]["authorization"] == "[REDACTED]"
