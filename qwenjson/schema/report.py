"""The keyword report: every keyword occurrence in a schema, with its JSON pointer and fate.

A keyword is *enforced* when the grammar lets through exactly what it allows, *validated-after*
when the grammar is a superset and jsonschema checks the rest once the document is complete,
*annotation* when it has no say over validity, and *unsupported* when qwenjson can do neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from qwenjson.schema.refs import draft_of, subschemas

Status = Literal["enforced", "validated-after", "unsupported", "annotation"]


@dataclass(frozen=True)
class KeywordUse:
    """One keyword at one place in the schema and how qwenjson honours it."""

    pointer: str
    keyword: str
    status: Status
    note: str = ""


ENFORCED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "additionalItems",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "pattern",
        "format",
    }
)

# Assertions the grammar can't carry: it stays a superset and jsonschema decides afterwards.
VALIDATED_AFTER = {
    "multipleOf": "divisibility is checked after generation",
    "uniqueItems": "uniqueness is checked after generation",
    "contains": "checked after generation",
    "minContains": "checked after generation",
    "maxContains": "checked after generation",
    "not": "checked after generation",
    "if": "conditional schemas are checked after generation",
    "then": "conditional schemas are checked after generation",
    "else": "conditional schemas are checked after generation",
    "dependentRequired": "checked after generation",
    "dependentSchemas": "checked after generation",
    "dependencies": "checked after generation",
    "unevaluatedProperties": "checked after generation",
    "unevaluatedItems": "checked after generation",
    "propertyNames": "checked after generation",
    "$dynamicRef": "resolved statically; checked after generation",
    "$recursiveRef": "resolved statically; checked after generation",
}

ANNOTATIONS = frozenset(
    {
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
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    }
)

# Keywords in draft 7 and earlier that `$ref` overrides (JSON Schema says to ignore them).
_REF_OVERRIDES_NOTE = "ignored beside $ref (draft 7 and earlier)"


# qwenjson's own keywords: annotations to every validator, read by ``extract``.
EXTENSIONS = {
    "x-grounded": "extract: true, the string is copied from the input text (grounded); "
    "false, written by the model",
}


def static_status(keyword: str) -> tuple[Status, str]:
    """The default fate of a keyword, before the compiler refines it."""
    if keyword in EXTENSIONS:
        return "annotation", EXTENSIONS[keyword]
    if keyword in ENFORCED:
        return "enforced", ""
    if keyword in VALIDATED_AFTER:
        return "validated-after", VALIDATED_AFTER[keyword]
    if keyword in ANNOTATIONS:
        return "annotation", ""
    return "annotation", "unknown keyword: no assertion in JSON Schema, ignored by validation too"


def build_report(
    root: Any,
    marks: dict[tuple[str, str], tuple[Status, str]],
    nodes: list[tuple[str, Any]] | None = None,
) -> tuple[KeywordUse, ...]:
    """Every keyword occurrence in ``root`` in document order, refined by ``marks``.

    ``nodes`` is the document's subschemas with their pointers when the caller has them
    already (the compiler's `$ref` index walked them); otherwise they are walked here.
    """
    draft = draft_of(root)
    uses: list[KeywordUse] = []
    seen: set[tuple[str, str]] = set()
    for pointer, node in nodes if nodes is not None else _walk(root, draft):
        if isinstance(node, dict):
            ref_overrides = "$ref" in node and draft <= 7
            for keyword in node:
                key = (pointer, keyword)
                seen.add(key)
                if key in marks:
                    status, note = marks[key]
                elif ref_overrides and keyword not in ("$ref", "definitions", "$defs"):
                    status, note = "annotation", _REF_OVERRIDES_NOTE
                else:
                    status, note = static_status(keyword)
                uses.append(KeywordUse(pointer, keyword, status, note))
        elif node is False:
            uses.append(KeywordUse(pointer, "false", "enforced", "matches nothing"))
    # Marks the compiler made at places that aren't keyword occurrences (merged schemas).
    for (pointer, keyword), (status, note) in sorted(marks.items()):
        if (pointer, keyword) not in seen:
            uses.append(KeywordUse(pointer, keyword, status, note))
    return tuple(uses)


def _walk(root: Any, draft: int) -> list[tuple[str, Any]]:
    """Every subschema with its pointer, in document order (iteratively: no deep recursion)."""
    out: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        pointer, node = stack.pop()
        out.append((pointer, node))
        stack.extend(reversed(list(subschemas(node, pointer, draft))))
    return out


__all__ = ["KeywordUse", "Status", "build_report", "static_status"]
