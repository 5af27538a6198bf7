"""From masked samples to operations: path templates, parameters, body schemas (no ML).

Path templates come from segment variability. All paths of an API go into a
trie of segments; at each position the children are either route words (few,
each seen often: ``/api/users``, ``/api/orders``) or values (identifiers,
dates, many distinct words each seen once or twice). Values collapse into one
``{param}`` child, typed by the kinds seen there (``integer``, ``uuid`` …) and
named after the word before it (``/users/{userId}``). A word seen often beside
values stays a route of its own (``/users/me`` next to ``/users/{userId}``).

Everything else is counting: a query parameter is required when every sample of
the operation carried it; body schemas are the merged :class:`Shape` of all
samples; status codes, media types and the credential scheme are tallied.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from link.shadow.sample import Sample
from link.shadow.shape import Shape, merge_kinds

__all__ = ["Operation", "PathParam", "infer_operations"]

# More distinct words than this at one position, seen on average fewer than _VALUE_HITS times: values.
_WORD_LIMIT = 4
_VALUE_HITS = 2.0
# A word beside values stays a route when it is this frequent.
_ROUTE_WORD_MIN = 3
_ID_KINDS = frozenset({"integer", "uuid", "hex", "pii"})
_STANDARD_HEADERS = frozenset({
    "accept", "accept-language", "cache-control", "content-type", "origin", "referer", "pragma", "if-none-match",
    "if-modified-since", "if-match", "x-api-key", "authorization", "cookie",
})


def _is_value(segment: str) -> bool:
    return segment.startswith("{")


def _kind_of(segment: str) -> str:
    return segment[1:segment.index("}")] if _is_value(segment) else "string"


@dataclass(slots=True)
class _Node:
    count: int = 0
    children: dict[str, _Node] = field(default_factory=dict)
    # Set when this node is a collapsed parameter: kinds seen and distinct values (pseudonyms/words).
    kinds: Counter[str] = field(default_factory=Counter)
    distinct: set[str] = field(default_factory=set)
    is_param: bool = False

    def insert(self, segments: list[str]) -> None:
        self.count += 1
        if not segments:
            return
        head, rest = segments[0], segments[1:]
        child = self.children.get(head)
        if child is None:
            child = self.children[head] = _Node()
        child.insert(rest)

    def merge(self, other: _Node) -> None:
        self.count += other.count
        self.kinds.update(other.kinds)
        self.distinct |= other.distinct
        for key, node in other.children.items():
            mine = self.children.get(key)
            if mine is None:
                self.children[key] = node
            else:
                mine.merge(node)


def _collapse(node: _Node) -> None:
    """Decide, top-down, which children are values and fold them into one parameter child."""
    values = [k for k in node.children if _is_value(k)]
    words = [k for k in node.children if not _is_value(k)]
    fold: list[str] = list(values)
    if values:
        fold += [w for w in words if node.children[w].count < _ROUTE_WORD_MIN]
    elif len(words) > _WORD_LIMIT:
        hits = sum(node.children[w].count for w in words) / len(words)
        if hits < _VALUE_HITS:
            fold = list(words)
    if len(fold) > 1 or values:
        param = _Node(is_param=True)
        for key in fold:
            child = node.children.pop(key)
            if _is_value(key):
                kind = _kind_of(key)
                param.kinds[kind] += child.count
            else:
                param.kinds["string"] += child.count
            param.distinct.add(key)
            param.merge(child)
        node.children["{}"] = param
    for child in node.children.values():
        _collapse(child)


@dataclass(frozen=True, slots=True)
class PathParam:
    name: str
    schema: dict[str, Any]
    samples: int
    distinct: int


@dataclass(slots=True)
class Operation:
    """One learned operation of an API, with the evidence behind each part."""

    api: str
    tenant: str
    method: str
    template: str
    samples: int
    path_params: list[PathParam]
    query: dict[str, dict[str, Any]]  # name -> {schema, required, samples}
    headers: dict[str, dict[str, Any]]  # custom request headers -> {schema, required, samples}
    auth: dict[str, int]
    statuses: dict[int, int]
    request_types: dict[str, int]
    response_types: dict[str, int]
    request_schema: dict[str, Any] | None
    response_schemas: dict[int, dict[str, Any]]
    pii_kinds: list[str]
    first_seen: float
    last_seen: float

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def confidence(self) -> str:
        return "high" if self.samples >= 20 else "medium" if self.samples >= 5 else "low"

    @property
    def operation_id(self) -> str:
        words: list[str] = []
        for part in self.template.strip("/").split("/"):
            if part.startswith("{"):
                words += ["by", *_split_camel(part[1:-1])]
            elif part:
                words += re.split(r"[^A-Za-z0-9]+", part)
        words = [w.lower() for w in words if w]
        return "_".join([self.method.lower(), *words]) or self.method.lower()


def _split_camel(name: str) -> list[str]:
    return re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name) or [name]


def _singular(word: str) -> str:
    w = re.sub(r"[^A-Za-z0-9]", "", word)
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ses") and len(w) > 4:
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return w


def _param_name(previous: str | None, kinds: Counter[str], taken: set[str]) -> str:
    main = kinds.most_common(1)[0][0] if kinds else "string"
    if main in ("date", "date-time"):
        base = "date"
    elif previous:
        stem = _singular(previous)
        stem = stem[:1].lower() + stem[1:]
        base = f"{stem}Id" if main in _ID_KINDS else stem or "param"
    else:
        base = "id" if main in _ID_KINDS else "param"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    taken.add(name)
    return name


def _template_of(root: _Node, segments: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """The trie path a sample follows: its keys, and the raw segment at each parameter position."""
    node = root
    keys: list[str] = []
    at_params: list[str] = []
    for seg in segments:
        child = node.children.get(seg)
        if child is not None and not child.is_param:
            keys.append(seg)
            node = child
            continue
        param = node.children.get("{}")
        if param is None:
            return None
        keys.append("{}")
        at_params.append(seg)
        node = param
    return tuple(keys), at_params


def infer_operations(samples: Iterable[Sample]) -> list[Operation]:
    """Group samples by API and learned operation; one :class:`Operation` per (method, template)."""
    by_api: dict[str, list[Sample]] = {}
    for s in samples:
        by_api.setdefault(s.api, []).append(s)
    ops: list[Operation] = []
    for api, group in sorted(by_api.items()):
        ops.extend(_infer_api(api, group))
    return ops


def _infer_api(api: str, samples: list[Sample]) -> list[Operation]:
    root = _Node()
    for s in samples:
        root.insert(s.segments)
    _collapse(root)
    grouped: dict[tuple[str, tuple[str, ...]], list[tuple[Sample, list[str]]]] = {}
    for s in samples:
        found = _template_of(root, s.segments)
        if found is None:
            continue
        keys, at_params = found
        grouped.setdefault((s.method, keys), []).append((s, at_params))
    ops = []
    for (method, keys), members in sorted(grouped.items()):
        ops.append(_operation(api, method, keys, members))
    return ops


def _operation(api: str, method: str, keys: tuple[str, ...], members: list[tuple[Sample, list[str]]]) -> Operation:
    n = len(members)
    # Parameter names and kinds, position by position.
    taken: set[str] = set()
    parts: list[str] = []
    params: list[PathParam] = []
    previous: str | None = None
    p_index = 0
    for key in keys:
        if key != "{}":
            parts.append(key)
            previous = key
            continue
        kinds: Counter[str] = Counter(_kind_of(m[1][p_index]) for m in members)
        distinct = {m[1][p_index] for m in members}
        name = _param_name(previous, kinds, taken)
        schema = merge_kinds(dict(kinds))
        if "pii" in kinds:
            schema = {"type": "string"}
        params.append(PathParam(name=name, schema=schema, samples=n, distinct=len(distinct)))
        parts.append(f"{{{name}}}")
        previous = None
        p_index += 1
    template = "/" + "/".join(parts)

    query_kinds: dict[str, Counter[str]] = {}
    header_kinds: dict[str, Counter[str]] = {}
    auth: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    req_types: Counter[str] = Counter()
    resp_types: Counter[str] = Counter()
    req_shape: Shape | None = None
    resp_shapes: dict[int, Shape] = {}
    pii: set[str] = set()
    for s, _ in members:
        for name, kind in s.query.items():
            query_kinds.setdefault(name, Counter())[kind] += 1
        for name, kind in s.headers.items():
            if name not in _STANDARD_HEADERS:
                header_kinds.setdefault(name, Counter())[kind] += 1
        auth[s.auth] += 1
        statuses[s.status] += 1
        if s.request_type:
            req_types[s.request_type] += 1
        if s.response_type:
            resp_types[s.response_type] += 1
        if s.request_shape is not None:
            shape = Shape.from_dict(s.request_shape)
            if req_shape is None:
                req_shape = shape
            else:
                req_shape.merge(shape)
        if s.response_shape is not None:
            shape = Shape.from_dict(s.response_shape)
            if s.status in resp_shapes:
                resp_shapes[s.status].merge(shape)
            else:
                resp_shapes[s.status] = shape
        pii.update(s.pii)

    def fields(kinds: dict[str, Counter[str]], min_share: float) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, counter in sorted(kinds.items()):
            seen = sum(counter.values())
            if seen / n < min_share:
                continue
            schema = {"type": "string"} if "secret" in counter or "pii" in counter else merge_kinds(dict(counter))
            out[name] = {"schema": schema, "required": seen == n, "samples": seen}
        return out

    return Operation(
        api=api, tenant=members[0][0].tenant, method=method, template=template, samples=n,
        path_params=params, query=fields(query_kinds, 0.0), headers=fields(header_kinds, 0.5),
        auth=dict(auth), statuses=dict(sorted(statuses.items())), request_types=dict(req_types),
        response_types=dict(resp_types), request_schema=req_shape.schema() if req_shape else None,
        response_schemas={st: sh.schema() for st, sh in sorted(resp_shapes.items())}, pii_kinds=sorted(pii),
        first_seen=min(s.ts for s, _ in members), last_seen=max(s.ts for s, _ in members),
    )
