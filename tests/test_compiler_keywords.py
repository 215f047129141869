"""Issue 3's keywords, one schema each: documents llama.cpp's grammar engine must accept or
reject under the compiled grammar, and what the keyword report says about them."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qwenjson.errors import SchemaError
from qwenjson.fields import grounding_rules
from qwenjson.schema import check_schema, compile
from qwenjson.validate import make_validator, validation_errors
from tests.grammar_engine import accepts, grammar_error

DRAFT4 = "http://json-schema.org/draft-04/schema#"
DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT2019 = "https://json-schema.org/draft/2019-09/schema"

CASES: list[tuple[str, Any, list[str], list[str]]] = [
    (
        "draft-04 id changes the base of a relative $ref",
        {
            "$schema": DRAFT4,
            "id": "http://example.com/root.json",
            "type": "object",
            "properties": {"p": {"$ref": "item.json"}},
            "definitions": {"item": {"id": "item.json", "type": "integer"}},
        },
        ['{"p":3}', "{}"],
        ['{"p":"x"}'],
    ),
    (
        "draft 2019-09 items array with additionalItems false",
        {
            "$schema": DRAFT2019,
            "type": "array",
            "items": [{"type": "string"}, {"type": "null"}],
            "additionalItems": False,
        },
        ["[]", '["a"]', '["a",null]'],
        ['["a",null,1]', "[null]"],
    ),
    (
        "draft-07 ignores the siblings of $ref",
        {
            "$schema": DRAFT7,
            "definitions": {"s": {"type": "string"}},
            "$ref": "#/definitions/s",
            "maxLength": 2,
        },
        ['"abcd"'],
        ["1"],
    ),
    (
        "2020-12 applies the siblings of $ref",
        {"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "maxLength": 2},
        ['"ab"'],
        ['"abcd"', "1"],
    ),
    (
        "patternProperties values with additionalProperties false",
        {
            "type": "object",
            "patternProperties": {"^x-": {"type": "integer"}},
            "additionalProperties": False,
        },
        ['{"x-a":1}', "{}", '{"x-a":1,"x-b":2}'],
        ['{"x-a":"s"}', '{"y":1}'],
    ),
    (
        "minProperties and maxProperties on additional members",
        {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "minProperties": 1,
            "maxProperties": 2,
        },
        ['{"a":1}', '{"a":1,"b":2}'],
        ["{}", '{"a":1,"b":2,"c":3}'],
    ),
    (
        "anyOf distributed over its siblings (a tagged union)",
        {
            "type": "object",
            "properties": {"kind": {"enum": ["a", "b"]}, "n": {"type": "integer"}},
            "required": ["kind"],
            "additionalProperties": False,
            "anyOf": [
                {"properties": {"kind": {"const": "a"}}, "required": ["n"]},
                {"properties": {"kind": {"const": "b"}}},
            ],
        },
        ['{"kind":"a","n":1}', '{"kind":"b"}', '{"kind":"b","n":2}'],
        ['{"kind":"a"}', '{"kind":"c"}', '{"n":1,"kind":"a"}'],
    ),
    (
        "pattern",
        {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
        ['"AB-123"'],
        ['"ab-123"', '"AB-1234"'],
    ),
    (
        "unanchored pattern means contains",
        {"type": "string", "pattern": "[0-9]"},
        ['"a1b"', '"7"'],
        ['"abc"'],
    ),
    ("format date", {"type": "string", "format": "date"}, ['"2024-01-31"'], ['"2024-1-31"']),
    (
        "integer exclusive bounds, 2020-12 style",
        {"type": "integer", "exclusiveMinimum": 0, "maximum": 3},
        ["1", "2", "3"],
        ["0", "4", "-1"],
    ),
    (
        "integer bounds from non-integer numbers",
        {"type": "integer", "minimum": 1.5, "exclusiveMaximum": 3.5},
        ["2", "3"],
        ["1", "4"],
    ),
    (
        "wide integer range",
        {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
        ["-2147483648", "0", "2147483647", "99"],
        ["-2147483649", "2147483648", "12345678901"],
    ),
    (
        "number minimum 0",
        {"type": "number", "minimum": 0},
        ["0.5", "1000", "0", "1e-05", "1e+16", "-0.0"],
        ["-1", "-0.5", "-1e-05"],
    ),
    (
        "number range with exclusive bounds",
        {"type": "number", "exclusiveMinimum": -90, "maximum": 90},
        ["-89.5", "90", "90.0", "0", "12.25", "-3e-07"],
        ["-90", "-90.0", "90.5", "91", "1e+16"],
    ),
    (
        "number range with non-integer bounds (widened, then validated)",
        {"type": "number", "minimum": 0.5, "maximum": 2.5},
        ["0.5", "2.5", "1"],
        ["-1", "3.5"],
    ),
    (
        "multipleOf 1 on a number means an integer",
        {"type": "number", "multipleOf": 1},
        ["3", "-4"],
        ["3.5"],
    ),
    (
        "a tree through $ref and anyOf with null",
        {
            "$defs": {
                "tree": {
                    "type": "object",
                    "properties": {
                        "v": {"type": "integer"},
                        "left": {"anyOf": [{"$ref": "#/$defs/tree"}, {"type": "null"}]},
                        "right": {"anyOf": [{"$ref": "#/$defs/tree"}, {"type": "null"}]},
                    },
                    "required": ["v"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/tree",
        },
        ['{"v":1}', '{"v":1,"left":{"v":2,"right":null},"right":{"v":3}}'],
        ['{"v":1,"left":{}}', '{"left":null}'],
    ),
    (
        "allOf of a $ref and more",
        {
            "$defs": {
                "base": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}},
                    "required": ["id"],
                }
            },
            "allOf": [
                {"$ref": "#/$defs/base"},
                {"properties": {"name": {"type": "string"}}, "required": ["name"]},
            ],
        },
        ['{"id":1,"name":"x"}', '{"id":1,"name":"x","more":true}'],
        ['{"name":"x","id":1}', '{"id":1}'],
    ),
    (
        "type list with per-type keywords",
        {"type": ["integer", "string"], "minimum": 10, "minLength": 2},
        ["10", '"ab"'],
        ["9", '"a"', "null"],
    ),
    (
        "const object",
        {"const": {"a": [1, "x"], "b": None}},
        ['{"a":[1,"x"],"b":null}'],
        ['{"b":null,"a":[1,"x"]}', "{}"],
    ),
    (
        "enum filtered by type",
        {"type": "string", "enum": ["a", 1, "b", None]},
        ['"a"', '"b"'],
        ["1", "null"],
    ),
    (
        "prefixItems then items with minItems",
        {
            "type": "array",
            "prefixItems": [{"const": "x"}],
            "items": {"type": "integer"},
            "minItems": 2,
            "maxItems": 3,
        },
        ['["x",1]', '["x",1,2]'],
        ['["x"]', '["x",1,2,3]', "[1,2]"],
    ),
    (
        "$anchor",
        {
            "$defs": {"n": {"$anchor": "num", "type": "number"}},
            "type": "array",
            "items": {"$ref": "#num"},
        },
        ["[1,2.5]"],
        ['["1"]'],
    ),
]


@pytest.mark.parametrize(("name", "schema", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_keyword(name: str, schema: Any, good: list[str], bad: list[str]) -> None:
    grammar = compile(schema).grammar
    assert grammar_error(grammar) is None
    for text in good:
        assert accepts(grammar, text), text
    for text in bad:
        assert not accepts(grammar, text), text


def _statuses(schema: Any) -> dict[tuple[str, str], str]:
    return {(u.pointer, u.keyword): u.status for u in compile(schema).report}


def test_big_bounds_stay_out_of_the_grammar() -> None:
    compiled = compile({"type": "string", "maxLength": 100_000})
    assert compiled.grammar.startswith("root ::= string\n")
    assert _statuses({"type": "string", "maxLength": 100_000})[("", "maxLength")] == (
        "validated-after"
    )
    assert compiled.needs_validation


def test_overlapping_oneof_is_checked_afterwards() -> None:
    overlapping = {"oneOf": [{"type": "integer"}, {"minimum": 3}]}
    assert _statuses(overlapping)[("", "oneOf")] == "validated-after"
    disjoint = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
    assert _statuses(disjoint)[("", "oneOf")] == "enforced"
    assert not compile(disjoint).needs_validation


def test_check_schema_lists_a_refusal_at_its_place() -> None:
    uses = check_schema({"properties": {"a": {"$ref": "https://example.com/s.json"}}})
    refused = [u for u in uses if u.status == "unsupported"]
    assert [(u.pointer, u.keyword) for u in refused] == [("/properties/a", "$ref")]
    assert "never fetched" in refused[0].note


def test_unknown_keywords_are_listed_as_annotations() -> None:
    uses = check_schema({"type": "string", "x-ui": {"widget": "text"}, "tsType": "string"})
    notes = {u.keyword: (u.status, u.note) for u in uses}
    assert notes["x-ui"][0] == "annotation"
    assert "unknown keyword" in notes["tsType"][1]


@pytest.mark.parametrize(
    "branches",
    [
        [
            {"type": "object", "properties": {"type": {"const": "Point"}}, "required": ["type"]},
            {"type": "object", "properties": {"type": {"enum": ["Line"]}}, "required": ["type"]},
        ],
        [
            {"type": "object", "required": ["a"]},
            {"type": "object", "properties": {"b": {}}, "additionalProperties": False},
        ],
        [{"const": 1}, {"enum": [2, 3]}, {"type": "string"}],
    ],
    ids=["discriminator", "required vs forbidden", "enums and types"],
)
def test_provably_exclusive_oneof_is_enforced(branches: list[Any]) -> None:
    assert _statuses({"oneOf": branches})[("", "oneOf")] == "enforced"


def test_oneof_with_a_shared_instance_is_checked_afterwards() -> None:
    branches = [{"type": "object", "required": ["a"]}, {"type": "object", "required": ["b"]}]
    assert _statuses({"oneOf": branches})[("", "oneOf")] == "validated-after"


def test_patternproperties_with_additional_false_is_exact() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "patternProperties": {"^x-": {}},
        "additionalProperties": False,
    }
    assert _statuses(schema)[("", "patternProperties")] == "enforced"
    open_schema = {"type": "object", "patternProperties": {"^n": {"type": "integer"}}}
    assert _statuses(open_schema)[("", "patternProperties")] == "validated-after"


NOT_CASES: list[tuple[str, Any, list[str], list[str]]] = [
    (
        "not {} forbids additional members",
        {"type": "object", "properties": {"a": {}}, "additionalProperties": {"not": {}}},
        ['{"a":1}', "{}"],
        ['{"b":1}'],
    ),
    (
        "not type",
        {"not": {"type": ["array", "object", "null"]}},
        ['"s"', "1", "true"],
        ["[]", "{}", "null"],
    ),
    (
        "not required",
        {"not": {"required": ["image"]}},
        ['{"build":1}', "{}"],
        ['{"image":1}', '"s"', "1"],
    ),
    ("not enum beside an enum", {"enum": [1, 2, 3], "not": {"enum": [2]}}, ["1", "3"], ["2"]),
]


@pytest.mark.parametrize(
    ("name", "schema", "good", "bad"), NOT_CASES, ids=[c[0] for c in NOT_CASES]
)
def test_not_where_the_grammar_can_say_it(
    name: str, schema: Any, good: list[str], bad: list[str]
) -> None:
    compiled = compile(schema)
    assert grammar_error(compiled.grammar) is None
    for text in good:
        assert accepts(compiled.grammar, text), text
    for text in bad:
        assert not accepts(compiled.grammar, text), text
    assert all(u.status == "enforced" for u in compiled.report if u.keyword == "not")


NAME_CASES: list[tuple[str, Any, list[str], list[str]]] = [
    (
        "enum",
        {"type": "object", "propertyNames": {"enum": ["a", "b"]}},
        ['{"a":1,"b":2}', "{}"],
        ['{"c":1}'],
    ),
    (
        "pattern",
        {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z]+$"},
            "additionalProperties": {"type": "integer"},
        },
        ['{"ab":1}'],
        ['{"A":1}'],
    ),
    (
        "maxLength",
        {"type": "object", "propertyNames": {"maxLength": 2}},
        ['{"ab":1}'],
        ['{"abc":1}'],
    ),
]


@pytest.mark.parametrize(
    ("name", "schema", "good", "bad"), NAME_CASES, ids=[c[0] for c in NAME_CASES]
)
def test_property_names_in_the_grammar(
    name: str, schema: Any, good: list[str], bad: list[str]
) -> None:
    compiled = compile(schema)
    for text in good:
        assert accepts(compiled.grammar, text), text
    for text in bad:
        assert not accepts(compiled.grammar, text), text
    assert _statuses(schema)[("", "propertyNames")] == "enforced"


def test_property_names_a_declared_name_breaks_is_checked_afterwards() -> None:
    schema = {"type": "object", "properties": {"ABC": {}}, "propertyNames": {"maxLength": 2}}
    assert _statuses(schema)[("", "propertyNames")] == "validated-after"


def test_universal_pattern_applies_to_every_key() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "patternProperties": {".*": {"type": "integer", "minimum": 0}},
    }
    grammar = compile(schema).grammar
    assert accepts(grammar, '{"a":1,"b":2}')
    assert not accepts(grammar, '{"a":-1}')  # the pattern's schema reaches declared keys too
    assert not accepts(grammar, '{"b":"x"}')
    assert _statuses(schema)[("", "patternProperties")] == "enforced"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "oneOf": [{"minimum": -1, "maximum": -1}, {"minimum": 50}]},
        {"oneOf": [{"type": "string", "pattern": "^[0-9a-f]{24}$"}, {"enum": ["", None]}]},
    ],
    ids=["disjoint ranges", "an enum the other branch's pattern refuses"],
)
def test_more_exclusive_oneofs(schema: Any) -> None:
    assert _statuses(schema)[("", "oneOf")] == "enforced"


def test_overlapping_ranges_are_checked_afterwards() -> None:
    assert _statuses({"oneOf": [{"minimum": 0}, {"maximum": 10}]})[("", "oneOf")] == (
        "validated-after"
    )


def test_enum_values_the_siblings_rule_out_are_left_out() -> None:
    schema = {"enum": ["a", "abcd", 5, 50], "maxLength": 2, "maximum": 10}
    compiled = compile(schema)
    assert accepts(compiled.grammar, '"a"')
    assert accepts(compiled.grammar, "5")
    assert not accepts(compiled.grammar, '"abcd"')
    assert not accepts(compiled.grammar, "50")
    assert not compiled.needs_validation


BOUNDS = [0, 1, 10, -3, 2.5, -1.5, 0.1, 0.3, 99.99]


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from([None, *BOUNDS]),
    st.sampled_from([None, *BOUNDS]),
    st.sampled_from(["minimum", "exclusiveMinimum"]),
    st.sampled_from(["maximum", "exclusiveMaximum"]),
)
def test_a_number_bound_reported_enforced_is_one_the_grammar_keeps(
    lo: float | None, hi: float | None, lo_kw: str, hi_kw: str
) -> None:
    # The oracle: numbers just past a bound, through llama.cpp's grammar engine. The report
    # said "enforced" for `maximum` of `price float 0..99.99`, whose grammar takes 100, and for
    # both exclusive bounds of 0.5 < x < 10, whose grammar takes 0 and 10 (a review's runs).
    schema: dict[str, Any] = {"type": "number"}
    if lo is not None:
        schema[lo_kw] = lo
    if hi is not None:
        schema[hi_kw] = hi
    try:
        compiled = compile(schema)
    except SchemaError:
        assume(False)  # no number between the bounds
    status = {u.keyword: u.status for u in compiled.report if u.pointer == ""}
    below = [] if lo is None else [lo - 1, lo - 0.5, lo - 0.01, math.floor(lo)]
    above = [] if hi is None else [hi + 1, hi + 0.5, hi + 0.01, math.ceil(hi)]
    for keyword, bound, outside in ((lo_kw, lo, below), (hi_kw, hi, above)):
        if bound is None or status[keyword] != "enforced":
            continue
        outside += [bound] if keyword.startswith("exclusive") else []
        for value in outside:
            if not validation_errors(value, make_validator(schema)):
                continue  # floor(lo) may be lo itself: inside
            for text in {json.dumps(value), json.dumps(round(value, 2))}:
                assert not accepts(compiled.grammar, text), (schema, keyword, text)


def test_length_beside_a_pattern_is_reported_as_checked_afterwards_on_both_sides() -> None:
    schema = {"type": "string", "pattern": "^[a-z]+$", "minLength": 3, "maxLength": 10}
    compiled = compile(schema)
    assert accepts(compiled.grammar, '"a"')  # the pattern's grammar alone: no length in it
    status = _statuses(schema)
    assert status[("", "minLength")] == status[("", "maxLength")] == "validated-after"


def test_the_report_says_where_extract_does_not_read_x_grounded() -> None:
    # A review's runs: a count marked false under a two-part allOf was reported "written or
    # worked out" and still needed a source; a boolean marked true was reported "copied".
    # The oracle for what extract reads: the rules qwenjson.fields gives.
    schema = {
        "type": "object",
        "properties": {
            "one": {"allOf": [{"type": "integer", "x-grounded": False}]},
            "two": {"allOf": [{"type": "string", "x-grounded": False}, {"maxLength": 5}]},
            "flag": {"type": "boolean", "x-grounded": True},
            "map": {
                "type": "object",
                "additionalProperties": {"type": "string", "x-grounded": False},
            },
            "p": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]},
        },
        "$defs": {
            "P": {"type": "object", "properties": {"n": {"type": "string", "x-grounded": False}}}
        },
    }
    notes = {u.pointer: u.note for u in check_schema(schema) if u.keyword == "x-grounded"}
    unread = [p for p, note in notes.items() if "not read" in note]
    assert sorted(unread) == [
        "/properties/flag",
        "/properties/map/additionalProperties",
        "/properties/two/allOf/0",
    ]
    # Where the walk makes no rule and passes nothing down: a string-or-integer, and an
    # Optional list with no items (the report's own copy of the walk's tests called both read).
    loose = {
        "type": "object",
        "properties": {
            "t": {"type": ["string", "integer"], "x-grounded": False},
            "l": {"anyOf": [{"type": "array"}, {"type": "null"}], "x-grounded": False},
        },
    }
    notes = {u.pointer: u.note for u in check_schema(loose) if u.keyword == "x-grounded"}
    assert all("not read" in note for note in notes.values()) and len(notes) == 2
    assert grounding_rules(loose) == {}
    rules = grounding_rules(schema)
    assert rules[("one",)].grounded is False and rules[("p", "n")].grounded is False
    assert ("two",) not in rules and ("flag",) not in rules and ("map",) not in rules


def test_x_grounded_is_an_annotation_extract_reads() -> None:
    uses = check_schema({"type": "string", "x-grounded": False})
    (use,) = [u for u in uses if u.keyword == "x-grounded"]
    assert use.status == "annotation" and "extract" in use.note
    # The note says what this one does (it read the same for true and false).
    notes = {
        u.pointer: u.note
        for u in check_schema(
            {
                "type": "object",
                "properties": {
                    "a": {"type": "string", "x-grounded": True},
                    "b": {"type": "array", "items": {"type": "string"}, "x-grounded": False},
                },
            }
        )
        if u.keyword == "x-grounded"
    }
    # Behind a $ref, or on an Optional list, it is for what they hold too (a review).
    behind = check_schema(
        {
            "$defs": {"P": {"type": "object", "properties": {"n": {"type": "string"}}}},
            "type": "object",
            "properties": {
                "p": {"$ref": "#/$defs/P", "x-grounded": False},
                "t": {
                    "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                    "x-grounded": False,
                },
            },
        }
    )
    assert all("in it with no mark" in u.note for u in behind if u.keyword == "x-grounded")
    assert notes == {
        "/properties/a": "extract: copied or read from the input text",
        "/properties/b": "extract: strings, numbers and dates in it with no mark of their own "
        "(an enum, a format, a pattern or a name such as summary keeps its own rule): "
        "written or worked out by the model",
    }


# Each: a schema, a document, and whether it is compiled for extract (closed objects). The
# oracle is validation: a valid document is one the grammar accepts; an invalid one the grammar
# refuses, or the schema is reported as checked after generation (needs_validation).
AGREEMENT = [
    # A patternProperties key that spells a declared name took the pattern's schema alone.
    (
        {
            "properties": {"xa": {"type": "integer"}},
            "patternProperties": {"^x": {}},
            "additionalProperties": False,
        },
        ['{"xa":1}', '{"xb":"s"}', '{"xa":"s"}'],
        False,
    ),
    # One allOf part's additionalProperties applies to keys only another part's patterns match.
    (
        {
            "allOf": [
                {"patternProperties": {"^x": {"type": "string"}}},
                {"additionalProperties": False},
            ]
        },
        ['{"xa":"s"}', "{}"],
        False,
    ),
    # A propertyNames enum meets its sibling keywords too.
    ({"propertyNames": {"enum": ["a", "bb"], "maxLength": 1}}, ['{"a":1}', '{"bb":1}'], False),
    # Patterns are ECMA-262 in the compiler as in validation (\w is ASCII; U+FEFF is \s).
    (
        {"properties": {"é": {}}, "patternProperties": {"^\\w+$": {"type": "integer"}}},
        ['{"é":"x"}', '{"a":1}', '{"a":"x"}'],
        False,
    ),
    ({"enum": ["é", "a"], "pattern": "^\\w$"}, ['"a"', '"é"'], False),
    ({"enum": ["\ufeff", "x"], "pattern": "^\\s$"}, ['"\ufeff"', '"x"'], False),
    # $dynamicRef lands where the dynamic scope says: any anchor of that name in the grammar
    # (it resolved to the nearest one, and the valid ["a"] could not be written).
    (
        {
            "$id": "https://example.com/root",
            "$ref": "list",
            "$defs": {
                "foo": {"$dynamicAnchor": "items", "type": "string"},
                "list": {
                    "$id": "list",
                    "type": "array",
                    "items": {"$dynamicRef": "#items"},
                    "$defs": {"items": {"$dynamicAnchor": "items", "type": "integer"}},
                },
            },
        },
        ['["a"]', "[1]"],
        False,
    ),
    # Extract's closed objects still let in a name a keyword checked afterwards requires.
    (
        {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "required": ["a"],
            "dependentRequired": {"a": ["b"]},
        },
        ['{"a":"x","b":1}'],
        True,
    ),
    (
        {
            "type": "object",
            "properties": {"kind": {"const": "x"}},
            "required": ["kind"],
            "if": {"properties": {"kind": {"const": "x"}}},
            "then": {"required": ["extra"]},
        },
        ['{"kind":"x","extra":1}'],
        True,
    ),
]


@pytest.mark.parametrize(("schema", "texts", "closed"), AGREEMENT)
def test_the_grammar_agrees_with_validation(schema: Any, texts: list[str], closed: bool) -> None:
    compiled = compile(schema, closed_objects=closed)
    validator = make_validator(schema)
    for text in texts:
        valid = not validation_errors(json.loads(text), validator)
        accepted = accepts(compiled.grammar, text)
        if valid:
            assert accepted, text
        else:
            assert not accepted or compiled.needs_validation, text
