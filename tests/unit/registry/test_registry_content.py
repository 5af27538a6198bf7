"""Resource and Prompt entries: parsing (hostile manifests), the registry store, the files source, validate."""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from link.registry import FileSource, ResourceError, ToolRegistry, parse_prompt, parse_resource
from link.registry.content import MAX_INLINE_BYTES, render
from link.validate import main as validate_main
from tests.unit.registry.test_registry_store import named


def resource(name: str = "orders", ns: str = "tenant-acme", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"uri": "app://orders/latest", "description": "Latest orders", "text": "hello"}
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Resource",
            "metadata": {"name": name, "namespace": ns}, "spec": {k: v for k, v in body.items() if v is not None}}


def prompt(name: str = "summarise", ns: str = "tenant-acme", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "Summarise a topic",
        "arguments": [{"name": "topic", "required": True, "completions": ["billing", "bills", "orders"]}],
        "messages": [{"role": "user", "content": {"type": "text", "text": "Summarise {{topic}}."}}],
    }
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Prompt",
            "metadata": {"name": name, "namespace": ns}, "spec": {k: v for k, v in body.items() if v is not None}}


def test_a_fixed_resource_and_a_template_parse() -> None:
    fixed = parse_resource(resource())
    assert fixed.uri == "app://orders/latest" and fixed.text == "hello" and fixed.size == 5
    assert fixed.match("app://orders/latest") == {} and fixed.match("app://orders/other") is None
    tpl = parse_resource(resource(uri=None, text=None, uriTemplate="app://orders/{id}/lines/{line}",
                                  endpoint="https://api.example/orders/{id}/lines/{line}",
                                  completions={"id": ["1", "2"]}))
    assert tpl.is_template and tpl.variables == ("id", "line")
    assert tpl.match("app://orders/42/lines/7") == {"id": "42", "line": "7"}
    # A variable is one segment: it never swallows a '/', a query or a fragment.
    assert tpl.match("app://orders/4/2/lines/7") is None
    assert tpl.match("app://orders/42/lines/7?x=1") is None
    assert tpl.completions["id"] == ("1", "2")


BAD_RESOURCES: list[tuple[dict[str, Any], str, str]] = [
    ({"uri": None}, "spec.uri", "exactly one of uri or uriTemplate"),
    ({"uriTemplate": "app://x/{id}"}, "spec.uri", "exactly one of uri or uriTemplate"),
    ({"uri": "not a uri"}, "spec.uri", "absolute URI"),
    ({"uri": "app://" + "x" * 3000}, "spec.uri", "absolute URI"),
    ({"uri": None, "uriTemplate": "app://x/{id"}, "spec.uriTemplate", "unbalanced"),
    ({"uri": None, "uriTemplate": "app://x/id}"}, "spec.uriTemplate", "unbalanced"),
    ({"uri": None, "uriTemplate": "app://x/static"}, "spec.uriTemplate", "at least one {variable}"),
    ({"uri": None, "uriTemplate": "app://x/{+path}"}, "spec.uriTemplate", "not a simple variable"),
    ({"uri": None, "uriTemplate": "app://x/{a,b}"}, "spec.uriTemplate", "not a simple variable"),
    ({"uri": None, "uriTemplate": "app://x/{id}/{id}"}, "spec.uriTemplate", "appears twice"),
    ({"uri": None, "uriTemplate": "app://x/{a}{b}"}, "spec.uriTemplate", "separated by a literal"),
    ({"uri": None, "uriTemplate": "app://x/{}"}, "spec.uriTemplate", "not a simple variable"),
    ({"text": None}, "spec.text", "exactly one of text, blob or endpoint"),
    ({"blob": "aGk="}, "spec.text", "(got text, blob)"),
    ({"text": "x" * (MAX_INLINE_BYTES + 1)}, "spec.text", "limited to"),
    ({"text": None, "blob": base64.b64encode(b"x" * (MAX_INLINE_BYTES + 10)).decode()}, "spec.blob", "limited to"),
    ({"text": None, "blob": "not base64!!"}, "spec.blob", "base64"),
    ({"text": 12}, "spec.text", "expected a string"),
    ({"text": None, "endpoint": "ftp://x/y"}, "spec.endpoint", "http(s) URL"),
    ({"text": None, "endpoint": "https://api.example/{id}"}, "spec.endpoint", "not a variable"),
    ({"auth": {"type": "bearer", "secretRef": "x"}}, "spec.auth", "endpoint only"),
    ({"size": -1}, "spec.size", "non-negative"),
    ({"size": True}, "spec.size", "non-negative"),
    ({"mimeType": "text plain"}, "spec.mimeType", "not a media type"),
    ({"rateLimit": "10/fortnight"}, "spec.rateLimit", "unknown unit"),
    ({"completions": {"id": ["1"]}}, "spec.completions.id", "not a variable"),
    ({"annotations": {"priority": 3}}, "spec.annotations.priority", "from 0 to 1"),
    ({"annotations": {"audience": ["robot"]}}, "spec.annotations.audience", "user/assistant"),
    ({"annotations": {"color": "red"}}, "spec.annotations.color", "unknown key"),
    ({"mimetype": "text/plain"}, "spec.mimetype", "unknown key"),
    ({"timeout": "-1s"}, "spec.timeout", "duration"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD_RESOURCES)
def test_hostile_resources_are_refused_naming_the_field(spec: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ResourceError) as exc:
        parse_resource(resource(**spec))
    assert exc.value.field == field and reason in exc.value.reason, exc.value


@pytest.mark.parametrize(("manifest", "field"), [
    ({**resource(), "kind": "Tool"}, "kind"),
    ({**resource(), "apiVersion": "v1"}, "apiVersion"),
    ({**resource(), "metadata": {"name": "x"}}, "metadata.namespace"),
    ({**resource(), "metadata": {"name": "bad name", "namespace": "t"}}, "metadata.name"),
    ({**resource(), "metadata": {"name": "x", "namespace": "Not_A_Tenant"}}, "metadata.namespace"),
    ({**resource(), "spec": None}, "spec"),
    ({**resource(), "spec": ["a"]}, "spec"),
])
def test_resource_metadata_is_checked(manifest: dict[str, Any], field: str) -> None:
    with pytest.raises(ResourceError) as exc:
        parse_resource(manifest)
    assert exc.value.field == field


def test_a_prompt_parses_and_renders_its_arguments() -> None:
    p = parse_prompt(prompt())
    assert [a.name for a in p.arguments] == ["topic"] and p.arguments[0].required
    assert render(p.messages, {"topic": "billing"}) == [
        {"role": "user", "content": {"type": "text", "text": "Summarise billing."}}]
    # A value is inserted as is, never expanded again.
    assert render(p.messages, {"topic": "{{topic}}"})[0]["content"]["text"] == "Summarise {{topic}}."


BAD_PROMPTS: list[tuple[dict[str, Any], str, str]] = [
    ({"messages": None}, "spec.messages", "at least one message"),
    ({"messages": []}, "spec.messages", "at least one message"),
    ({"messages": [{"role": "system", "content": {"type": "text", "text": "x"}}]}, "spec.messages[0].role", "user or assistant"),
    ({"messages": [{"role": "user", "content": {"type": "video", "text": "x"}}]}, "spec.messages[0].content.type", "expected text"),
    ({"messages": [{"role": "user", "content": {"type": "text"}}]}, "spec.messages[0].content.text", "required"),
    ({"messages": [{"role": "user", "content": {"type": "image", "data": "@@", "mimeType": "image/png"}}]},
     "spec.messages[0].content.data", "base64"),
    ({"messages": [{"role": "user", "content": {"type": "resource", "resource": {"uri": "a://b"}}}]},
     "spec.messages[0].content.resource", "text or blob"),
    ({"messages": [{"role": "user", "content": {"type": "text", "text": "{{other}}"}}]},
     "spec.messages[0].content", "not a declared argument"),
    ({"messages": [{"role": "user", "content": {"type": "text", "text": "x"}, "name": "n"}]},
     "spec.messages[0].name", "unknown key"),
    ({"messages": [{"role": "user", "content": {"type": "text", "text": "x" * (MAX_INLINE_BYTES + 1)}}]},
     "spec.messages", "limited to"),
    ({"messages": [{"role": "user", "content": {"type": "text", "text": "x"}}] * 65}, "spec.messages", "at most 64"),
    ({"arguments": [{"name": "topic"}, {"name": "topic"}]}, "spec.arguments[1].name", "declared twice"),
    ({"arguments": [{"name": "1st"}]}, "spec.arguments[0].name", "letters, digits"),
    ({"arguments": [{"name": "a", "required": "yes"}]}, "spec.arguments[0].required", "true or false"),
    ({"arguments": [{"name": "a", "completions": "x"}]}, "spec.arguments[0].completions", "list of strings"),
    ({"arguments": [{"name": "a", "completions": [str(i) for i in range(101)]}]},
     "spec.arguments[0].completions", "at most 100"),
    ({"arguments": [{"name": "a", "default": "x"}]}, "spec.arguments[0].default", "unknown key"),
    ({"arguments": {"name": "a"}}, "spec.arguments", "expected a list"),
    ({"template": "x"}, "spec.template", "unknown key"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD_PROMPTS)
def test_hostile_prompts_are_refused_naming_the_field(spec: dict[str, Any], field: str, reason: str) -> None:
    base = prompt(**spec)
    if "arguments" in spec:
        # Keep the messages consistent with the arguments under test.
        base["spec"]["messages"] = [{"role": "user", "content": {"type": "text", "text": "x"}}]
    with pytest.raises(ResourceError) as exc:
        parse_prompt(base)
    assert exc.value.field == field and reason in exc.value.reason, exc.value


def test_content_changes_do_not_touch_the_tools_version() -> None:
    reg = ToolRegistry()
    assert reg.apply(named("one")) is None
    tools_version = reg.version
    assert reg.apply(resource()) is None and reg.apply(prompt()) is None
    assert reg.version == tools_version
    assert reg.content_version("Resource") == 1 and reg.content_version("Prompt") == 1
    # The same manifest again is no change; a new spec is.
    assert reg.apply(resource()) is None and reg.content_version("Resource") == 1
    assert reg.apply(resource(text="v2")) is None and reg.content_version("Resource") == 2
    assert [r.name for r in reg.resources("tenant-acme")] == ["orders"]
    assert reg.resources("tenant-other") == [] and reg.prompt("tenant-other", "summarise") is None
    err = reg.apply(resource(text=None))
    assert err is not None and reg.errors()[("Resource", "tenant-acme", "orders")] is err
    assert reg.resources("tenant-acme")[0].text == "v2"  # the last good version is kept
    reg.delete("Prompt", "tenant-acme", "summarise")
    assert reg.prompts("tenant-acme") == [] and reg.content_version("Prompt") == 2
    counts = reg.counts()
    assert counts["resources"] == 1 and counts["prompts"] == 0


def test_replace_all_of_one_content_kind_leaves_the_others() -> None:
    reg = ToolRegistry()
    reg.apply(named("one"))
    reg.apply(prompt())
    reg.replace_all("Resource", [resource("a"), resource("b", uri="app://b")])
    assert [r.name for r in reg.resources("tenant-acme")] == ["a", "b"]
    reg.replace_all("Resource", [resource("b", uri="app://b")])
    assert [r.name for r in reg.resources("tenant-acme")] == ["b"]
    assert reg.tool("tenant-acme", "one") is not None and reg.prompt("tenant-acme", "summarise") is not None
    assert not reg.ready  # Tool, ToolSet and Prompt not all re-listed yet


def _write(path: Path, *docs: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump_all(list(docs)))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


async def _eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_files_source_hot_reloads_resources_and_prompts(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", named("one"), resource(text="v1"), prompt())
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=0.05)
    await src.start()
    try:
        assert reg.ready and reg.resources("tenant-acme")[0].text == "v1"
        _write(tmp_path / "a.yaml", named("one"), resource(text="v2"), prompt(description="changed"))
        await _eventually(lambda: reg.resources("tenant-acme")[0].text == "v2")
        await _eventually(lambda: reg.prompt("tenant-acme", "summarise").description == "changed")  # type: ignore[union-attr]
        _write(tmp_path / "a.yaml", named("one"))
        await _eventually(lambda: reg.resources("tenant-acme") == [] and reg.prompts("tenant-acme") == [])
        assert reg.tool("tenant-acme", "one") is not None
    finally:
        await src.stop()


def test_validate_accepts_good_entries_and_names_bad_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all([resource(), prompt()]))
    assert validate_main([str(good)]) == 0
    bad_prompt = copy.deepcopy(prompt())
    bad_prompt["spec"]["messages"][0]["content"]["text"] = "{{nope}}"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([resource(uri="nope"), bad_prompt]))
    assert validate_main([str(bad)]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "spec.uri" in text and "spec.messages[0].content" in text
