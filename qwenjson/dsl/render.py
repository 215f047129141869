"""JSON Schema → the concise syntax, when it can say the schema (the inverse of ``parser``)."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from qwenjson.dsl.lexer import (
    CLOSERS,
    DERIVABLE,
    DERIVED,
    DRAFT_2020_12,
    DSL_NAMES,
    FORMAT_DSL_NAMES,
    FORMAT_NAMES,
    GROUNDING_NAMES,
    LITERALS,
    NUMBER,
    OPENERS,
    RANGE_KEYS,
    TYPE_NAMES,
    WORD,
    DslError,
    enum_type,
    is_control,
    looks_typed,
    read_raw,
    scan,
    value_type,
)
from qwenjson.dsl.parser import reads_as_type, swallowed_field


class _NotRepresentable(Exception):
    """Internal: the schema has a part the concise syntax can't say."""


def schema_to_dsl(schema: Mapping[str, Any]) -> str | None:
    """Render ``schema`` in the concise syntax, or return None if the syntax can't say it.

    Whenever it returns text, ``parse_dsl`` of that text equals ``schema`` (``parse_dsl`` adds
    ``$schema`` if it was missing). Example: the schema of ``"name, age int 0..150"`` renders
    as that same text.
    """
    try:
        if not isinstance(schema, Mapping):
            raise _NotRepresentable
        body = dict(schema)
        if body.pop("$schema", DRAFT_2020_12) != DRAFT_2020_12 or body.get("type") != "object":
            raise _NotRepresentable
        properties = body["properties"] if isinstance(body.get("properties"), Mapping) else {}
        # llm's rule: with one field per line, commas in descriptions are plain text.
        one_line = len(properties) < 2 or not any(
            isinstance(sub, Mapping) and "description" in sub for sub in properties.values()
        )
        return (", " if one_line else "\n").join(_render_fields(body, one_line))
    except _NotRepresentable:
        return None


def _render_fields(schema: Mapping[str, Any], one_line: bool) -> list[str]:
    if set(schema) != {"type", "properties", "required", "additionalProperties"}:
        raise _NotRepresentable
    properties, required = schema["properties"], schema["required"]
    if (
        schema["additionalProperties"] is not False
        or not isinstance(properties, Mapping)
        or not properties
        or not isinstance(required, list)
        # parse_dsl lists required names in property order
        or required != [name for name in properties if name in required]
        or len(set(required)) != len(required)
        # parse_dsl refuses two names one Unicode normalisation apart ("é" and "e\u0301")
        or len({unicodedata.normalize("NFC", str(n)) for n in properties}) != len(properties)
    ):
        raise _NotRepresentable
    fields = []
    for name, sub in properties.items():
        if not isinstance(name, str) or not isinstance(sub, Mapping):
            raise _NotRepresentable
        sub = dict(sub)
        description = sub.pop("description", None)
        text = _render_name(name) + ("" if name in required else "?")
        if sub != {"type": "string"}:
            text += " " + _render_typed(sub)
        if description is not None:
            if not isinstance(description, str):
                raise _NotRepresentable
            text += ": " + _render_description(description, one_line)
        fields.append(text)
    return fields


def _render_typed(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return _render_enum(schema)
    schema_type: object = schema.get("type")
    nullable = isinstance(schema_type, list)
    if isinstance(schema_type, list):
        if len(schema_type) != 2 or schema_type[1] != "null":
            raise _NotRepresentable
        schema_type = schema_type[0]
    if not isinstance(schema_type, str):
        raise _NotRepresentable
    rest = dict(schema)
    del rest["type"]
    grounded = rest.pop("x-grounded", None)
    if "x-grounded" in schema and not isinstance(grounded, bool):
        raise _NotRepresentable  # the syntax says true or false, never another value
    range_type = schema_type
    if schema_type == "string" and "format" in rest:
        range_type = "format"  # no range with a format
    for key in RANGE_KEYS.get(range_type, ()):
        rest.pop(key, None)
    if range_type == "format":
        text = FORMAT_DSL_NAMES.get(rest.pop("format"), "")
        if not text:
            raise _NotRepresentable
    elif schema_type == "object":
        text = "{" + ", ".join(_render_fields({**schema, "type": "object"}, True)) + "}"
        rest = {}  # _render_fields checked the keys
    elif schema_type == "array":
        items = rest.pop("items", None)
        if not isinstance(items, Mapping) or "description" in items:
            raise _NotRepresentable
        text = "[" + _render_typed(items) + "]"
    elif schema_type == "string" and isinstance(grounded, bool):
        text = next(name for name, value in GROUNDING_NAMES.items() if value is grounded)
        grounded = None  # said by the type's name
    elif schema_type in DSL_NAMES:
        text = DSL_NAMES[schema_type]
    else:
        raise _NotRepresentable
    if rest:
        raise _NotRepresentable
    derivable = schema_type in DERIVABLE or (range_type == "format" and text in DERIVABLE)
    if grounded is not None and not (grounded is False and derivable):
        raise _NotRepresentable
    if nullable:
        text += "|null"
    if grounded is False:
        text += " " + DERIVED
    return text + _render_range(schema, range_type)


def _render_range(schema: Mapping[str, Any], schema_type: str) -> str:
    keys = RANGE_KEYS.get(schema_type)
    if keys is None or (keys[0] not in schema and keys[1] not in schema):
        return ""
    bounds = [schema.get(key) for key in keys]
    for bound in bounds:
        if bound is None:
            continue
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise _NotRepresentable
        if schema_type != "number" and not isinstance(bound, int):
            raise _NotRepresentable
        if schema_type in ("string", "array") and bound < 0:
            raise _NotRepresentable
        if isinstance(bound, float) and not math.isfinite(bound):
            raise _NotRepresentable
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise _NotRepresentable
    return " " + "..".join("" if b is None else json.dumps(b) for b in bounds)


def _render_enum(schema: Mapping[str, Any]) -> str:
    values = schema["enum"]
    if set(schema) != {"type", "enum"} or not isinstance(values, list) or not values:
        raise _NotRepresentable
    seen = set()
    for value in values:
        if not isinstance(value, str | int | float | bool | None):
            raise _NotRepresentable
        if isinstance(value, float) and not math.isfinite(value):
            raise _NotRepresentable
        seen.add((value_type(value), value))
    if (
        len(seen) != len(values)
        or (len(values) == 1 and not isinstance(values[0], str))
        or schema["type"] != enum_type(values)
    ):
        raise _NotRepresentable
    if len(values) == 1:
        return _quoted(values[0])  # a lone bare word would be a type
    return "|".join(_render_value(v) for v in values)


def _render_value(value: object) -> str:
    if isinstance(value, str):
        reserved = value in TYPE_NAMES or value in FORMAT_NAMES or value in LITERALS
        reserved = reserved or value in GROUNDING_NAMES
        if _whole_token_kind(value) == WORD and not reserved:
            return value
        return _quoted(value)
    return json.dumps(value)


def _render_name(name: str) -> str:
    if _whole_token_kind(name) in (WORD, NUMBER):
        return name
    return _quoted(name)


def _whole_token_kind(text: str) -> str | None:
    """The kind of token ``text`` is, if it is exactly one token; else None."""
    try:
        tok = scan(text, 0)
    except DslError:
        return None
    return tok.kind if (tok.start, tok.end) == (0, len(text)) else None


def _render_description(text: str, one_line: bool) -> str:
    if (
        text
        and text == text.strip()
        and not text.startswith('"')
        and not looks_typed(text)
        and not reads_as_type(text)
        and (one_line or swallowed_field(text) is None)
        and _balanced(text)  # before read_raw, which refuses a bracket left open
        and not any(is_control(ch) or unicodedata.category(ch) == "Cs" for ch in text)
        and read_raw(text, 0, commas_end=one_line) == (text, len(text))
    ):
        return text
    return _quoted(text)


def _quoted(value: object) -> str:
    """``value`` as JSON, with the characters the concise syntax refuses written as escapes
    (``json.dumps`` leaves DEL, C1 controls and U+2028/9 as they are)."""
    return "".join(
        f"\\u{ord(ch):04x}" if is_control(ch) else ch
        for ch in json.dumps(value, ensure_ascii=False)
    )


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0
