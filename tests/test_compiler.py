"""Golden tables for the JSON Schema → GBNF compiler.

Each row: a schema and the exact grammar it compiles to (or the error it is refused with).
Every grammar is parsed by llama.cpp's own GBNF parser, and sample documents are accepted or
rejected by llama.cpp's own grammar engine (tests/grammar_engine.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from qwenjson.errors import SchemaError
from qwenjson.schema import check_schema, compile, compile_schema
from tests.grammar_engine import accepts, grammar_error

JSON_CHAR = 'json-char ::= [^"\\\\\\x00-\\x1F] | "\\\\" ["\\\\bfnrt] | "\\\\u00" [01] [0-9a-f]'
STRING = 'string ::= "\\"" json-char* "\\""'
INTEGER = 'integer ::= "-"? ( "0" | [1-9] [0-9]* )'
NUMBER = 'number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?'
# Keys other than "id": differ at the first character, or after "i", or go on after "id".
OTHER_KEY_ID = (
    'other-key ::= "\\"" ( "" | ( [^"\\\\\\x00-\\x1Fi] | json-escape ) json-char* '
    '| "i" ( "" | ( [^"\\\\\\x00-\\x1Fd] | json-escape ) json-char* | "d" ( json-char+ ) ) ) "\\""'
)
VALUE_RULES = [
    'array ::= "[" ( value ( "," value )* )? "]"',
    JSON_CHAR,
    NUMBER,
    'object ::= "{" ( string ":" value ( "," string ":" value )* )? "}"',
    STRING,
    'value ::= object | array | string | number | "true" | "false" | "null"',
]


def g(*lines: str) -> str:
    return "\n".join(lines) + "\n"


GOLDEN: list[tuple[str, Any, str]] = [
    ("string", {"type": "string"}, g("root ::= string", JSON_CHAR, STRING)),
    ("integer", {"type": "integer"}, g("root ::= integer", INTEGER)),
    ("number", {"type": "number"}, g("root ::= number", NUMBER)),
    ("boolean", {"type": "boolean"}, g('root ::= "true" | "false"')),
    ("null", {"type": "null"}, g('root ::= "null"')),
    ("true schema", True, g("root ::= value", *VALUE_RULES)),
    (
        "empty schema",
        {"title": "anything", "description": "annotations only"},
        g("root ::= value", *VALUE_RULES),
    ),
    ("type array", {"type": ["string", "null"]}, g('root ::= string | "null"', JSON_CHAR, STRING)),
    (
        "properties keep schema order, not required-first",
        {
            "type": "object",
            "properties": {"reasoning": {"type": "string"}, "answer": {"type": "integer"}},
            "required": ["answer", "reasoning"],
            "additionalProperties": False,
        },
        g(
            'root ::= "{\\"reasoning\\":" string ",\\"answer\\":" integer "}"',
            INTEGER,
            JSON_CHAR,
            STRING,
        ),
    ),
    (
        "optional properties may be skipped, order kept",
        {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
            "additionalProperties": False,
        },
        g(
            'root ::= "{" ( "\\"a\\":" string ( ",\\"b\\":" integer )? | "\\"b\\":" integer )? "}"',
            INTEGER,
            JSON_CHAR,
            STRING,
        ),
    ),
    (
        "required after optional",
        {
            "type": "object",
            "properties": {"a": {"const": 1}, "b": {"const": 2}, "c": {"const": 3}},
            "required": ["b"],
            "additionalProperties": False,
        },
        g('root ::= "{" ( "\\"a\\":1,\\"b\\":2" ",\\"c\\":3"? | "\\"b\\":2" ",\\"c\\":3"? ) "}"'),
    ),
    (
        "additionalProperties schema",
        {"type": "object", "additionalProperties": {"type": "integer"}},
        g(
            'root ::= "{" ( string ":" integer ( "," string ":" integer )* )? "}"',
            INTEGER,
            JSON_CHAR,
            STRING,
        ),
    ),
    (
        "undeclared members come after the declared ones, never repeating them",
        {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
        g(
            'root ::= "{\\"id\\":" integer ( "," other-key ":" value )* "}"',
            'array ::= "[" ( value ( "," value )* )? "]"',
            INTEGER,
            JSON_CHAR,
            'json-escape ::= "\\\\" ["\\\\bfnrt] | "\\\\u00" [01] [0-9a-f]',
            NUMBER,
            'object ::= "{" ( string ":" value ( "," string ":" value )* )? "}"',
            OTHER_KEY_ID,
            STRING,
            'value ::= object | array | string | number | "true" | "false" | "null"',
        ),
    ),
    (
        "enum of mixed values",
        {"enum": ["a", 1, None, True, {"k": [1, 2]}, 2.0]},
        g('root ::= "\\"a\\"" | "1" | "null" | "true" | "{\\"k\\":[1,2]}" | "2"'),
    ),
    (
        "const string with escapes, control characters, emoji",
        {"const": 'q"b\\n\nt\u0001é😀'},
        g('root ::= "\\"q\\\\\\"b\\\\\\\\n\\\\nt\\\\u0001é😀\\""'),
    ),
    (
        "string lengths",
        {"type": "string", "minLength": 2, "maxLength": 5},
        g('root ::= "\\"" json-char{2,5} "\\""', JSON_CHAR),
    ),
    (
        "array bounds",
        {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
        g('root ::= "[" item ( "," item ){0,2} "]"', 'item ::= "true" | "false"'),
    ),
    (
        "prefixItems, no more items",
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        g('root ::= "[" ( string ( "," integer )? )? "]"', INTEGER, JSON_CHAR, STRING),
    ),
    (
        "anyOf",
        {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1, "maximum": 12}]},
        g("root ::= string | any-1", 'any-1 ::= [1-9] | "1" [0-2]', JSON_CHAR, STRING),
    ),
    (
        "oneOf of disjoint types",
        {"oneOf": [{"type": "string"}, {"type": "null"}]},
        g('root ::= string | "null"', JSON_CHAR, STRING),
    ),
    (
        "recursive $ref: a linked list",
        {
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}},
                    "required": ["value"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/node",
        },
        g(
            "root ::= node",
            INTEGER,
            'node ::= "{\\"value\\":" integer ( ",\\"next\\":" node )? "}"',
        ),
    ),
    (
        "draft-07 definitions",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"id": {"type": "string"}},
            "type": "array",
            "items": {"$ref": "#/definitions/id"},
        },
        g('root ::= "[" ( string ( "," string )* )? "]"', JSON_CHAR, STRING),
    ),
    (
        "integer range",
        {"type": "integer", "minimum": -5, "exclusiveMaximum": 100},
        g('root ::= "-" [1-5] | "0" | [1-9] | [1-9] [0-9]'),
    ),
    (
        "allOf merged",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"a": {"maxLength": 3}}, "additionalProperties": False},
            ]
        },
        g('root ::= "{\\"a\\":" a "}"', 'a ::= "\\"" json-char{0,3} "\\""', JSON_CHAR),
    ),
]


@pytest.mark.parametrize(("name", "schema", "expected"), GOLDEN, ids=[r[0] for r in GOLDEN])
def test_golden(name: str, schema: Any, expected: str) -> None:
    grammar = compile_schema(schema)
    assert grammar == expected
    assert grammar_error(grammar) is None


ERRORS: list[tuple[str, Any, str, str]] = [
    ("false schema", False, "matches nothing", ""),
    ("empty enum", {"enum": []}, "enum", ""),
    ("minimum above maximum", {"type": "integer", "minimum": 5, "maximum": 1}, "minimum", ""),
    (
        "minLength above maxLength",
        {"type": "string", "minLength": 5, "maxLength": 1},
        "minLength",
        "",
    ),
    ("remote $ref", {"$ref": "https://example.com/s.json"}, "never fetched", "/$ref"),
    ("relative $ref to another file", {"$ref": "other.json#/a"}, "never fetched", "/$ref"),
    ("dangling $ref", {"$ref": "#/$defs/missing"}, "points at nothing", "/$ref"),
    (
        "$ref cycle",
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        "cycle",
        "/$defs/",
    ),
    (
        "allOf cycle",
        {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}], "type": "string"}}, "$ref": "#/$defs/a"},
        "cycle",
        "/$defs/a",
    ),
    ("unknown type", {"type": "text"}, "unknown type", "/type"),
    (
        "allOf forbids a required property",
        {
            "type": "object",
            "allOf": [
                {"properties": {"a": {}}, "required": ["a"]},
                {"additionalProperties": False},
            ],
        },
        "required property 'a'",
        "/allOf/0/properties/a",
    ),
    (
        "required property forbidden",
        {"type": "object", "required": ["x"], "additionalProperties": False},
        "required property 'x'",
        "",
    ),
]


@pytest.mark.parametrize(
    ("name", "schema", "message", "pointer"), ERRORS, ids=[r[0] for r in ERRORS]
)
def test_refused(name: str, schema: Any, message: str, pointer: str) -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(schema)
    assert message in str(info.value)
    assert info.value.pointer is not None
    assert info.value.pointer.startswith(pointer)


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
}

SAMPLES: list[tuple[str, Any, list[str], list[str]]] = [
    (
        "person",
        PERSON,
        [
            '{"name":"李明","age":28,"hobbies":["读书","跑步"]}',
            '{"name":"a","age":0}',
            '{"name":"a","age":150,"extra":{"x":[1,null]}}',
        ],
        [
            '{"name":"a","age":151}',
            '{"age":1,"name":"x"}',
            '{"name":"a","age":1,"name":"b"}',
            '{"name":"a", "age":1}',
            '{"name":"a","age":01}',
            '{"name":"a"}',
        ],
    ),
    (
        "strings are real JSON strings",
        {"type": "string"},
        ['"a\\"b"', '"\\\\"', '"\\n\\t\\u0001"', '"😀 中文"', '""'],
        ['"a"b"', '"\n"', '"\\x"', "'a'", '"a'],
    ),
    (
        "integer digit ranges",
        {"type": "integer", "minimum": -12, "maximum": 1234},
        ["-12", "-1", "0", "7", "99", "1000", "1234"],
        ["-13", "-0", "1235", "01", "9999", "1.5"],
    ),
    (
        "exclusive bounds, draft-04 style",
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "integer",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 10,
            "exclusiveMaximum": True,
        },
        ["1", "9"],
        ["0", "10"],
    ),
    (
        "tree with $anchor and $id-relative refs",
        {
            "$id": "https://example.com/tree.json",
            "$defs": {
                "tree": {
                    "$anchor": "node",
                    "type": "object",
                    "properties": {"kids": {"type": "array", "items": {"$ref": "#node"}}},
                    "additionalProperties": False,
                }
            },
            "$ref": "tree.json#/$defs/tree",
        },
        ["{}", '{"kids":[]}', '{"kids":[{"kids":[{}]},{}]}'],
        ['{"kids":[1]}', '{"x":1}'],
    ),
    (
        "keys that need escaping",
        {
            "type": "object",
            "properties": {'a"b\\c\n': {"type": "null"}},
            "additionalProperties": False,
            "required": ['a"b\\c\n'],
        },
        ['{"a\\"b\\\\c\\n":null}'],
        ['{"a"b\\c\n":null}', "{}"],
    ),
    (
        # A property named like the start rule got that rule's name, and the start rule became
        # the property's (Github_easy o42304, JsonSchemaStore vs-nesting).
        "a property named root",
        {
            "type": "object",
            "properties": {
                "root": {
                    "type": "object",
                    "properties": {
                        "root": {"type": "array", "items": {"$ref": "#/properties/root"}},
                        "n": {"type": "string"},
                    },
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
        ['{"root":{"root":[]}}', '{"root":{"root":[{"n":"x"},{"root":[]}]}}', "{}"],
        ['{"root":{"x":1}}', '{"root":{"root":[{"root":{}}]}}', '{"root":{"root":{}}}'],
    ),
    (
        "a property named root that is a boolean, beside a recursive document",
        {
            "type": "object",
            "properties": {
                "root": {"type": "boolean"},
                "kids": {"type": "array", "items": {"$ref": "#"}},
            },
            "additionalProperties": False,
        },
        ['{"root":true}', '{"kids":[{"root":false},{}]}'],
        ['{"root":{}}', '{"kids":[{"root":{"root":true}}]}'],
    ),
    (
        # A pattern that takes every key and any value changed nothing, yet it dropped the
        # member for keys no pattern matches: only {} was left (Github_hard o82151).
        "patternProperties taking every key, any value",
        {
            "type": "object",
            "properties": {"a": {"type": "null"}},
            "patternProperties": {".*": {"description": "anything"}},
        },
        ['{"x":1}', '{"a":null,"b":{"c":[]},"c":"d"}', "{}"],
        ['{"a":1}', '{"x":}', "[]"],
    ),
    (
        "patternProperties taking every key, beside additionalProperties {}",
        {"type": "object", "additionalProperties": {}, "patternProperties": {"^.*": True}},
        ['{"x":1,"y":[true]}', "{}"],
        ['{"x"}', "null"],
    ),
    (
        # A regex's own rules (x-key-c0) took the name of the rule of property c0 (minLength
        # 3), which then matched one character: valid documents refused, invalid ones let
        # through unchecked. The translators' rules now live under `NAME--`.
        "a pattern's rules and a property's rule named alike",
        {
            "type": "object",
            "properties": {
                "a": {
                    "type": "object",
                    "properties": {
                        "x": {
                            "type": "object",
                            "properties": {
                                "key": {
                                    "type": "object",
                                    "properties": {"c0": {"type": "string", "minLength": 3}},
                                }
                            },
                        }
                    },
                },
                "x": {
                    "type": "object",
                    "patternProperties": {"^(?:[^/]+/)*[^/]+$": {"type": "integer"}},
                    "additionalProperties": False,
                },
            },
        },
        ['{"a":{"x":{"key":{"c0":"abc"}}},"x":{"p/q":1}}'],
        ['{"a":{"x":{"key":{"c0":"z"}}}}', '{"x":{"p/":1}}'],
    ),
    (
        # The same with a format's rules (e-format-email), which was refused as a clash.
        "a format's rules and a property's rule named alike",
        {
            "type": "object",
            "properties": {
                "q": {
                    "type": "object",
                    "properties": {
                        "e": {
                            "type": "object",
                            "properties": {
                                "format": {
                                    "type": "object",
                                    "properties": {"email": {"type": "string", "maxLength": 2}},
                                }
                            },
                        }
                    },
                },
                "e": {"type": "string", "format": "email"},
                "--e--": {"type": "string", "format": "email"},
            },
        },
        ['{"q":{"e":{"format":{"email":"ab"}}},"e":"a@b.cd","--e--":"x@y.z"}'],
        ['{"q":{"e":{"format":{"email":"abc"}}}}', '{"e":"ab"}', '{"--e--":"@"}'],
    ),
    (
        "additional keys differ from declared ones",
        {
            "type": "object",
            "properties": {"ab": {"type": "null"}},
            "additionalProperties": {"type": "integer"},
        },
        ['{"ab":null,"a":1,"abc":2,"":3,"b":4}', "{}"],
        ['{"ab":null,"ab":1}', '{"a":null}'],
    ),
]


@pytest.mark.parametrize(("name", "schema", "good", "bad"), SAMPLES, ids=[r[0] for r in SAMPLES])
def test_accepts_and_rejects(name: str, schema: Any, good: list[str], bad: list[str]) -> None:
    grammar = compile_schema(schema)
    assert grammar_error(grammar) is None
    for text in good:
        assert accepts(grammar, text), text
    for text in bad:
        assert not accepts(grammar, text), text


def test_deterministic() -> None:
    assert compile_schema(PERSON) == compile_schema(dict(PERSON))


def test_thousand_deep_nesting_compiles() -> None:
    schema: Any = {"type": "integer"}
    for _ in range(1000):
        schema = {
            "type": "object",
            "properties": {"a": schema},
            "required": ["a"],
            "additionalProperties": False,
        }
    grammar = compile_schema(schema)
    assert grammar_error(grammar) is None
    assert accepts(grammar, '{"a":' * 1000 + "7" + "}" * 1000)


def test_too_deep_is_refused_cleanly() -> None:
    schema: Any = {"type": "integer"}
    for _ in range(3000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(SchemaError, match="nested more than"):
        compile_schema(schema)


def test_sixty_thousand_alternatives() -> None:
    values = [f"v{i}" for i in range(60_000)]
    grammar = compile_schema({"enum": values})
    assert grammar_error(grammar) is None
    assert accepts(grammar, '"v59999"')
    assert not accepts(grammar, '"v60000"')
    branches = {"anyOf": [{"const": i} for i in range(60_000)]}
    grammar = compile_schema(branches)
    assert grammar_error(grammar) is None
    assert accepts(grammar, "12345")


def test_report_statuses() -> None:
    compiled = compile(
        {
            "type": "object",
            "title": "t",
            "properties": {"n": {"type": "integer", "multipleOf": 3}, "x": {"format": "nope"}},
            "x-vendor": 1,
        }
    )
    by_key = {(u.pointer, u.keyword): u.status for u in compiled.report}
    assert by_key[("", "type")] == "enforced"
    assert by_key[("", "title")] == "annotation"
    assert by_key[("", "x-vendor")] == "annotation"
    assert by_key[("/properties/n", "multipleOf")] == "validated-after"
    assert by_key[("/properties/x", "format")] == "validated-after"
    assert compiled.needs_validation
    assert not compile({"type": "string"}).needs_validation


def test_check_schema_lists_every_keyword() -> None:
    uses = check_schema({"type": "array", "items": {"type": "string"}, "uniqueItems": True})
    assert [(u.pointer, u.keyword, u.status) for u in uses] == [
        ("", "type", "enforced"),
        ("", "items", "enforced"),
        ("", "uniqueItems", "validated-after"),
        ("/items", "type", "enforced"),
    ]


def test_deep_allof_and_deep_enum_values_are_refused_cleanly() -> None:
    schema: Any = {"type": "string"}
    for _ in range(30_000):
        schema = {"allOf": [schema]}
    with pytest.raises(SchemaError, match="nested"):
        compile_schema(schema)
    value: Any = []
    for _ in range(30_000):
        value = [value]
    with pytest.raises(SchemaError, match="nested"):
        compile_schema({"enum": [value]})


@pytest.mark.parametrize(
    "items",
    [
        False,
        {"type": "string", "minLength": 5, "maxLength": 2},
        {"$ref": "#/$defs/never"},  # followed to another place: still this node's refusal
    ],
)
def test_items_that_must_admit_a_value_are_refused_not_compiled_out(items: Any) -> None:
    schema = {"type": "array", "items": items, "$defs": {"never": False}}
    out = compile_schema(schema)  # no item can exist: the array is always empty
    assert accepts(out, "[]") and not accepts(out, '["abcdef"]')
    with pytest.raises(SchemaError) as refused:
        compile(schema, must_admit=("/items",))
    # A plain SchemaError (an Unsatisfiable would be compiled out by the array), at the place.
    assert type(refused.value) is SchemaError
    assert refused.value.pointer in ("/items", "/$defs/never")
    assert f"(at {refused.value.pointer})" in str(refused.value)
    # Items that can exist compile exactly as without the option.
    fine = {"type": "array", "items": {"type": "string"}}
    assert compile(fine, must_admit=("/items",)).grammar == compile_schema(fine)
