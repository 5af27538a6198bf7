"""FileSource: a directory of manifests, hot reloaded; install() wiring."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from link.app import LinkApp
from link.registry import FileSource, ToolRegistry, install
from link.registry.source import expand_env, load_manifests
from link.settings import load_settings
from tests.unit.registry.test_registry_store import named


def write(path: Path, *docs: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump_all(list(docs)))
    # Make the change visible to a stat-based check even within one mtime tick.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_loads_every_manifest_file_recursively_and_skips_hidden_dirs(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", named("one"), named("two"))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "b.yml", named("three", "tenant-b"))
    (tmp_path / "..2024_01_01").mkdir()  # a ConfigMap mount's hidden twin
    write(tmp_path / "..2024_01_01" / "a.yaml", named("twin"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=60)
    await src.start()
    try:
        assert [t.name for t in reg.tools("tenant-acme")] == ["one", "two"]
        assert [t.name for t in reg.tools("tenant-b")] == ["three"]
        assert reg.ready
        ok, detail = src.readiness()
        assert ok and detail.startswith("3 tools")
    finally:
        await src.stop()


async def test_hot_reload_adds_changes_and_removes(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", named("one", description="v1"))
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=0.05)
    await src.start()
    try:
        write(tmp_path / "b.yaml", named("two"))
        await eventually(lambda: reg.tool("tenant-acme", "two") is not None)
        write(tmp_path / "a.yaml", named("one", description="v2"))
        await eventually(lambda: reg.tool("tenant-acme", "one").description == "v2")  # type: ignore[union-attr]
        (tmp_path / "b.yaml").unlink()
        await eventually(lambda: reg.tool("tenant-acme", "two") is None)
    finally:
        await src.stop()


async def test_a_broken_file_keeps_what_it_gave_and_says_why(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", named("one"))
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=60)
    await src.start()
    try:
        (tmp_path / "a.yaml").write_text("kind: Tool\nspec: [unclosed\n")
        assert await src.reload(force=True)
        assert reg.tool("tenant-acme", "one") is not None
        errors = src.file_errors()
        assert list(errors.values()) == ["a.yaml is not valid YAML at line 3"]
        assert "a.yaml is not valid YAML" in src.readiness()[1]
    finally:
        await src.stop()


async def test_an_invalid_resource_is_skipped_and_the_rest_load(tmp_path: Path) -> None:
    bad = named("bad")
    del bad["spec"]["description"]
    write(tmp_path / "a.yaml", named("good"), bad, {"kind": "Mystery", "metadata": {"name": "m"}})
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=60)
    await src.start()
    await src.stop()
    assert [t.name for t in reg.tools("tenant-acme")] == ["good"]
    errors = {k: str(v) for k, v in reg.errors().items()}
    assert errors[("Tool", "tenant-acme", "bad")] == "spec.description: required"
    assert errors[("Mystery", "", "m")].startswith("kind: expected one of Tool, ToolSet")


async def test_environment_placeholders_point_tools_at_their_upstream(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml",
          named("up", endpoint="${DEMO_UPSTREAM}/items/{invoiceId}"),
          named("dflt", endpoint="${MISSING:-http://127.0.0.1:1}/x/{invoiceId}"),
          named("unset", endpoint="${NOT_SET_ANYWHERE}/x/{invoiceId}"))
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=60, env={"DEMO_UPSTREAM": "http://127.0.0.1:8090"})
    await src.start()
    await src.stop()
    assert reg.tool("tenant-acme", "up").endpoint == "http://127.0.0.1:8090/items/{invoiceId}"  # type: ignore[union-attr]
    assert reg.tool("tenant-acme", "dflt").endpoint == "http://127.0.0.1:1/x/{invoiceId}"  # type: ignore[union-attr]
    assert reg.tool("tenant-acme", "unset") is None
    assert str(reg.errors()[("Tool", "tenant-acme", "unset")]) == \
        "spec.endpoint: environment variable NOT_SET_ANYWHERE is not set"


def test_expand_env_leaves_lone_dollars_and_walks_lists() -> None:
    out = expand_env({"a": ["$HOME", "${X}"], "b": 3}, {"X": "y"})
    assert out == {"a": ["$HOME", "y"], "b": 3}


def test_load_manifests_unpacks_lists_and_refuses_scalars(tmp_path: Path) -> None:
    p = tmp_path / "l.yaml"
    p.write_text(yaml.safe_dump({"kind": "List", "items": [named("a"), named("b")]}))
    assert [d["metadata"]["name"] for d in load_manifests(p)] == ["a", "b"]
    p.write_text("just a string\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_manifests(p)


async def test_a_missing_directory_is_not_ready_until_it_appears(tmp_path: Path) -> None:
    reg = ToolRegistry()
    missing = tmp_path / "later"
    src = FileSource(reg, missing, interval=0.05)
    await src.start()
    try:
        ok, detail = src.readiness()
        assert not ok and "is not a directory" in detail
        missing.mkdir()
        write(missing / "a.yaml", named("one"))
        await eventually(lambda: src.readiness()[0])
        assert reg.tool("tenant-acme", "one") is not None
    finally:
        await src.stop()


def test_install_puts_the_registry_on_the_app_with_the_configured_source(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", named("one"))
    files = load_settings(env={}, overrides={"registry.source": "files", "registry.path": str(tmp_path),
                                             "metering.enabled": False, "snapshots.enabled": False})
    app = LinkApp(files, plugins=())
    install(app)
    assert isinstance(app.extras["registry"], ToolRegistry)
    assert any(isinstance(c, FileSource) for c in app.components)
    assert app.ready_checks["registry"]() == (False, "first load not done")

    none = load_settings(env={}, overrides={"registry.source": "none"})
    app2 = LinkApp(none, plugins=())
    install(app2)
    assert app2.ready_checks["registry"]()[0] is True
    assert not app2.components


EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "registry"


async def test_the_example_manifests_all_load() -> None:
    root = EXAMPLES
    reg = ToolRegistry()
    src = FileSource(reg, root, interval=60, env={"DEMO_UPSTREAM": "http://127.0.0.1:8000"})
    await src.start()
    await src.stop()
    assert reg.errors() == {} and src.file_errors() == {}
    assert {t.name for t in reg.tools("demo")} == {"say-hello", "list-invoices"}
    assert reg.counts()["tools"] >= 4 and reg.counts()["toolsets"] >= 1
