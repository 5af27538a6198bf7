"""The structure of JSON values, learned across samples without keeping the values.

A :class:`Shape` counts what it saw at one place of a document: how often each
JSON type appeared, which string formats, which object properties (each a
shape of its own) and what array items looked like. Merging two shapes adds
their counts, so the shape of a thousand bodies costs what the union of their
structures costs. :meth:`Shape.schema` turns the counts into a JSON Schema whose
``x-stoa-samples`` keywords say how many observations support each part.

Values never enter a shape: only types, formats and property names (names that
look like personal data are replaced before they are counted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_PROPERTIES", "Shape", "string_format", "value_kind"]

# Bounds: a hostile or enormous document cannot grow a shape without limit.
MAX_PROPERTIES = 64
MAX_DEPTH = 12
MAX_ITEMS_SAMPLED = 32

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)
_INT = re.compile(r"^-?\d{1,18}$")
_NUMBER = re.compile(r"^-?\d+\.\d+$")
_HEX = re.compile(r"^[0-9a-fA-F]{8,}$")


def string_format(text: str) -> str | None:
    """The JSON Schema ``format`` a string value has, if any."""
    if _UUID.match(text):
        return "uuid"
    if _DATE.match(text):
        return "date"
    if _DATETIME.match(text):
        return "date-time"
    if _EMAIL.match(text):
        return "email"
    if _URI.match(text):
        return "uri"
    return None


def value_kind(text: str) -> str:
    """The kind of a textual value (path segment, query value, header value).

    One of ``integer``, ``number``, ``boolean``, ``uuid``, ``date``, ``date-time``,
    ``email``, ``uri``, ``hex``, ``empty`` or ``string``.
    """
    if text == "":
        return "empty"
    if _INT.match(text):
        return "integer"
    if _NUMBER.match(text):
        return "number"
    if text in ("true", "false"):
        return "boolean"
    fmt = string_format(text)
    if fmt is not None:
        return fmt
    if _HEX.match(text) and any(c.isdigit() for c in text):
        return "hex"
    return "string"


def kind_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a value kind from :func:`value_kind`."""
    if kind in ("integer", "number", "boolean"):
        return {"type": kind}
    if kind in ("uuid", "date", "date-time", "email", "uri"):
        return {"type": "string", "format": kind}
    return {"type": "string"}


def merge_kinds(kinds: dict[str, int]) -> dict[str, Any]:
    """One schema for a set of observed kinds (integer and number widen to number, else string)."""
    names = {k for k in kinds if k != "empty"}
    if not names:
        return {"type": "string"}
    if len(names) == 1:
        return kind_schema(next(iter(names)))
    if names <= {"integer", "number"}:
        return {"type": "number"}
    return {"type": "string"}


@dataclass(slots=True)
class Shape:
    """Counts of what appeared at one place of many JSON documents."""

    count: int = 0
    types: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    properties: dict[str, Shape] = field(default_factory=dict)
    objects: int = 0  # how many observations were objects (for required properties)
    items: Shape | None = None
    truncated: bool = False  # properties or depth were cut at a bound (here or below)

    @classmethod
    def of(cls, value: Any, rename: Any = None) -> Shape:
        """The shape of one value; ``rename(key) -> key`` may replace property names (PII in keys)."""
        shape = cls()
        shape.add(value, rename)
        return shape

    def add(self, value: Any, rename: Any = None, depth: int = 0) -> None:
        self.count += 1
        kind = _json_type(value)
        self.types[kind] = self.types.get(kind, 0) + 1
        if depth >= MAX_DEPTH:
            self.truncated = True
            return
        if kind == "string":
            fmt = string_format(value)
            if fmt is not None:
                self.formats[fmt] = self.formats.get(fmt, 0) + 1
        elif kind == "object":
            self.objects += 1
            for key, item in value.items():
                name = rename(str(key)) if rename is not None else str(key)
                prop = self.properties.get(name)
                if prop is None:
                    if len(self.properties) >= MAX_PROPERTIES:
                        self.truncated = True
                        continue
                    prop = self.properties[name] = Shape()
                prop.add(item, rename, depth + 1)
                self.truncated |= prop.truncated
        elif kind == "array":
            if self.items is None:
                self.items = Shape()
            for item in value[:MAX_ITEMS_SAMPLED]:
                self.items.add(item, rename, depth + 1)
            self.truncated |= self.items.truncated

    def merge(self, other: Shape) -> None:
        """Add another shape's counts to this one."""
        self.count += other.count
        self.objects += other.objects
        self.truncated = self.truncated or other.truncated
        for k, n in other.types.items():
            self.types[k] = self.types.get(k, 0) + n
        for k, n in other.formats.items():
            self.formats[k] = self.formats.get(k, 0) + n
        for name, prop in other.properties.items():
            mine = self.properties.get(name)
            if mine is None:
                if len(self.properties) >= MAX_PROPERTIES:
                    self.truncated = True
                    continue
                mine = self.properties[name] = Shape()
            mine.merge(prop)
        if other.items is not None:
            if self.items is None:
                self.items = Shape()
            self.items.merge(other.items)

    def schema(self) -> dict[str, Any]:
        """A JSON Schema (2020-12) of everything seen, with ``x-stoa-samples`` counts."""
        out: dict[str, Any] = {}
        types = sorted(self.types, key=lambda t: (-self.types[t], t))
        if "integer" in self.types and "number" in self.types:
            types = [t for t in types if t != "integer"]
        out["type"] = types[0] if len(types) == 1 else types
        string_count = self.types.get("string", 0)
        if self.formats and len(self.formats) == 1:
            fmt, n = next(iter(self.formats.items()))
            if n == string_count:  # a format only when every string had it
                out["format"] = fmt
        if self.objects:
            out["properties"] = {name: prop.schema() for name, prop in sorted(self.properties.items())}
            required = sorted(n for n, p in self.properties.items() if p.count >= self.objects)
            if required:
                out["required"] = required
        if self.items is not None and self.items.count:
            out["items"] = self.items.schema()
        out["x-stoa-samples"] = self.count
        return out

    def to_dict(self) -> dict[str, Any]:
        """A plain form for storage (the inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {"n": self.count, "t": self.types}
        if self.formats:
            out["f"] = self.formats
        if self.objects:
            out["o"] = self.objects
            out["p"] = {k: v.to_dict() for k, v in self.properties.items()}
        if self.items is not None:
            out["i"] = self.items.to_dict()
        if self.truncated:
            out["x"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shape:
        shape = cls(count=int(data.get("n", 0)), types=dict(data.get("t", {})), formats=dict(data.get("f", {})),
                    objects=int(data.get("o", 0)), truncated=bool(data.get("x", False)))
        for name, prop in (data.get("p") or {}).items():
            shape.properties[name] = cls.from_dict(prop)
        if "i" in data:
            shape.items = cls.from_dict(data["i"])
        return shape


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"
