"""What the compiler works on: a schema node (``Node``) and its merged constraints (``Flat``),
with the small value helpers the keyword families share.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from qwenjson.errors import SchemaError
from qwenjson.jsontypes import json_equal
from qwenjson.schema.keywords import child_pointer
from qwenjson.schema.regex_syntax import ecma_regex

# Repetition counts above this stay out of the grammar: llama.cpp expands `x{m,n}` into about
# n rules, so big bounds become `*` (a superset) and jsonschema checks them afterwards.
MAX_EXACT_REPEAT = 256


class Unsatisfiable(SchemaError):
    """No JSON value satisfies the schema (or this part of it)."""


class LeftRecursion(Exception):
    """A schema refers back to itself before consuming any text (X = A | X)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Node:
    """A subschema with where it lives: its pointer, base URI and memo key."""

    value: Any
    pointer: str
    base: str
    key: str
    flat: Flat | None = None


@dataclass
class Flat:
    """The constraints of one schema node once ``$ref`` and ``allOf`` are merged in."""

    pointer: str
    types: set[str] | None = None
    enum: list[Any] | None = None
    properties: dict[str, Node] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    additional: list[Node] = field(default_factory=list)
    pattern_props: dict[str, list[Node]] = field(default_factory=dict)
    min_props: int = 0
    max_props: int | None = None
    prefix: list[list[Node]] = field(default_factory=list)
    items: list[Node] = field(default_factory=list)
    min_items: int = 0
    max_items: int | None = None
    min_len: int = 0
    max_len: int | None = None
    patterns: list[tuple[str, str]] = field(default_factory=list)  # (regex, pointer)
    formats: list[tuple[str, str]] = field(default_factory=list)  # (format, pointer)
    lower: list[tuple[float, bool]] = field(default_factory=list)  # (bound, exclusive)
    upper: list[tuple[float, bool]] = field(default_factory=list)
    # Where the bounds were written, (pointer, keyword) for each side: what the report marks
    # when the grammar can't hold that side exactly.
    lower_keywords: list[tuple[str, str]] = field(default_factory=list)
    upper_keywords: list[tuple[str, str]] = field(default_factory=list)
    groups: list[tuple[str, list[Node], str]] = field(default_factory=list)  # anyOf/oneOf
    property_names: list[Node] = field(default_factory=list)
    # Objects/arrays: did any merged schema constrain them (so the generic rule won't do)?
    object_constrained: bool = False
    # Keywords checked after generation may require names ``properties`` doesn't declare
    # (dependentRequired, dependentSchemas, dependencies, then, else).
    may_require_undeclared: bool = False
    array_constrained: bool = False

    def copy(self) -> Flat:
        return replace(
            self,
            types=None if self.types is None else set(self.types),
            enum=None if self.enum is None else list(self.enum),
            properties=dict(self.properties),
            required=list(self.required),
            additional=list(self.additional),
            pattern_props={k: list(v) for k, v in self.pattern_props.items()},
            prefix=[list(p) for p in self.prefix],
            items=list(self.items),
            patterns=list(self.patterns),
            formats=list(self.formats),
            lower=list(self.lower),
            upper=list(self.upper),
            lower_keywords=list(self.lower_keywords),
            upper_keywords=list(self.upper_keywords),
            groups=list(self.groups),
            property_names=list(self.property_names),
        )


def intersect_enums(a: list[Any] | None, b: list[Any]) -> list[Any]:
    if a is None:
        return list(b)
    return [v for v in a if any(json_equal(v, w) for w in b)]


def min_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def is_empty(f: Flat) -> bool:
    return f == Flat(f.pointer)


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def py_search(pattern: str, text: str) -> bool:
    """Whether ECMA-262 ``pattern`` matches in ``text``, as validation will decide it (Python's
    own reading let ``^\\w+$`` claim the key "é" and ``\\s`` miss U+FEFF). A pattern the
    translator can't read matches nothing here (the grammar stays a superset via additional
    members)."""
    try:
        return ecma_regex(pattern).search(text) is not None
    except (SchemaError, re.error):
        return False


def canonical_json(value: Any, separators: tuple[str, str] = (",", ":")) -> list[str]:
    """The canonical text of one JSON value (an integral number is written as an integer)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return []
        if value.is_integer():
            # Exact at any size (a float >= 2**53 is always integral, int() is its value), and
            # the only spelling an "integer" schema accepts for it.
            return [str(int(value))]
    return [json.dumps(value, ensure_ascii=False, separators=separators, allow_nan=False)]


@dataclass(frozen=True)
class Reader:
    """One schema object's keywords, read with the checks every family needs."""

    schema: dict[str, Any]
    at: str  # the object's JSON pointer

    def pointer(self, keyword: str) -> str:
        """The JSON pointer of ``keyword`` here (for errors)."""
        return child_pointer(self.at, keyword)

    def count(self, keyword: str) -> int | None:
        """The value of ``keyword``, which must be a non-negative integer, or None if absent."""
        v = self.schema.get(keyword)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != int(v):
            raise SchemaError(f"{keyword} must be a non-negative integer", self.pointer(keyword))
        return int(v)
