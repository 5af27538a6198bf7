"""Converting a JSON-like Python value into rego-cpp's input tree, quickly.

``regopy.Input`` does the same with abstract-base-class checks and a Python
wrapper per node; this calls the C entry points directly (about 2.5x faster on
a typical pruned input). The value must be JSON-like: dict with str keys,
list/tuple, str, int, float, bool, None.
"""

from __future__ import annotations

from typing import Any

from regopy.rego_shared import rego

__all__ = ["InputConversionError", "InputTree"]

_string = rego.regoInputString
_int = rego.regoInputInt
_float = rego.regoInputFloat
_bool = rego.regoInputBoolean
_null = rego.regoInputNull
_item = rego.regoInputObjectItem
_object = rego.regoInputObject
_array = rego.regoInputArray
_new = rego.regoNewInput
_free = rego.regoFreeInput
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1


class InputConversionError(ValueError):
    """The value holds something JSON cannot (a set, bytes, an object)."""


def _add(handle: Any, value: Any) -> int:
    kind = type(value)
    if kind is str:
        return int(_string(handle, value.encode("utf-8")))
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InputConversionError(f"object key {key!r} is not a string")
            if _string(handle, key.encode("utf-8")) or _add(handle, item) or _item(handle):
                return 1
        return int(_object(handle, len(value)))
    if kind is list or kind is tuple:
        for item in value:
            if _add(handle, item):
                return 1
        return int(_array(handle, len(value)))
    if kind is bool:
        return int(_bool(handle, value))
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:
            return int(_int(handle, value))
        return int(_float(handle, float(value)))  # rego-cpp integers are 64-bit
    if kind is float:
        return int(_float(handle, value))
    if value is None:
        return int(_null(handle))
    # Subclasses (str/int enums) pass as their plain value.
    if isinstance(value, str):
        return int(_string(handle, value.encode("utf-8")))
    if isinstance(value, int):
        return _add(handle, int(value))
    if isinstance(value, float):
        return int(_float(handle, float(value)))
    raise InputConversionError(f"cannot pass a {kind.__name__} to the policy")


class InputTree:
    """An input document in rego-cpp's form; free it with :meth:`close` (or use ``with``)."""

    def __init__(self, value: Any) -> None:
        self.handle = _new()
        try:
            if _add(self.handle, value):
                raise InputConversionError("rego-cpp refused the input")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.handle is not None:
            _free(self.handle)
            self.handle = None

    def __enter__(self) -> InputTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
