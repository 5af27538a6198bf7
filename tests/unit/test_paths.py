"""link.paths: one reading of a path, the one Envoy forwards; ambiguous spellings refused."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.model import Decision, Request, RequestContext
from link.paths import PathRefused, normalize_path
from link.pipeline.base import Pipeline
from link.pipeline.response import ResponsePhase
from link.routes import RouteTable
from link.settings import IdentitySettings, RouteSettings
from tests.path_spellings import SPELLINGS

_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def _result(path: str) -> str | None:
    try:
        return normalize_path(path)
    except PathRefused:
        return None


# Paths made of the pieces attackers combine: separators, dots, percent sequences, parameters.
_pieces = st.sampled_from(["/", "/", "/", ".", "..", "a", "b", "api", "public", "%2e", "%2E", "%2f", "%5c", "\\",
                           ";", "%25", "%252e", "%41", "%7e", "%zz", "%", "%c0%ae", "%e2%80%ae", "%00", "~", "-",
                           "%3b", "%3F", "x.", "..;", "//"])
hostile_paths = st.lists(_pieces, max_size=14).map(lambda parts: "/" + "".join(parts))
clean_segments = st.lists(st.text(alphabet=_UNRESERVED + "!$&'()*+,=:@", min_size=1, max_size=6)
                          .filter(lambda s: s not in (".", "..")), max_size=6)


@given(hostile_paths)
def test_idempotent(path: str) -> None:
    once = _result(path)
    if once is not None:
        assert normalize_path(once) == once


@given(hostile_paths)
def test_result_has_nothing_left_to_interpret(path: str) -> None:
    out = _result(path)
    if out is None:
        return
    assert out.startswith("/")
    segments = out.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "//" not in out and "\\" not in out and ";" not in out
    for seq in _PCT.findall(out):
        byte = int(seq[1:], 16)
        assert chr(byte) not in _UNRESERVED, f"{seq} should have been decoded"
        assert byte not in (0x2F, 0x5C) and byte >= 0x20
    assert "%" not in _PCT.sub("", out), "a '%' that is not a percent sequence survived"


@given(clean_segments, st.data())
def test_spelling_does_not_change_the_reading(segments: list[str], data: st.DataObject) -> None:
    """Encoding unreserved characters, or writing '\\' for '/', gives the same path."""
    path = "/" + "/".join(segments)
    spelled = "".join(
        f"%{ord(c):02{data.draw(st.sampled_from('xX'))}}" if c in _UNRESERVED and data.draw(st.booleans())
        else ("\\" if c == "/" and data.draw(st.booleans()) else c)
        for c in path
    )
    assert normalize_path(spelled) == normalize_path(path)


@given(clean_segments, clean_segments)
def test_dot_dot_climbs_exactly_one_segment(head: list[str], tail: list[str]) -> None:
    if not head:
        return
    path = "/" + "/".join([*head, "..", *tail])
    expected = "/" + "/".join([*head[:-1], *tail]) + ("" if tail else "/")  # "/x/a/.." is "/x/"
    assert normalize_path(path) == normalize_path(expected)


def test_clean_paths_take_the_fast_path() -> None:
    for path in ("/", "/api/invoices/inv-1001", "/public/hello.json", "/a-b_c~d/e!$&'()*+,=:@"):
        assert normalize_path(path) is path


@pytest.mark.parametrize("spelling", [s for s in SPELLINGS if "://" not in s.raw], ids=lambda s: s.raw)
def test_agrees_with_envoy_on_the_table(spelling) -> None:  # type: ignore[no-untyped-def]
    """Where Envoy forwards a path, Link reads it unchanged; on the raw spelling, Link gives Envoy's
    answer or refuses. Where Envoy or Link refuses, Link refuses the raw spelling too."""
    raw = spelling.raw.partition("?")[0]
    ours = _result(raw)
    if spelling.normalized is None:
        assert ours is None, f"{raw!r} -> {ours!r}, expected a refusal"
    else:
        assert normalize_path(spelling.normalized) == spelling.normalized
        assert ours in (spelling.normalized, None)


@pytest.mark.parametrize(("path", "reason"), [
    ("/a/%zz", "path_invalid_percent_encoding"),
    ("/a/%2", "path_invalid_percent_encoding"),
    ("/a%2fb", "path_encoded_slash"),
    ("/a%5Cb", "path_encoded_slash"),
    ("/a/%00", "path_control_character"),
    ("/a/\x00", "path_control_character"),
    ("/a/\r\nx", "path_control_character"),
    ("/a/%252e%252e/b", "path_double_encoding"),
    ("/a/%25%32%66", "path_double_encoding"),
    ("/a/%c0%ae", "path_invalid_utf8"),
    ("/a/%ed%a0%80", "path_invalid_utf8"),  # an encoded UTF-16 surrogate
    ("/a/b;jsessionid=1", "path_parameters"),
    ("/a/é", "path_invalid_character"),
    ("/a b", "path_invalid_character"),
    ("/a#b", "path_invalid_character"),
    ("a/b", "path_not_absolute"),
    ("", "path_not_absolute"),
    ("*", "path_not_absolute"),
])
def test_refusal_reasons(path: str, reason: str) -> None:
    with pytest.raises(PathRefused) as refused:
        normalize_path(path)
    assert refused.value.reason == reason
    assert refused.value.message


# -- at the entry of the pipeline ----------------------------------------------------------------

class _Recorder:
    name = "identity"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        self.seen.append((ctx.request.path, ctx.route.name if ctx.route else None))
        return None


def _pipeline() -> tuple[Pipeline, _Recorder]:
    routes = RouteTable([RouteSettings(name="public", prefix="/public", anonymous=True),
                         RouteSettings(name="invoices", template="/api/invoices/{id}")])
    recorder = _Recorder()
    return Pipeline(routes, [recorder], ResponsePhase(IdentitySettings())), recorder


def test_pipeline_routes_on_the_normalized_path() -> None:
    pipeline, recorder = _pipeline()
    result = asyncio.run(pipeline.run(Request(method="GET", path="/public/%2e%2e/api//invoices/inv-1", headers={})))
    assert result.decision.allowed
    assert recorder.seen == [("/api/invoices/inv-1", "invoices")]
    assert result.ctx.route is not None and result.ctx.route.path_params == {"id": "inv-1"}


def test_pipeline_refuses_an_ambiguous_path_before_any_phase() -> None:
    pipeline, recorder = _pipeline()
    result = asyncio.run(pipeline.run(Request(method="GET", path="/public/..;/x", headers={})))
    d = result.decision
    assert (d.allowed, d.http_status, d.reason) == (False, 400, "path_parameters")
    assert d.content_type == "application/json" and b'"error":"bad_request"' in (d.body or b"")
    assert d.record.outcome == "invalid"
    assert recorder.seen == []  # no phase ran, no route was resolved
    assert result.ctx.route is None


def test_resolve_route_reads_the_normalized_path() -> None:
    pipeline, _ = _pipeline()
    assert pipeline.resolve_route(Request(method="GET", path="/x/../public/a", headers={})).name == "public"  # type: ignore[union-attr]
    assert pipeline.resolve_route(Request(method="GET", path="/public/%zz", headers={})) is None
