"""The keyword table (``qwenjson.schema.keywords``) against the slow obvious sources of truth:
jsonschema's own validators, the report, the compiler's output, and a walk written by hand."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from qwenjson.errors import SchemaError
from qwenjson.jsontypes import JSON_TYPES, json_type_of
from qwenjson.schema import check_schema, compile_schema
from qwenjson.schema.dialect import dialect_of
from qwenjson.schema.keywords import KEYWORDS, TABLE, UNKNOWN_NOTE, grammar_keywords, subschemas
from qwenjson.schema.refs import RefIndex
from qwenjson.validate import validator_class

# A typical value of every keyword in the table (subschemas assert something, so that a keyword
# whose subschema is applied shows it).
SAMPLES: dict[str, Any] = {
    "additionalProperties": {"type": "integer"},
    "additionalItems": {"type": "integer"},
    "unevaluatedProperties": {"type": "integer"},
    "unevaluatedItems": {"type": "integer"},
    "contains": {"type": "integer"},
    "propertyNames": {"maxLength": 2},
    "not": {"type": "integer"},
    "if": {"type": "integer"},
    "then": {"minimum": 3},
    "else": {"minLength": 3},
    "contentSchema": {"type": "integer"},
    "allOf": [{"type": "integer"}],
    "anyOf": [{"type": "integer"}, {"type": "null"}],
    "oneOf": [{"type": "integer"}, {"type": "null"}],
    "prefixItems": [{"type": "integer"}],
    "properties": {"a": {"type": "integer"}},
    "patternProperties": {"^a": {"type": "integer"}},
    "$defs": {"d": {"type": "integer"}},
    "definitions": {"d": {"type": "integer"}},
    "dependentSchemas": {"a": {"required": ["b"]}},
    "items": {"type": "integer"},
    "dependencies": {"a": ["b"], "c": {"required": ["d"]}},
    "$ref": "#/$defs/d",
    "$dynamicRef": "#/$defs/d",
    "$recursiveRef": "#",
    "type": "integer",
    "enum": [1, 2],
    "const": 1,
    "required": ["a"],
    "minProperties": 1,
    "maxProperties": 1,
    "dependentRequired": {"a": ["b"]},
    "minItems": 1,
    "maxItems": 1,
    "uniqueItems": True,
    "minContains": 2,
    "maxContains": 1,
    "minLength": 2,
    "maxLength": 1,
    "pattern": "^a",
    "format": "date",
    "contentMediaType": "application/json",
    "contentEncoding": "base64",
    "minimum": 1,
    "maximum": 1,
    "exclusiveMinimum": 1,
    "exclusiveMaximum": 1,
    "multipleOf": 2,
    "title": "t",
    "description": "d",
    "default": 1,
    "examples": [1],
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.com/s",
    "id": "https://example.com/s",
    "$comment": "c",
    "deprecated": True,
    "readOnly": True,
    "writeOnly": True,
    "$anchor": "here",
    "$dynamicAnchor": "here",
    "$recursiveAnchor": True,
    "$vocabulary": {"https://json-schema.org/draft/2020-12/vocab/core": True},
    "x-grounded": True,
}

# An instance of each type that the samples' assertions would reject if they applied to it.
INSTANCES: dict[str, Any] = {
    "object": {"a": "x", "abc": "x", "c": 1},
    "array": ["x", "x", 1.5],
    "string": "xx",
    "number": 1.5,
    "integer": 7,
    "boolean": True,
    "null": None,
}


def test_every_keyword_has_a_sample() -> None:
    assert set(SAMPLES) == set(KEYWORDS)
    assert len(TABLE) == len(KEYWORDS)  # no keyword twice


@pytest.mark.parametrize("keyword", [k.name for k in TABLE if k.types is not None])
def test_types_say_which_instances_a_keyword_can_reject(keyword: str) -> None:
    """A keyword never rejects an instance of a type outside its ``types`` (jsonschema decides)."""
    facts = KEYWORDS[keyword]
    assert facts.types is not None
    schema: dict[str, Any] = {keyword: SAMPLES[keyword], "$defs": {"d": {"type": "integer"}}}
    if facts.beside is not None:
        schema[facts.beside] = SAMPLES[facts.beside]
    validator = jsonschema.Draft202012Validator(schema)
    others = [
        t
        for t in JSON_TYPES
        if t not in facts.types and not (t == "integer" and "number" in facts.types)
    ]
    for t in others:
        assert validator.is_valid(INSTANCES[t]), (keyword, t)


@pytest.mark.parametrize("keyword", [k.name for k in TABLE if k.inert])
def test_inert_keywords_never_change_validity(keyword: str) -> None:
    for draft in (jsonschema.Draft202012Validator, jsonschema.Draft7Validator):
        validator = draft({keyword: SAMPLES[keyword]})
        assert all(validator.is_valid(v) for v in INSTANCES.values()), keyword


def _walk_by_hand(node: Any, pointer: str) -> list[str]:
    """Subschema pointers, read off the JSON Schema specification keyword by keyword."""
    if not isinstance(node, dict):
        return []
    out: list[str] = []
    for key, value in node.items():
        ptr = f"{pointer}/{key}"
        if key in (
            "additionalProperties",
            "additionalItems",
            "unevaluatedProperties",
            "unevaluatedItems",
            "contains",
            "propertyNames",
            "not",
            "if",
            "then",
            "else",
            "contentSchema",
            "items",
        ) and isinstance(value, dict | bool):
            out += [ptr, *_walk_by_hand(value, ptr)]
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems", "items") and isinstance(value, list):
            for i, sub in enumerate(value):
                out += [f"{ptr}/{i}", *_walk_by_hand(sub, f"{ptr}/{i}")]
        elif key in (
            "properties",
            "patternProperties",
            "$defs",
            "definitions",
            "dependentSchemas",
            "dependencies",
        ) and isinstance(value, dict):
            for name, sub in value.items():
                if isinstance(sub, dict | bool):
                    out += [f"{ptr}/{name}", *_walk_by_hand(sub, f"{ptr}/{name}")]
    return out


def test_the_walk_finds_every_subschema_the_specification_names() -> None:
    schema = {k: v for k, v in SAMPLES.items() if k not in ("$schema", "$id", "id")}
    schema["items"] = [{"type": "string"}, {"items": {"not": True}}]  # the array form too
    by_table = [p for p, _ in RefIndex(schema).nodes][1:]
    assert sorted(by_table) == sorted(_walk_by_hand(schema, ""))
    shaped = {k.name for k in TABLE if k.shape is not None}
    assert {p.split("/")[1] for p in by_table} == shaped


def test_in_place_subschemas_are_those_applied_to_the_instance_itself() -> None:
    in_place = {"not", "if", "then", "else", "allOf", "anyOf", "oneOf", "dependentSchemas"}
    in_place.add("dependencies")
    schema = {k: SAMPLES[k] for k in [*in_place, "items", "properties"]}
    found = {kw.name for _, _, kw in subschemas(schema, "", in_place=True)}
    assert found == in_place


def test_the_report_lists_each_keyword_with_the_tables_status() -> None:
    for keyword in KEYWORDS:
        schema: dict[str, Any] = {"$defs": {"d": {"type": "integer"}}, keyword: SAMPLES[keyword]}
        uses = {u.keyword: u for u in check_schema(schema) if u.pointer == ""}
        assert keyword in uses, keyword
        if keyword != "$defs":
            # The compiler may refine a status (weaker or exact): never to "unknown".
            assert uses[keyword].note != UNKNOWN_NOTE
        if KEYWORDS[keyword].status == "annotation":
            assert uses[keyword].status == "annotation", keyword
    unknown = check_schema({"x-whatever": 1})
    assert [(u.keyword, u.status, u.note) for u in unknown] == [
        ("x-whatever", "annotation", UNKNOWN_NOTE)
    ]


@pytest.mark.parametrize("json_type", ["object", "array"])
def test_grammar_keywords_are_exactly_those_that_change_the_generic_rule(json_type: str) -> None:
    """Oracle: compile ``{type: T, kw: sample}`` for each keyword, compare with ``{type: T}``."""
    plain = compile_schema({"type": json_type})
    changes = set()
    for keyword in KEYWORDS:
        if keyword in ("$ref", "$dynamicRef", "$recursiveRef", "$schema", "$id", "id"):
            continue
        schema = {"type": json_type, keyword: SAMPLES[keyword], "$defs": {"d": {}}}
        try:
            grammar = compile_schema(schema)
        except SchemaError:
            continue
        if grammar != plain and KEYWORDS[keyword].types == frozenset({json_type}):
            changes.add(keyword)
    # propertyNames is validated after generation unless the names can be put in the grammar.
    assert changes - {"propertyNames"} == grammar_keywords(json_type)


@pytest.mark.parametrize(
    "uri",
    [
        None,
        "https://json-schema.org/draft/2020-12/schema",
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft-07/schema",
        "json-schema.org/draft-04/schema",
        "http://json-schema.org/draft-06/schema##",
        "https://json-schema.org/draft/2019-09/schema#",
        "http://json-schema.org/draft-03/schema#",
        "http://json-schema.org/schema#",
        "https://example.com/my-dialect",
        17,
    ],
)
def test_validation_and_compilation_read_the_same_dialect(uri: object) -> None:
    schema: dict[str, Any] = {} if uri is None else {"$schema": uri}
    try:
        cls = validator_class(schema)
    except SchemaError as e:
        with pytest.raises(SchemaError) as compiled:
            compile_schema(schema)
        assert str(compiled.value) == str(e)
        return
    assert cls.META_SCHEMA["$schema"].rstrip("#").split("://")[1] in (
        "json-schema.org/draft/2020-12/schema",
        "json-schema.org/draft/2019-09/schema",
        f"json-schema.org/draft-0{dialect_of(schema).draft}/schema",
    )
    assert cls is dialect_of(schema).validator
    compile_schema(schema)


@pytest.mark.parametrize(
    "value", [None, True, False, 0, 3, -2, 1.0, 1.5, -0.0, 1e300, "", "x", [], [1], {}, {"a": 1}]
)
def test_json_type_of_agrees_with_jsonschema(value: Any) -> None:
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER
    kind = json_type_of(value)
    for t in JSON_TYPES:
        expected = t == kind or (kind == "integer" and t == "number")
        assert checker.is_type(value, t) == expected, (value, t)


def test_the_report_of_an_unknown_dialect_is_the_refusal() -> None:
    uses = check_schema({"$schema": "http://json-schema.org/draft-03/schema#", "type": "string"})
    assert [(u.pointer, u.keyword, u.status) for u in uses] == [("", "$schema", "unsupported")]
    assert "unknown $schema" in uses[0].note


def test_notes_name_no_place_of_their_own_and_say_what_x_grounded_does() -> None:
    # The row has the place; a note said "(at /)" of a nested pattern the compiler had tried.
    schema = {"properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}}
    (use,) = [u for u in check_schema(schema) if u.keyword == "pattern"]
    assert (use.pointer, use.status) == ("/properties/a", "validated-after")
    assert "lookbehind" in use.note and "(at " not in use.note
    remote = {"properties": {"a": {"$ref": "http://example.com/x.json"}}}
    (use,) = [u for u in check_schema(remote) if u.keyword == "$ref"]
    assert (use.pointer, use.status) == ("/properties/a", "unsupported")
    assert "(at " not in use.note
    # `n int derived` is x-grounded false on an integer: the note speaks of numbers too.
    assert "number" in KEYWORDS["x-grounded"].note
