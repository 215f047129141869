"""Strict JSON: what Python's ``json`` lets through but JSON (RFC 8259) and a pipeline can't use.

Python's ``json`` reads ``NaN`` and ``Infinity``, turns ``1e400`` into ``inf``, keeps the last of
two equal keys, accepts lone surrogates (``"\\ud800"``) that can't be written as UTF-8, refuses a
5000-digit integer with a bare ValueError and recurses without a bound. Each of these would end
in an internal error or a line on stdout that isn't JSON; ``loads`` and ``check`` refuse them
with the JSON pointer of the place.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from qwenjson.pointer import to_pointer

__all__ = ["MAX_DEPTH", "JsonValueError", "check", "json_pointer", "loads"]

# Deeper than this is refused. Python recurses once per level when it parses, validates or
# prints JSON (jsonschema several times per level), and stops at 1000 frames; real documents and
# schemas are far shallower (the JSONSchemaBench corpus: at most 25 levels).
MAX_DEPTH = 128

# Python refuses to turn longer digit strings into an int (CVE-2020-10735).
_MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300

_MAX_DOUBLE = sys.float_info.max
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonValueError(ValueError):
    """JSON text that parses but holds something strict JSON doesn't allow; ``pointer`` says where
    (None when the place isn't known: nesting too deep to parse at all)."""

    def __init__(self, message: str, pointer: str | None) -> None:
        where = f" (at {pointer or '/'})" if pointer is not None else ""
        super().__init__(message + where)
        self.message = message
        self.pointer = pointer


class _Bad:
    """What the parser hooks leave in place of a value they refuse, found later with its path."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _constant(text: str) -> _Bad:
    return _Bad(f"{text} is not a JSON number")


def _float(text: str) -> float | _Bad:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"{text} is too large for a number")


def _int(text: str) -> int | _Bad:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        return _Bad(f"an integer of {digits} digits (at most {_MAX_INT_DIGITS})")
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Bad:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            # ASCII escapes: the message goes to an --errors file, which a lone surrogate
            # can't be written to.
            return _Bad(f"duplicate key {_shown(key)}")
        seen.add(key)
    return obj  # unreachable: a shorter dict means a repeated key


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON. Raises ``json.JSONDecodeError`` for text that isn't JSON at all (with
    its line and column) and JsonValueError for JSON that holds what strict JSON refuses."""
    try:
        value = json.loads(
            text,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
            object_pairs_hook=_object,
        )
    except RecursionError:
        raise JsonValueError(f"nested more than {max_depth} levels deep", None) from None
    check(value, max_depth=max_depth)
    return value


def check(
    value: Any, *, max_depth: int = MAX_DEPTH, doubles: bool = False, values: bool = False
) -> None:
    """Raise JsonValueError if ``value`` holds NaN or an infinity, a lone surrogate, a refused
    value left by ``loads``, or is nested deeper than ``max_depth``; with ``doubles``, also an
    integer beyond the range of a double (RFC 8259's interoperable range), which code that
    computes with floats can't take; with ``values``, anything but JSON's own values (a Python
    caller's Enum member, Decimal, date, set)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > max_depth:
            raise JsonValueError(f"nested more than {max_depth} levels deep", json_pointer(path))
        # Children go on the stack last first, so the first problem in the text is the one named.
        if isinstance(node, dict):
            for key in node:
                if not isinstance(key, str):  # a Python caller's dict: JSON keys are text
                    raise JsonValueError(f"the key {key!r} is not a string", json_pointer(path))
                if _SURROGATE.search(key):
                    raise JsonValueError(
                        f"the key {_shown(key)} holds a lone surrogate (not Unicode text)",
                        json_pointer(path),
                    )
            stack.extend((node[key], (*path, key)) for key in reversed(node))
        elif isinstance(node, list | tuple):
            stack.extend((node[i], (*path, i)) for i in reversed(range(len(node))))
        elif isinstance(node, str):
            if _SURROGATE.search(node):
                raise JsonValueError(
                    "a string holds a lone surrogate (not Unicode text)", json_pointer(path)
                )
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise JsonValueError(f"{node} is not a JSON number", json_pointer(path))
        elif doubles and isinstance(node, int) and abs(node) > _MAX_DOUBLE:
            raise JsonValueError(
                f"an integer of {len(str(abs(node)))} digits, beyond the range of a double",
                json_pointer(path),
            )
        elif isinstance(node, _Bad):
            raise JsonValueError(node.reason, json_pointer(path))
        elif values and not isinstance(node, bool | int | float | str | None):
            # A Python caller's Enum member, Decimal or date: json.dumps fails on it later
            # (after the model has loaded), and the grammar can't spell it.
            raise JsonValueError(
                f"a {type(node).__name__} ({node!r:.40}) is not a JSON value", json_pointer(path)
            )


def _shown(key: str) -> str:
    return json.dumps(key)  # ASCII escapes: a lone surrogate can't be printed as it is


# The JSON pointer (RFC 6901) of a path of keys and indexes; ``""`` is the whole document.
json_pointer = to_pointer
