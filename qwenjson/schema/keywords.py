"""Every JSON Schema keyword qwenjson knows, with its facts: the one table that the compiler,
the keyword report (``qwenjson schema check``) and `$ref` resolution read.

A keyword's facts:

- ``types``: the instance types it says something about (``None``: any instance, as for
  ``enum`` or ``anyOf``); the compiler's family modules (``objects``, ``arrays``, ``strings``,
  ``numbers``) handle the keywords of their type.
- ``shape``: where its subschemas are, if it has any: ``schema`` (the value is one),
  ``schemas`` (an array of them), ``schema-map`` (names to schemas), ``items`` (one, or an
  array before 2020-12), ``dependencies`` (names to schemas or to arrays of names).
- ``status``: its fate before the compiler refines it: *enforced* (the grammar carries it),
  *validated-after* (jsonschema checks it once the document is complete), *annotation*.
- ``in_place``: its subschemas apply to the instance itself, not to a part of it (a cycle
  through such keywords alone never ends: ``{"not": {"$ref": "#"}}``).
- ``inert``: it has no say over which instances are valid in any draft, so a `$ref` beside it
  is a plain reference and ``not`` of it alone matches nothing.
- ``beside``: it has an effect only beside that keyword (``additionalItems`` beside an
  array ``items``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from qwenjson.pointer import to_pointer

Status = Literal["enforced", "validated-after", "unsupported", "annotation"]
Shape = Literal["schema", "schemas", "schema-map", "items", "dependencies"]

_OBJ = frozenset({"object"})
_ARR = frozenset({"array"})
_STR = frozenset({"string"})
_NUM = frozenset({"number", "integer"})


@dataclass(frozen=True)
class Keyword:
    """The facts of one keyword (see the module's docstring)."""

    name: str
    status: Status
    types: frozenset[str] | None = None
    shape: Shape | None = None
    note: str = ""
    in_place: bool = False
    inert: bool = False
    beside: str | None = None


_AFTER = "checked after generation"
_CONDITIONAL = "conditional schemas are checked after generation"
_DYNAMIC = "resolved statically; checked after generation"

# Keywords with subschemas first, in the order a schema's subschemas are walked (the report
# lists keywords in that order, and the first of two equal `$anchor`s wins).
TABLE: tuple[Keyword, ...] = (
    Keyword("additionalProperties", "enforced", _OBJ, "schema"),
    Keyword("additionalItems", "enforced", _ARR, "schema", beside="items"),
    Keyword("unevaluatedProperties", "validated-after", _OBJ, "schema", _AFTER),
    Keyword("unevaluatedItems", "validated-after", _ARR, "schema", _AFTER),
    Keyword("contains", "validated-after", _ARR, "schema", _AFTER),
    Keyword("propertyNames", "validated-after", _OBJ, "schema", _AFTER),
    Keyword("not", "validated-after", None, "schema", _AFTER, in_place=True),
    Keyword("if", "validated-after", None, "schema", _CONDITIONAL, in_place=True),
    Keyword("then", "validated-after", None, "schema", _CONDITIONAL, in_place=True, beside="if"),
    Keyword("else", "validated-after", None, "schema", _CONDITIONAL, in_place=True, beside="if"),
    # Draft 7 lets a validator assert the content keywords: not inert.
    Keyword("contentSchema", "annotation", _STR, "schema", beside="contentMediaType"),
    Keyword("allOf", "enforced", None, "schemas", in_place=True),
    Keyword("anyOf", "enforced", None, "schemas", in_place=True),
    Keyword("oneOf", "enforced", None, "schemas", in_place=True),
    Keyword("prefixItems", "enforced", _ARR, "schemas"),
    Keyword("properties", "enforced", _OBJ, "schema-map"),
    Keyword("patternProperties", "enforced", _OBJ, "schema-map"),
    Keyword("$defs", "enforced", None, "schema-map", inert=True),
    Keyword("definitions", "enforced", None, "schema-map", inert=True),
    Keyword("dependentSchemas", "validated-after", _OBJ, "schema-map", _AFTER, in_place=True),
    Keyword("items", "enforced", _ARR, "items"),
    Keyword("dependencies", "validated-after", _OBJ, "dependencies", _AFTER, in_place=True),
    # References.
    Keyword("$ref", "enforced", None, in_place=True),
    Keyword("$dynamicRef", "validated-after", None, note=_DYNAMIC, in_place=True),
    Keyword("$recursiveRef", "validated-after", None, note=_DYNAMIC, in_place=True),
    # Any type.
    Keyword("type", "enforced"),
    Keyword("enum", "enforced"),
    Keyword("const", "enforced"),
    # Objects.
    Keyword("required", "enforced", _OBJ),
    Keyword("minProperties", "enforced", _OBJ),
    Keyword("maxProperties", "enforced", _OBJ),
    Keyword("dependentRequired", "validated-after", _OBJ, note=_AFTER),
    # Arrays.
    Keyword("minItems", "enforced", _ARR),
    Keyword("maxItems", "enforced", _ARR),
    Keyword("uniqueItems", "validated-after", _ARR, note="uniqueness is checked after generation"),
    Keyword("minContains", "validated-after", _ARR, note=_AFTER, beside="contains"),
    Keyword("maxContains", "validated-after", _ARR, note=_AFTER, beside="contains"),
    # Strings.
    Keyword("minLength", "enforced", _STR),
    Keyword("maxLength", "enforced", _STR),
    Keyword("pattern", "enforced", _STR),
    Keyword("format", "enforced", _STR),
    Keyword("contentMediaType", "annotation", _STR),
    Keyword("contentEncoding", "annotation", _STR),
    # Numbers.
    Keyword("minimum", "enforced", _NUM),
    Keyword("maximum", "enforced", _NUM),
    Keyword("exclusiveMinimum", "enforced", _NUM),
    Keyword("exclusiveMaximum", "enforced", _NUM),
    Keyword("multipleOf", "validated-after", _NUM, note="divisibility is checked after generation"),
    # Annotations and the document's own bookkeeping.
    *(
        Keyword(name, "annotation", inert=True)
        for name in (
            "title",
            "description",
            "default",
            "examples",
            "$schema",
            "$id",
            "id",
            "$comment",
            "deprecated",
            "readOnly",
            "writeOnly",
            "$anchor",
            "$dynamicAnchor",
            "$recursiveAnchor",
            "$vocabulary",
        )
    ),
    # qwenjson's own: annotations to every validator, read by ``extract``.
    Keyword(
        "x-grounded",
        "annotation",
        frozenset({"string", "number"}),  # (integers are numbers: `n int derived`)
        note="extract: true, the value comes from the input text (a string copied, a number "
        "or date read); false, the model writes or works it out",
        inert=True,
    ),
)

KEYWORDS: dict[str, Keyword] = {k.name: k for k in TABLE}

UNKNOWN_NOTE = "unknown keyword: no assertion in JSON Schema, ignored by validation too"

# Keywords that change nothing about which instances are valid.
INERT = frozenset(k.name for k in TABLE if k.inert)


def grammar_keywords(json_type: str) -> frozenset[str]:
    """The keywords for ``json_type`` alone that the grammar carries on their own: a schema
    with none of them leaves that type's generic rule (``object``, ``array``) in place."""
    return frozenset(
        k.name
        for k in TABLE
        if k.types == frozenset({json_type}) and k.status == "enforced" and k.beside is None
    )


def static_status(keyword: str) -> tuple[Status, str]:
    """The default fate of a keyword, before the compiler refines it."""
    facts = KEYWORDS.get(keyword)
    if facts is None:
        return "annotation", UNKNOWN_NOTE
    return facts.status, facts.note


def child_pointer(pointer: str, *tokens: str | int) -> str:
    """The JSON pointer of a descendant."""
    return pointer + to_pointer(tokens)


_WITH_SUBSCHEMAS = tuple(k for k in TABLE if k.shape is not None)
# `_in_place`'s order: arrays of schemas, then single schemas, then maps.
_IN_PLACE = tuple(
    sorted(
        (k for k in _WITH_SUBSCHEMAS if k.in_place),
        key=lambda k: {"schemas": 0, "schema": 1}.get(k.shape or "", 2),
    )
)


def subschemas(
    node: Any, pointer: str, *, in_place: bool = False
) -> Iterator[tuple[str, Any, Keyword]]:
    """The immediate subschemas of a schema node (objects and booleans), with their pointers
    and keywords.

    ``in_place=True``: only those applied to the instance itself (``not``, ``allOf``…): every
    member of an array, only objects elsewhere (`$ref` targets are the caller's to add).
    """
    if not isinstance(node, dict):
        return
    for kw in _IN_PLACE if in_place else _WITH_SUBSCHEMAS:
        value = node.get(kw.name)
        if value is None:
            continue
        if isinstance(value, list) and kw.shape in ("schemas", "items"):
            for i, sub in enumerate(value):
                if in_place or isinstance(sub, dict | bool):
                    yield child_pointer(pointer, kw.name, i), sub, kw
        elif kw.shape in ("schema", "items"):
            if isinstance(value, dict) or (isinstance(value, bool) and not in_place):
                yield child_pointer(pointer, kw.name), value, kw
        elif kw.shape in ("schema-map", "dependencies") and isinstance(value, dict):
            for name, sub in value.items():
                if isinstance(sub, dict) or (isinstance(sub, bool) and not in_place):
                    yield child_pointer(pointer, kw.name, name), sub, kw


__all__ = [
    "INERT",
    "KEYWORDS",
    "TABLE",
    "UNKNOWN_NOTE",
    "Keyword",
    "Shape",
    "Status",
    "child_pointer",
    "grammar_keywords",
    "static_status",
    "subschemas",
]
