"""The dynamic metadata a decision leaves in Envoy, and how its readers get Link's fields back.

Envoy files everything an ext_authz answer carries under one namespace
(``envoy.filters.http.ext_authz``). Two owners share it, as OPA-Envoy users
expect (docs/adr/0013-opa-envoy-compatibility.md):

- the policy: its ``dynamic_metadata`` object passes through unchanged, keys
  and values as the policy wrote them, plus ``decision_id`` (what OPA-Envoy adds);
- Link: every field of its own (tenant, consumer, outcome, reason, route …)
  under the reserved prefix ``stoa.`` (``stoa.tenant``). Flat keys, so the same
  names work on every transport (the HTTP one can only carry flat strings).
  A policy key under the prefix is dropped: the prefix is Link's alone.

Link's fields are the typed :class:`~link.model.DecisionRecord`: :func:`wire_metadata`
writes it (the adapters, on the way to Envoy) and :func:`record_from_wire` reads it back
(the access log and ext_proc, from Envoy). Nothing else knows the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from link.model import Decision, DecisionRecord

__all__ = ["DECISION_ID", "LINK_PREFIX", "RECORD_KEYS", "STRING_FIELDS", "link_key", "record_from_wire",
           "set_from_wire", "wire_metadata", "wire_record"]

LINK_PREFIX = "stoa."
DECISION_ID = "decision_id"
_PREFIX_LEN = len(LINK_PREFIX)
_KEYS: dict[str, str] = {DECISION_ID: DECISION_ID}


def link_key(name: str) -> str:
    """The metadata key of one of Link's fields (``tenant`` -> ``stoa.tenant``; ``decision_id`` stays)."""
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = LINK_PREFIX + name  # a handful of names: the cache stays small
    return key


_WIRE_NAMES = tuple((f.name, link_key(f.name)) for f in fields(DecisionRecord))
_LISTS = frozenset(("scopes", "roles"))
_BOOLS = frozenset(f.name for f in fields(DecisionRecord) if f.type in ("bool", bool))
_INTS = frozenset(f.name for f in fields(DecisionRecord) if f.type in ("int", int))


def wire_record(record: DecisionRecord, out: dict[str, Any]) -> None:
    """The record's set fields into ``out`` under their metadata keys (lists space-joined: flat values)."""
    for name, key in _WIRE_NAMES:
        value = getattr(record, name)
        if value:
            out[key] = " ".join(value) if name in _LISTS else value


def wire_metadata(decision: Decision) -> dict[str, Any]:
    """The decision's dynamic metadata as Envoy should store it (plain values)."""
    out: dict[str, Any] = {}
    policy = decision.policy
    if policy is not None and policy.metadata:
        out.update((k, v) for k, v in policy.metadata.items() if not k.startswith(LINK_PREFIX))
    wire_record(decision.record, out)
    return out


def _flag(value: Any) -> bool:
    return value is True or value == "true" or value == "True"


def _count(value: Any) -> int:
    """A count read back (0 when it is not one: words, NaN, infinities, numbers past a float)."""
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0


_STR, _LIST, _BOOL, _INT = range(4)
_FROM_WIRE: dict[str, tuple[str, int]] = {
    key: (name, _LIST if name in _LISTS else _BOOL if name in _BOOLS else _INT if name in _INTS else _STR)
    for name, key in _WIRE_NAMES
}


# Every key record_from_wire reads (a reader may skip the rest before converting anything).
RECORD_KEYS = frozenset(_FROM_WIRE)
# Metadata key -> record field, for the fields held as plain strings (most of them): a reader that
# meets a string under one of these keys may set it as it is (what set_from_wire does with it).
STRING_FIELDS: Mapping[str, str] = {key: name for key, (name, kind) in _FROM_WIRE.items() if kind == _STR}


def set_from_wire(record: DecisionRecord, key: str, value: Any) -> None:
    """One metadata value into the record, converted to its field's type (unknown keys, None and ""
    are ignored): the step of :func:`record_from_wire`, for readers that walk metadata themselves."""
    spec = _FROM_WIRE.get(key)
    if spec is None or value is None or value == "":
        return
    name, kind = spec
    if kind == _STR:
        setattr(record, name, value if type(value) is str else str(value))
    elif kind == _LIST:
        setattr(record, name, tuple(str(value).split()) if not isinstance(value, list | tuple)
                else tuple(str(v) for v in value))
    elif kind == _BOOL:
        setattr(record, name, _flag(value))
    else:
        setattr(record, name, _count(value))


def record_from_wire(metadata: Mapping[str, Any] | None) -> DecisionRecord:
    """The record read back from Envoy's metadata: every value as Envoy holds it on either transport
    (HTTP: flat strings; gRPC: strings, numbers and booleans). Unknown keys are ignored."""
    record = DecisionRecord()
    if metadata:
        for key, value in metadata.items():
            set_from_wire(record, key, value)
    return record
