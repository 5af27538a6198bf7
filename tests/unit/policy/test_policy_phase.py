"""The policy phase: loading, last known good, failure modes, dry run, decision log, remote OPA."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from link.policy.sources import bundle_bytes
from tests.unit.policy.support import make_ctx, make_phase, write_policy

GOOD = """
package envoy.authz

import rego.v1

default allow := false

allow if input.attributes.request.http.method == "GET"
"""

GOOD_V2 = GOOD.replace('"GET"', '"POST"')
BROKEN = "package envoy.authz\n\nallow if {\n  input.attributes.request.http.method ==\n"


def _touch_later(path: Path, text: str) -> None:
    """Rewrite a file so its mtime differs even on coarse clocks."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_not_ready_and_closed_until_a_policy_loads(tmp_path: Path) -> None:
    path = write_policy(tmp_path, BROKEN)
    phase = make_phase(tmp_path, paths=[str(path)])
    ready, detail = phase.readiness()
    assert not ready and "no policy loaded" in detail and "policy.rego:3" in detail
    decision = await phase(make_ctx())
    assert decision is not None and decision.http_status == 503 and decision.reason == "policy_unavailable"
    _touch_later(path, GOOD)
    assert phase.reload()
    assert phase.readiness()[0]
    assert await phase(make_ctx()) is None


async def test_failure_mode_open_lets_requests_through_without_policy(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, paths=[str(tmp_path / "missing.rego")], failure_mode="open")
    ctx = make_ctx()
    assert await phase(ctx) is None
    assert "does not exist" in ctx.record.policy_error


async def test_bad_reload_keeps_last_known_good(tmp_path: Path) -> None:
    path = write_policy(tmp_path, GOOD)
    phase = make_phase(tmp_path, paths=[str(path)])
    first = phase.policy
    assert first is not None
    _touch_later(path, BROKEN)
    assert not phase.reload()
    assert phase.policy is first  # still in force
    ready, detail = phase.readiness()
    assert ready and "last reload failed" in detail
    assert await phase(make_ctx("GET")) is None
    assert await phase(make_ctx("POST")) is not None
    _touch_later(path, GOOD_V2)
    assert phase.reload()
    assert await phase(make_ctx("POST")) is None
    assert await phase(make_ctx("GET")) is not None


async def test_watcher_reloads_changed_files(tmp_path: Path) -> None:
    path = write_policy(tmp_path, GOOD)
    phase = make_phase(tmp_path, paths=[str(path)], reload_interval_s=0.05)
    await phase.start()
    try:
        _touch_later(path, GOOD_V2)
        for _ in range(250):  # bounded: 5 s at most
            if await phase(make_ctx("POST")) is None:
                break
            await asyncio.sleep(0.02)
        assert await phase(make_ctx("POST")) is None
    finally:
        await phase.stop()


async def test_directory_with_data_document_and_configmap_layout(tmp_path: Path) -> None:
    # A mounted ConfigMap: real files in a "..<timestamp>" directory, reached through symlinks.
    real = tmp_path / "..2024_01_01"
    (real / "rbac").mkdir(parents=True)
    (real / "policy.rego").write_text("""
package envoy.authz

import rego.v1

default allow := false

allow if {
	some role in input.stoa.principal.roles
	role in data.rbac.allowed_roles
}
""")
    (real / "rbac" / "data.json").write_text(json.dumps({"allowed_roles": ["ops"]}))
    (tmp_path / "..data").symlink_to(real.name)
    (tmp_path / "policy.rego").symlink_to("..data/policy.rego")
    (tmp_path / "rbac").symlink_to("..data/rbac")
    phase = make_phase(tmp_path, paths=[str(tmp_path)])
    assert phase.readiness()[0], phase.last_error
    assert await phase(make_ctx(roles=("ops",))) is None
    assert await phase(make_ctx(roles=("dev",))) is not None


async def test_tar_gz_bundle_with_manifest_revision(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(bundle_bytes({
        ".manifest": json.dumps({"revision": "rev-42", "roots": ["envoy", "limits"]}),
        "envoy/authz/policy.rego": "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
                                   "allow if count(input.parsed_path) <= data.limits.depth\n",
        "limits/data.json": json.dumps({"depth": 2}),
    }))
    phase = make_phase(tmp_path, paths=[str(bundle)])
    assert phase.policy is not None and phase.policy.revision == "rev-42"
    assert await phase(make_ctx(path="/a/b")) is None
    assert await phase(make_ctx(path="/a/b/c")) is not None


def test_bundle_escaping_its_root_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "evil.tar.gz"
    bundle.write_bytes(bundle_bytes({"../x.rego": GOOD}))
    phase = make_phase(tmp_path, paths=[str(bundle)])
    assert phase.policy is None and "escapes the bundle" in phase.last_error


async def test_query_without_rule_is_refused_at_load(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, GOOD, query="data.envoy.authz.permit")
    assert phase.policy is None and "no rule or package answers data.envoy.authz.permit" in phase.last_error


async def test_unknown_function_is_reported_with_its_line(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, "package envoy.authz\n\nimport rego.v1\n\nallow if frobnicate(input)\n")
    assert phase.policy is None and "policy.rego:5: unknown function frobnicate" in phase.last_error


async def test_compile_pass_errors_are_reported_with_their_line(tmp_path: Path) -> None:
    rego = ("package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
            "allow if input.stoa.principal.roles[_] in data.rbac.allowed_roles\n")
    phase = make_phase(tmp_path, rego)
    assert phase.policy is None and "policy.rego:7: Invalid bracket argument" in phase.last_error


async def test_conflicting_values_at_runtime_follow_failure_mode(tmp_path: Path) -> None:
    rego = ("package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
            "allow := true if input.parsed_path[0] == \"a\"\n"
            "allow := false if input.parsed_path[1] == \"b\"\n")
    phase = make_phase(tmp_path, rego)
    assert phase.policy is not None
    decision = await phase(make_ctx(path="/a/b"))
    assert decision is not None and decision.http_status == 503 and decision.reason == "policy_error"
    open_phase = make_phase(tmp_path, rego, failure_mode="open")
    assert await open_phase(make_ctx(path="/a/b")) is None


async def test_undefined_decision_is_a_policy_error(tmp_path: Path) -> None:
    # OPA-Envoy answers an undefined decision with an error; Link lets policy.failure_mode decide.
    rego = "package envoy.authz\n\nimport rego.v1\n\nallow if input.x == 1\n"
    decision = await make_phase(tmp_path, rego)(make_ctx())
    assert decision is not None and decision.http_status == 503 and decision.reason == "policy_undefined"
    assert await make_phase(tmp_path, rego, failure_mode="open")(make_ctx()) is None


async def test_malformed_object_decision_is_an_error(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, "package envoy.authz\n\nallow := {\"headers\": {\"a\": \"b\"}}\n")
    decision = await phase(make_ctx())
    assert decision is not None and decision.http_status == 503
    assert decision.reason == "policy_error"


async def test_dry_run_allows_and_records_would_be_denials(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    phase = make_phase(tmp_path, GOOD, dry_run=True, decision_log=str(log))
    ctx = make_ctx("DELETE")
    assert await phase(ctx) is None
    assert ctx.dry_run_denials == ["policy"]
    assert ctx.record.policy_dry_run == "deny"
    allowed = make_ctx("GET")
    assert await phase(allowed) is None and allowed.dry_run_denials == []
    await phase.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["dry_run"], e["result"]) for e in lines] == [(True, False), (False, True)]


async def test_decision_log_line_is_complete_and_redacted(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    phase = make_phase(tmp_path, GOOD, decision_log=str(log))
    await phase.start()
    ctx = make_ctx("POST", "/login", query="user=bob&access_token=s3cr3t",
                   headers={"authorization": "Bearer eyJ.secret", "cookie": "sid=1", "x-api-key": "k-123"},
                   body=b'{"user": "bob", "password": "hunter2"}')
    decision = await phase(ctx)
    assert decision is not None
    await phase.stop()
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["decision_id"] == ctx.decision_id
    assert entry["request_id"] == ctx.request.request_id
    assert entry["allowed"] is False and entry["result"] is False
    assert entry["metrics"]["timer_policy_eval_us"] > 0
    http = entry["input"]["attributes"]["request"]["http"]
    assert http["headers"]["authorization"] == "[REDACTED]"
    assert http["headers"]["cookie"] == "[REDACTED]"
    assert http["headers"]["x-api-key"] == "[REDACTED]"
    assert http["headers"]["user-agent"] == "test"
    assert http["path"] == "/login?user=bob&access_token=[REDACTED]"
    assert entry["input"]["parsed_query"]["access_token"] == "[REDACTED]"
    assert entry["input"]["parsed_body"] == {"user": "bob", "password": "[REDACTED]"}
    text = log.read_text()
    for secret in ("eyJ.secret", "k-123", "s3cr3t", "hunter2", "sid=1"):
        assert secret not in text


# -- remote OPA -------------------------------------------------------------


class _Opa(BaseHTTPRequestHandler):
    answers: list[tuple[int, Any]] = []
    seen: list[dict[str, Any]] = []
    delay = 0.0
    answered = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append(body)
        time.sleep(type(self).delay)
        type(self).answered += 1
        status, payload = type(self).answers[0] if type(self).answers else (200, {"result": True})
        raw = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except OSError:
            pass  # the client gave up (timeout tests)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def opa() -> Iterator[tuple[str, type[_Opa]]]:
    handler = type("Opa", (_Opa,), {"answers": [], "seen": [], "delay": 0.0, "answered": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/data/envoy/authz/allow", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_remote_opa_gets_the_same_input_and_decides(tmp_path: Path,
                                                          opa: tuple[str, type[_Opa]]) -> None:
    url, handler = opa
    handler.answers = [(200, {"result": {"allowed": False, "http_status": 429, "body": "no"}})]
    phase = make_phase(tmp_path, engine="remote", remote_url=url)
    await phase.start()
    try:
        decision = await phase(make_ctx("GET", "/people/1", roles=("reader",)))
    finally:
        await phase.stop()
    assert decision is not None and decision.http_status == 429 and decision.body == b"no"
    sent = handler.seen[0]["input"]
    assert sent["attributes"]["request"]["http"]["method"] == "GET"
    assert sent["parsed_path"] == ["people", "1"]
    assert sent["stoa"]["principal"]["roles"] == ["reader"]


@pytest.mark.parametrize(("mode", "allowed"), [("closed", False), ("open", True)])
async def test_remote_opa_timeout_follows_failure_mode(tmp_path: Path, opa: tuple[str, type[_Opa]],
                                                       mode: str, allowed: bool) -> None:
    url, handler = opa
    handler.delay = 3.0
    phase = make_phase(tmp_path, engine="remote", remote_url=url, remote_timeout_ms=50, failure_mode=mode)
    await phase.start()
    try:
        decision = await phase(make_ctx())
        # Decided on the timeout: the slow server has not even answered yet.
        assert handler.seen and handler.answered == 0
    finally:
        await phase.stop()
    assert (decision is None) is allowed
    if decision is not None:
        assert decision.http_status == 503


async def test_remote_opa_without_result_is_undefined(tmp_path: Path, opa: tuple[str, type[_Opa]]) -> None:
    url, handler = opa
    handler.answers = [(200, {})]
    phase = make_phase(tmp_path, engine="remote", remote_url=url)
    decision = await phase(make_ctx())
    await phase.stop()
    assert decision is not None and decision.reason == "policy_undefined"
