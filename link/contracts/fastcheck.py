"""A compiled yes/no check for the common subset of JSON Schema, in front of ``jsonschema``.

``jsonschema`` interprets the schema on every call: about 1 ms for a 1 KiB
order with a few dozen line items on this kind of machine, more than the whole
rest of the decision. Most contract schemas use a small set of keywords, so an
endpoint whose schema uses only those gets a check compiled once into nested
closures. It answers "valid" or "not sure": a valid request passes at once, and
anything else goes to ``jsonschema`` as before, which finds and words the error.
So the fast check may only ever say "valid" when ``jsonschema`` would
(tests/unit/contracts checks that against jsonschema on generated documents).

Supported: ``type``, ``properties``, ``required``, ``additionalProperties``
(boolean or schema), ``items`` (one schema), ``enum`` of strings,
``minLength``/``maxLength``, ``pattern``, ``minimum``/``maximum``/
``exclusiveMinimum``/``exclusiveMaximum`` (numbers), ``minItems``/``maxItems``,
``minProperties``/``maxProperties``, and annotations. Anything else (``format``,
``$ref``, ``oneOf``, ``const``…) leaves the endpoint to ``jsonschema`` alone.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Check", "compile_check"]

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
                          "writeOnly", "$schema", "$id"})
_NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_SIZE_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_SUPPORTED = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties", "items", "enum",
                             "pattern", *_NUMBER_BOUNDS, *_SIZE_BOUNDS}


class _Unsupported(Exception):
    pass


def _is_integer(v: Any) -> bool:
    # As jsonschema (draft 6 and later): 1.0 is an integer; a bool never is.
    return (type(v) is int) or (type(v) is float and v.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "integer": _is_integer,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
}


def _number(value: Any) -> int | float:
    if type(value) not in (int, float):
        raise _Unsupported("a non-numeric bound")
    return value  # type: ignore[no-any-return]


def _any_of(tests: tuple[Check, ...]) -> Check:
    return lambda v: any(t(v) for t in tests)


def _bound(op: Callable[[Any, Any], bool], bound: int | float) -> Check:
    def check(v: Any) -> bool:
        # Python compares ints and floats exactly (no float conversion), as jsonschema does.
        return type(v) not in (int, float) or op(v, bound)

    return check


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _Unsupported("a bad size bound")
    return value


def _compile(schema: Any) -> Check:
    if not isinstance(schema, Mapping) or not set(schema) <= _SUPPORTED:
        raise _Unsupported("a keyword outside the compiled subset")
    checks: list[Check] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not names or not all(isinstance(n, str) and n in _TYPES for n in names):
            raise _Unsupported("an unknown type")
        tests = tuple(_TYPES[n] for n in names)
        checks.append(tests[0] if len(tests) == 1 else _any_of(tests))
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values or not all(type(x) is str for x in values):
            raise _Unsupported("an enum of other values than strings")
        allowed = frozenset(values)
        checks.append(lambda v: type(v) is str and v in allowed)
    for key, op in (("minimum", operator.ge), ("maximum", operator.le),
                    ("exclusiveMinimum", operator.gt), ("exclusiveMaximum", operator.lt)):
        if key in schema:
            bound = _number(schema[key])
            checks.append(_bound(op, bound))
    if "minLength" in schema or "maxLength" in schema or "pattern" in schema:
        lo, hi = _count(schema.get("minLength", 0)), schema.get("maxLength")
        hi = None if hi is None else _count(hi)
        pattern = schema.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise _Unsupported("a non-string pattern")
        try:
            search = re.compile(pattern).search if pattern is not None else None
        except re.error:
            raise _Unsupported("a pattern Python cannot compile") from None

        def strings(v: Any, lo: int = lo, hi: int | None = hi, search: Any = search) -> bool:
            if type(v) is not str:
                return True
            n = len(v)
            return n >= lo and (hi is None or n <= hi) and (search is None or search(v) is not None)

        checks.append(strings)
    if "minItems" in schema or "maxItems" in schema or "items" in schema:
        lo, hi = _count(schema.get("minItems", 0)), schema.get("maxItems")
        hi = None if hi is None else _count(hi)
        item = _compile(schema["items"]) if "items" in schema else None

        def arrays(v: Any, lo: int = lo, hi: int | None = hi, item: Check | None = item) -> bool:
            if type(v) is not list:
                return True
            n = len(v)
            if n < lo or (hi is not None and n > hi):
                return False
            if item is not None:
                for x in v:
                    if not item(x):
                        return False
            return True

        checks.append(arrays)
    if any(k in schema for k in ("properties", "required", "additionalProperties", "minProperties",
                                 "maxProperties")):
        checks.append(_objects(schema))
    return _all_of(checks)


def _all_of(checks: list[Check]) -> Check:
    # Unrolled for the usual one to three keywords: a generator per call costs more than the checks.
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) and b(v)
    if len(checks) == 3:
        a, b, c = checks
        return lambda v: a(v) and b(v) and c(v)
    every = tuple(checks)

    def all_of(v: Any) -> bool:
        for check in every:  # noqa: SIM110 - a plain loop: no generator per call
            if not check(v):
                return False
        return True

    return all_of


def _objects(schema: Mapping[str, Any]) -> Check:
    props_schema = schema.get("properties", {})
    if not isinstance(props_schema, Mapping) or not all(isinstance(k, str) for k in props_schema):
        raise _Unsupported("bad properties")
    props = {k: _compile(v) for k, v in props_schema.items()}
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _Unsupported("bad required")
    extra = schema.get("additionalProperties", True)
    extra_check: Check | None
    if extra is True:
        extra_check = None
    elif extra is False:
        extra_check = lambda v: False  # noqa: E731 - a check that refuses every extra property
    else:
        extra_check = _compile(extra)
    lo, hi = _count(schema.get("minProperties", 0)), schema.get("maxProperties")
    hi = None if hi is None else _count(hi)
    need = tuple(required)

    def objects(v: Any) -> bool:
        if type(v) is not dict:
            return True
        n = len(v)
        if n < lo or (hi is not None and n > hi):
            return False
        for r in need:
            if r not in v:
                return False
        for key, value in v.items():
            check = props.get(key)
            if check is not None:
                if not check(value):
                    return False
            elif extra_check is not None and not extra_check(value):
                return False
        return True

    return objects


def compile_check(schema: Mapping[str, Any] | None, dialect: str) -> Check | None:
    """The compiled check of ``schema``, or None when it uses anything outside the subset.

    ``dialect``: the jsonschema validator class name that would validate it (only draft 6 and
    later share the semantics above: 1.0 is an integer, exclusive bounds are numbers).
    """
    if schema is None or dialect not in ("Draft6Validator", "Draft7Validator", "Draft201909Validator",
                                         "Draft202012Validator"):
        return None
    try:
        return _compile(schema)
    except (_Unsupported, RecursionError):
        return None
