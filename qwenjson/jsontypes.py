"""JSON Schema's type names for JSON values: the one place they are computed.

JSON Schema counts a number with no fractional part as an integer (``1.0`` too) and every
integer as a number; the helpers here keep that overlap in one spot.
"""

from __future__ import annotations

from typing import Any

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def json_type_of(value: Any) -> str:
    """The JSON Schema type name of a JSON value (integers count as integer and number)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(type(value).__name__)


def is_number(value: Any) -> bool:
    """A number as Python holds one: an int or a float, not a bool (which is an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_whole_number(value: Any, least: int, most: int | None = None) -> bool:
    """An int, not a bool, from ``least`` to ``most`` (no upper bound: None)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and least <= value
        and (most is None or value <= most)
    )


def type_allows(types: set[str] | None, value: Any) -> bool:
    """Does a ``type`` keyword (as a set of names; None: absent) admit ``value``?"""
    if types is None:
        return True
    kind = json_type_of(value)
    return kind in types or (kind == "integer" and "number" in types)


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values (``1 == 1.0``, but ``True != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def intersect_types(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    """The types both ``type`` sets allow (None: no constraint)."""
    if a is None:
        return None if b is None else set(b)
    if b is None:
        return set(a)
    out = a & b
    if ("number" in a and "integer" in b) or ("integer" in a and "number" in b):
        out.add("integer")
    return out


def expanded_types(types: set[str] | None) -> set[str]:
    """The types a set allows, with integer and number standing for each other's overlap."""
    out = set(JSON_TYPES) if types is None else set(types)
    if "number" in out:
        out.add("integer")
    if "integer" in out:
        out.add("number")
    return out
