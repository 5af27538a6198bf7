"""`stoa-link demo` end to end: real Envoy and one Link process (serving MCP too), the demo upstream;
allowed and refused requests, metering to a real broker (tansu), then SIGTERM stops every child."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from mcp.client import Client
from mcp_types import PromptReference

from tests.harness.kafka import TansuBroker, TopicReader
from tests.harness.procs import wait_until

pytestmark = pytest.mark.integration


class Demo:
    """A running `stoa-link demo` and what its banner says."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "link.cli", "demo", "--listen", "0", "--duration", "120"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.banner = ""
        deadline = time.monotonic() + 90
        assert self.proc.stdout is not None
        while "Try:" not in self.banner:
            line = self.proc.stdout.readline()
            if not line:
                pytest.fail(f"demo exited early:\n{self.banner}")
            self.banner += line
            assert time.monotonic() < deadline, self.banner
        while True:  # the rest of the banner
            line = self.proc.stdout.readline()
            self.banner += line
            if not line.strip():
                break

    def url(self, label: str) -> str:
        found = re.search(rf"{re.escape(label)}\s+(http://[^\s/]+)", self.banner)
        assert found, self.banner
        return found.group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _env_without_stoa(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "METERING_ENABLED")}
    return {**env, **extra}


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


async def _demo_content_over_mcp(url: str) -> None:
    """The public tenant's Resource and Prompt, anonymously over MCP, through the demo's policy."""
    async with Client(url, mode="legacy") as client:
        uris = sorted(str(r.uri) for r in (await client.list_resources()).resources)
        assert uris == ["demo://guide", "demo://invoices/sample"]
        invoices = await client.read_resource("demo://invoices/sample")
        assert "inv-1001" in invoices.contents[0].text  # type: ignore[union-attr]
        prompt = await client.get_prompt("explain-invoice", {"invoiceId": "inv-1001", "audience": "customer"})
        assert "Explain invoice inv-1001 to a customer" in prompt.messages[0].content.text  # type: ignore[union-attr]
        done = await client.complete(PromptReference(type="ref/prompt", name="explain-invoice"),
                                     {"name": "invoiceId", "value": "inv-100"})
        assert done.completion.values == ["inv-1001", "inv-1002"]


class BannerCurl:
    """One ``curl`` line of the banner, as a request, and the status its comment promises."""

    def __init__(self, line: str, token: str) -> None:
        command, _, comment = line.partition(" # ")
        self.comment = comment.strip()
        words = shlex.split(command.replace("$TOKEN", token))
        assert words[0] == "curl", line
        self.method, self.headers, self.body, self.url = "GET", {}, None, ""
        it = iter(words[1:])
        for word in it:
            if word == "-X":
                self.method = next(it)
            elif word == "-H":
                name, _, value = next(it).partition(":")
                self.headers[name.strip()] = value.strip()
            elif word == "-d":
                self.body = next(it).encode()
                self.method = "POST" if self.method == "GET" else self.method
            elif word.startswith("http://"):
                self.url = word
            else:
                assert word in ("-i", "-s"), (word, line)
        found = re.search(r"\b([1-5]\d\d)\b", self.comment)
        self.expected = int(found.group(1)) if found else 200 if self.comment.startswith("allowed") else None

    def send(self, http: httpx.Client) -> httpx.Response:
        return http.request(self.method, self.url, headers=self.headers, content=self.body)


def _banner_lines(banner: str) -> list[str]:
    """The banner's commands after ``Try:``, continuation lines joined."""
    text = banner.split("Try:", 1)[1].replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _banner_token(lines: list[str], http: httpx.Client, secret: str | None = None) -> httpx.Response:
    """Run the banner's token command: client_credentials with HTTP Basic at the issuer's token endpoint."""
    found = re.fullmatch(r"TOKEN=\$\(curl -s -u ([^:\s]+):(\S+) -d (grant_type=client_credentials) "
                         r"(http://\S+/realms/stoa/protocol/openid-connect/token) \| python3 -c .*access_token.*",
                         lines[0])
    assert found, lines[0]
    client, banner_secret, form, url = found.groups()
    return http.post(url, auth=(client, secret or banner_secret), content=form.encode(),
                     headers={"content-type": "application/x-www-form-urlencoded"})


def test_demo_banner_commands_answer_as_they_say() -> None:
    """Every command the banner prints, run as printed: a token from the demo's issuer, then the requests
    through Envoy (allowed with the JWT, 401 without credentials, 422 by the contract, a masked 500
    snapshot, the API key on a route no contract governs), the snapshot list, the MCP calls."""
    demo = Demo(_env_without_stoa())
    children: set[int] = set()
    try:
        envoy = demo.url("Envoy (front proxy)")
        children = _children(demo.proc.pid)
        assert len(children) == 2  # one Link process (MCP inside) and Envoy; the issuer is a thread
        assert "metering                off" in demo.banner
        lines = _banner_lines(demo.banner)
        with httpx.Client(timeout=10) as http:
            token = _banner_token(lines, http)
            assert token.status_code == 200, token.text
            jwt_ = token.json()["access_token"]
            wrong = _banner_token(lines, http, secret="not-the-secret")
            assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")

            through_envoy = [BannerCurl(line, jwt_) for line in lines
                             if line.startswith("curl") and f" {envoy}/" in line]
            # What the banner promises, in its order; then each promise is checked against the real demo.
            assert [(c.method, c.url.removeprefix(envoy), c.expected) for c in through_envoy] == [
                ("GET", "/public/hello", 200),
                ("GET", "/api/invoices/inv-1001", 200),
                ("GET", "/api/invoices/inv-1001", 401),
                ("POST", "/api/invoices", 422),
                ("GET", "/api/invoices/inv-500", 500),
                ("GET", "/api/orders/o-1", 200),
            ], lines
            answers = {}
            for curl in through_envoy:
                r = curl.send(http)
                assert r.status_code == curl.expected, (curl.comment, r.status_code, r.text)
                answers[(curl.method, curl.url.removeprefix(envoy), curl.expected)] = r
            assert answers[("GET", "/public/hello", 200)].json()["seen_by_gateway"]["x-stoa-tenant"] == "demo"
            assert answers[("GET", "/api/invoices/inv-1001", 200)].json()["id"] == "inv-1001"
            assert answers[("GET", "/api/invoices/inv-1001", 401)].json()["error"] == "unauthorized"
            assert answers[("POST", "/api/invoices", 422)].json()["error"] == "unprocessable_entity"
            by_key = answers[("GET", "/api/orders/o-1", 200)].json()["seen_by_gateway"]
            assert by_key["x-stoa-consumer"] == "acme-billing-app"  # the API key's consumer, not the JWT's
            # The API key is not enough where the contract (required_policies: auth-jwt) governs.
            key = re.search(r"x-api-key: (\S+)'", demo.banner).group(1)  # type: ignore[union-attr]
            with_key = http.get(f"{envoy}/api/invoices/inv-1001", headers={"x-api-key": key})
            assert with_key.status_code == 401, with_key.text
            assert "contract billing-api requires a JWT" in with_key.json()["reason"]
            asyncio.run(_demo_content_over_mcp(demo.url("MCP (in Link)") + "/mcp"))

            snapshots_line = next(line for line in lines if "/admin/snapshots" in line)

            def upstream_500s() -> tuple[httpx.Response, list[dict[str, Any]]]:
                got = BannerCurl(snapshots_line, jwt_).send(http)
                assert got.status_code == 200, got.text
                return got, [s for s in got.json()["snapshots"]
                             if s["response_status"] == 500 and s["request_path"] == "/api/invoices/inv-500"]

            # Snapshots are written off the request path (the tap's trace waits for its access-log
            # entry, then the writer thread stores it): the banner's command finds it soon, not at once.
            assert wait_until(lambda: bool(upstream_500s()[1]), timeout=15, interval=0.2)
            listed, failed = upstream_500s()
            detail = http.get(f"{listed.url}/{failed[0]['id']}", headers=dict(listed.request.headers))
            assert detail.status_code == 200, detail.text
            snap = detail.json()
            assert snap["pii_found"] and {"card", "email"} <= set(snap["pii_kinds"])
            assert "jane.doe@example.com" not in detail.text and "4111 1111 1111 1111" not in detail.text
            assert snap["request"]["headers"]["authorization"] == "[REDACTED]"
            assert jwt_ not in detail.text
            assert snap["consumer_id"] == "demo-client" and snap["tenant_id"] == "tenant-acme"

            mcp = [BannerCurl(line, jwt_) for line in lines if "/mcp/v1/tools" in line]
            assert len(mcp) == 2, lines
            tools, hello = (c.send(http) for c in mcp)
            assert tools.status_code == 200 and "say-hello" in tools.text, tools.text
            assert hello.status_code == 200 and hello.json()["structuredContent"]["message"] == "Hello, Ada!"
    finally:
        code = demo.stop()
    assert code == 0, demo.banner
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"child {pid} survived the demo"


def test_demo_children_die_with_the_demo() -> None:
    """Even a SIGKILLed demo leaves no Link, MCP server or Envoy behind."""
    proc = subprocess.Popen([sys.executable, "-m", "link.cli", "demo", "--listen", "0", "--duration", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while "Try:" not in (proc.stdout.readline() or "Try:"):
        assert time.monotonic() < deadline
    children = _children(proc.pid)
    assert children
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") and not _is_zombie(pid) for pid in children):
        assert time.monotonic() < deadline, "a demo child outlived the demo"
        time.sleep(0.1)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_demo_with_a_broker_meters_every_request_once() -> None:
    """`METERING_ENABLED=true KAFKA_BOOTSTRAP_SERVERS=… stoa-link demo`: each request Envoy handles,
    refused ones included, and each MCP call is one event (distinct event ids) on stoa.metering."""


    with TansuBroker() as broker:
        demo = Demo(_env_without_stoa(METERING_ENABLED="true", KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap))
        try:
            assert f"metering                on: every request, refused ones too, is one event on " \
                   f"stoa.metering at {broker.bootstrap}" in demo.banner
            envoy, mcp = demo.url("Envoy (front proxy)"), demo.url("MCP (in Link)")
            key = {"x-api-key": "demo-key-acme-123"}
            with httpx.Client(timeout=10) as http:  # the issuer is not behind Envoy: not metered
                token = _banner_token(_banner_lines(demo.banner), http)
            assert token.status_code == 200, token.text
            jwt_ = {"authorization": f"Bearer {token.json()['access_token']}"}
            # (method, path, headers, json body, expected status): allowed, refused by each phase, failing.
            cases: list[tuple[str, str, dict[str, str], Any, int]] = [
                ("GET", "/public/hello", {}, None, 200),
                ("GET", "/api/invoices/inv-1001", {}, None, 401),  # no credentials
                ("GET", "/api/invoices/inv-1001", {"x-api-key": "wrong"}, None, 401),
                ("GET", "/api/invoices/inv-1001", key, None, 401),  # the contract requires a JWT
                ("GET", "/api/invoices/inv-1001", jwt_, None, 200),
                ("GET", "/api/invoices/bad-id", jwt_, None, 400),  # the contract's path pattern
                ("POST", "/api/invoices", jwt_, {"customer": 42}, 422),  # the contract's body schema
                ("POST", "/api/invoices", jwt_, {"customer": "acme", "amount": 12.5}, 201),
                ("GET", "/api/invoices/inv-500", jwt_, None, 500),  # the backend fails
                ("GET", "/api/orders/o-1", key, None, 200),  # no contract there: the API key suffices
                ("GET", "/public/status/404", {}, None, 404),
            ]
            with httpx.Client(timeout=10) as http:
                for method, path, headers, body, expected in cases:
                    r = http.request(method, envoy + path, headers=headers, json=body)
                    assert r.status_code == expected, (method, path, r.status_code, r.text)
                    if expected == 201:
                        # The POST body crossed Envoy (chunked or not) and reached the stand-in whole.
                        assert r.json() == {"id": "inv-2001", "customer": "acme", "amount": 12.5}
                hello = http.post(f"{mcp}/mcp/v1/tools/say-hello", json={"name": "Ada"})
                assert hello.status_code == 200 and hello.json()["structuredContent"]["message"] == "Hello, Ada!"
            wanted = len(cases) + 1

            async def read() -> list[Any]:
                async with TopicReader(broker.bootstrap, "stoa.metering") as reader:
                    await reader.read_until(lambda m: len(m) >= wanted, within_s=30)
                    await reader.poll(500)  # and nothing more than that arrives
                    return reader.messages



            events = [json.loads(m.value) for m in asyncio.run(read())]
            assert len({e["event_id"] for e in events}) == len(events) == wanted, events
            by_source = sorted(e.get("source", "") for e in events)
            assert by_source.count("mcp") == 1
            statuses = sorted(e["http_status"] for e in events if e.get("source") != "mcp")
            assert statuses == sorted(c[4] for c in cases)
            assert {e["status"] for e in events} >= {"success", "unauthenticated", "error"}
        finally:
            code = demo.stop()
        assert code == 0, demo.banner
