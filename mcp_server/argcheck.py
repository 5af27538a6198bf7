"""A quick "certainly valid" check of tool arguments for the simplest input schemas.

Most tool schemas are an object of typed properties, some required. ``jsonschema`` walks such a
schema in about 40 µs per call (its type checker is generic), more than the rest of the argument
handling together. :func:`quick_check` compiles those schemas, and only those, into a predicate
that answers True when the arguments are valid under JSON Schema 2020-12; any other answer, and
any schema with a keyword outside the small set below, goes to ``jsonschema``, which stays the
one judge of what is invalid and why (:meth:`mcp_server.catalog.CatalogEntry.validate`).

Understood: ``type`` (one name or a list), ``properties``, ``required``, ``additionalProperties``
as a boolean; annotations (``title``, ``description``, ``default``, ``examples``, ``$comment``,
``deprecated``, ``readOnly``, ``writeOnly``, ``x-*``). A ``$schema`` of any draft, ``format``
(asserted here), ``enum``, ``const``, bounds, patterns, nested sub-schemas, ``$ref``: not understood.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["quick_check"]

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
                          "writeOnly"})
_TOP = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}
_PROPERTY = _ANNOTATIONS | {"type"}


def _is_integer(v: Any) -> bool:
    # 2020-12: an integer is a number with a zero fractional part (1.0 is one); booleans are not numbers.
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _known(keys: Any, allowed: frozenset[str]) -> bool:
    return all(isinstance(k, str) and (k in allowed or k.startswith("x-")) for k in keys)


def _type_test(spec: Any) -> Callable[[Any], bool] | None:
    names = [spec] if isinstance(spec, str) else spec
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in _TYPES for n in names):
        return None
    tests = [_TYPES[n] for n in names]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(t(v) for t in tests)


def quick_check(schema: Any) -> Callable[[Mapping[str, Any]], bool] | None:
    """A predicate True only for arguments valid under ``schema``; None when the schema is not simple."""
    if not isinstance(schema, dict) or not _known(schema, _TOP):
        return None
    if schema.get("type", "object") != "object":
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra_allowed = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list) \
            or not all(isinstance(r, str) for r in required) or not isinstance(extra_allowed, bool):
        return None
    tests: dict[str, Callable[[Any], bool] | None] = {}
    for name, prop in properties.items():
        if prop is True or prop == {}:
            tests[name] = None  # anything goes
            continue
        if not isinstance(prop, dict) or not _known(prop, _PROPERTY) or "type" not in prop:
            return None
        test = _type_test(prop["type"])
        if test is None:
            return None
        tests[name] = test
    must = tuple(required)

    def valid(arguments: Mapping[str, Any]) -> bool:
        for name in must:
            if name not in arguments:
                return False
        for name, value in arguments.items():
            if name in tests:
                test = tests[name]
                if test is not None and not test(value):
                    return False
            elif not extra_allowed:
                return False
        return True

    return valid
