"""The concise schema syntax: golden tables, exact error places, llm compatibility, round trips."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwenjson.dsl
from qwenjson.dsl import DRAFT_2020_12, DslError, parse_dsl, schema_to_dsl
from qwenjson.dsl.parser import _RANGE_ONLY
from qwenjson.errors import EXIT_SCHEMA, SchemaError
from qwenjson.fields import grounding_rules

S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741 (I is the integer schema here, not a lookalike of 1)


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema as parse_dsl writes one: every field required unless listed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def top(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"$schema": DRAFT_2020_12, **obj(properties, required)}


GOLDEN: list[tuple[str, dict[str, Any]]] = [
    # Digits with a leading zero are a code, as in JSON, not a number that loses its zeros.
    ("zip 007|008", top({"zip": {"type": "string", "enum": ["007", "008"]}})),
    ("born: date of birth", top({"born": S | {"description": "date of birth"}})),
    ("a: in [0, 1], b", top({"a": S | {"description": "in [0, 1]"}, "b": S})),
    # llm's forms
    ("name", top({"name": S})),
    ("name, age int", top({"name": S, "age": I})),
    (
        "name,age int,ok bool,x float,s str",
        top(
            {
                "name": S,
                "age": I,
                "ok": {"type": "boolean"},
                "x": {"type": "number"},
                "s": S,
            }
        ),
    ),
    (
        "name string, age integer, ok boolean, x number",
        top(
            {
                "name": S,
                "age": I,
                "ok": {"type": "boolean"},
                "x": {"type": "number"},
            }
        ),
    ),
    (
        "name: the name, age int: in years",
        top(
            {
                "name": {"type": "string", "description": "the name"},
                "age": {"type": "integer", "description": "in years"},
            }
        ),
    ),
    (
        "name: the name, in full\nage int: in years, rounded down",
        top(
            {
                "name": {"type": "string", "description": "the name, in full"},
                "age": {"type": "integer", "description": "in years, rounded down"},
            }
        ),
    ),
    ("\n  name\n\n  age int\n", top({"name": S, "age": I})),
    ("name,, age int,", top({"name": S, "age": I})),
    ("a\r\nb int\r\n", top({"a": S, "b": I})),
    # optional
    (
        "name, nickname?, age? int: if known",
        top(
            {"name": S, "nickname": S, "age": {"type": "integer", "description": "if known"}},
            ["name"],
        ),
    ),
    ("a?, b?", top({"a": S, "b": S}, [])),
    # ranges
    ("age int 0..150", top({"age": {"type": "integer", "minimum": 0, "maximum": 150}})),
    ("t float -1.5..2.5e3", top({"t": {"type": "number", "minimum": -1.5, "maximum": 2500.0}})),
    (
        "n int 1.., m int ..-1",
        top(
            {
                "n": {"type": "integer", "minimum": 1},
                "m": {"type": "integer", "maximum": -1},
            }
        ),
    ),
    ("score float 0..1", top({"score": {"type": "number", "minimum": 0, "maximum": 1}})),
    ("title str 1..80", top({"title": {"type": "string", "minLength": 1, "maxLength": 80}})),
    ("title 1..80", top({"title": {"type": "string", "minLength": 1, "maxLength": 80}})),
    ("code ..3: short", top({"code": {"type": "string", "maxLength": 3, "description": "short"}})),
    ("n int 5 .. 5", top({"n": {"type": "integer", "minimum": 5, "maximum": 5}})),
    # enums
    (
        "sentiment positive|neutral|negative",
        top({"sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]}}),
    ),
    ("stars 1|2|3", top({"stars": {"type": "integer", "enum": [1, 2, 3]}})),
    ("x 1|2.5", top({"x": {"type": "number", "enum": [1, 2.5]}})),
    (
        'kind "int"|"str"|"very good"|bad-ish|4k',
        top({"kind": {"type": "string", "enum": ["int", "str", "very good", "bad-ish", "4k"]}}),
    ),
    (
        "status open|closed|null",
        top({"status": {"type": ["string", "null"], "enum": ["open", "closed", None]}}),
    ),
    ("flag true|false", top({"flag": {"type": "boolean", "enum": [True, False]}})),
    (
        'x a|1|true|null|"null"',
        top(
            {
                "x": {
                    "type": ["string", "integer", "boolean", "null"],
                    "enum": ["a", 1, True, None, "null"],
                }
            }
        ),
    ),
    ('kind "person"', top({"kind": {"type": "string", "enum": ["person"]}})),
    # nullable
    ("nick str|null", top({"nick": {"type": ["string", "null"]}})),
    (
        "score float|null 0..1",
        top({"score": {"type": ["number", "null"], "minimum": 0, "maximum": 1}}),
    ),
    ("tags [str]|null", top({"tags": {"type": ["array", "null"], "items": S}})),
    ("a {b}|null", top({"a": {**obj({"b": S}), "type": ["object", "null"]}})),
    # nesting and lists
    (
        "address {street, city, zip? str 5..10}",
        top(
            {
                "address": obj(
                    {
                        "street": S,
                        "city": S,
                        "zip": {"type": "string", "minLength": 5, "maxLength": 10},
                    },
                    ["street", "city"],
                )
            }
        ),
    ),
    ("tags [str]", top({"tags": {"type": "array", "items": S}})),
    (
        "tags [str 1..20] ..10",
        top(
            {
                "tags": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": 20},
                    "maxItems": 10,
                }
            }
        ),
    ),
    (
        "people [{name, age int}] 1..",
        top(
            {
                "people": {
                    "type": "array",
                    "items": obj({"name": S, "age": I}),
                    "minItems": 1,
                }
            }
        ),
    ),
    ("m [[int]]", top({"m": {"type": "array", "items": {"type": "array", "items": I}}})),
    ("m [a|b]", top({"m": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}})),
    ("a{b{c int}}", top({"a": obj({"b": obj({"c": I})})})),
    # descriptions: where they end, and quoting
    (
        "a {b: one, c}: outer",
        top(
            {
                "a": {
                    **obj({"b": {"type": "string", "description": "one"}, "c": S}),
                    "description": "outer",
                },
            }
        ),
    ),
    (
        "a {b: see [1, 2] and {x}, c}",
        top(
            {
                "a": obj({"b": {"type": "string", "description": "see [1, 2] and {x}"}, "c": S}),
            }
        ),
    ),
    (
        "p [{name: full name}]",
        top(
            {
                "p": {
                    "type": "array",
                    "items": obj({"name": {"type": "string", "description": "full name"}}),
                },
            }
        ),
    ),
    # a one-line group inside a multi-line schema: its commas still separate fields
    (
        "name: full, in caps\naddress {street: with number, city}",
        top(
            {
                "name": {"type": "string", "description": "full, in caps"},
                "address": obj(
                    {"street": {"type": "string", "description": "with number"}, "city": S}
                ),
            }
        ),
    ),
    # a group over several lines: commas are text in its descriptions
    (
        "person {\n  name: full name, as written\n  age int\n}, id int",
        top(
            {
                "person": obj(
                    {"name": {"type": "string", "description": "full name, as written"}, "age": I}
                ),
                "id": I,
            }
        ),
    ),
    (
        "people [\n  {name, age int}\n]",
        top(
            {
                "people": {"type": "array", "items": obj({"name": S, "age": I})},
            }
        ),
    ),
    (
        'bio: "short, funny", age int',
        top(
            {
                "bio": {"type": "string", "description": "short, funny"},
                "age": I,
            }
        ),
    ),
    ('q: "say \\"hi\\"\\n"', top({"q": {"type": "string", "description": 'say "hi"\n'}})),
    (
        "a: it's 5.5\" wide, b",
        top({"a": {"type": "string", "description": "it's 5.5\" wide"}, "b": S}),
    ),
    ("a: int or float", top({"a": {"type": "string", "description": "int or float"}})),
    (
        "url: e.g. https://x.org/a?b=1",
        top({"url": {"type": "string", "description": "e.g. https://x.org/a?b=1"}}),
    ),
    # names: any script, hyphens, digits, quoted
    (
        "姓名: 全名, 年龄 int 0..150: 周岁",
        top(
            {
                "姓名": {"type": "string", "description": "全名"},
                "年龄": {"type": "integer", "minimum": 0, "maximum": 150, "description": "周岁"},
            }
        ),
    ),
    # full-width punctuation from Chinese input methods
    (
        "姓名：全名，昵称？，年龄 int",
        top(
            {"姓名": {"type": "string", "description": "全名"}, "昵称": S, "年龄": I},
            ["姓名", "年龄"],
        ),
    ),
    (
        "नाम, café, first-name, _id, 2nd_place, 2024",
        top({"नाम": S, "café": S, "first-name": S, "_id": S, "2nd_place": S, "2024": S}),
    ),
    (
        '"first name", "a,b": c, "": empty name',
        top(
            {
                "first name": S,
                "a,b": {"type": "string", "description": "c"},
                "": {"type": "string", "description": "empty name"},
            }
        ),
    ),
    ("int int, null, str? str", top({"int": I, "null": S, "str": S}, ["int", "null"])),
    ("\u3000name\tint", top({"name": I})),
    # string formats
    (
        "born date, at? datetime, t time, mail email, site url, home uri, id uuid, x date-time",
        top(
            {
                "born": {"type": "string", "format": "date"},
                "at": {"type": "string", "format": "date-time"},
                "t": {"type": "string", "format": "time"},
                "mail": {"type": "string", "format": "email"},
                "site": {"type": "string", "format": "uri"},
                "home": {"type": "string", "format": "uri"},
                "id": {"type": "string", "format": "uuid"},
                "x": {"type": "string", "format": "date-time"},
            },
            ["born", "t", "mail", "site", "home", "id", "x"],
        ),
    ),
    ("d date|null", top({"d": {"type": ["string", "null"], "format": "date"}})),
    (
        "ds [date] 1..",
        top(
            {"ds": {"type": "array", "items": {"type": "string", "format": "date"}, "minItems": 1}}
        ),
    ),
    # a format name followed by '|' and a word is an enum of words
    (
        "contact email|phone|post",
        top({"contact": {"type": "string", "enum": ["email", "phone", "post"]}}),
    ),
    ("k a|date|url", top({"k": {"type": "string", "enum": ["a", "date", "url"]}})),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN, ids=[t for t, _ in GOLDEN])
def test_golden(text: str, expected: dict[str, Any]) -> None:
    schema = parse_dsl(text)
    assert schema == expected
    # Dict equality ignores order; property order must follow the text.
    assert list(schema["properties"]) == list(expected["properties"])
    jsonschema.Draft202012Validator.check_schema(schema)
    # The inverse renders every schema the parser makes, and it parses back the same.
    rendered = schema_to_dsl(schema)
    assert rendered is not None
    assert parse_dsl(rendered) == schema


def test_the_schema_means_what_the_docs_say() -> None:
    v = jsonschema.Draft202012Validator(
        parse_dsl("name, nickname? str 1..20, age int 0..150, tags [a|b] ..2, home {city}|null")
    )
    good = {"name": "Ann", "age": 3, "tags": ["a"], "home": None}
    assert v.is_valid(good)
    assert v.is_valid({**good, "nickname": "A", "home": {"city": "Oslo"}})
    for bad in (
        {**good, "extra": 1},  # additionalProperties false
        {k: v for k, v in good.items() if k != "age"},  # required
        {**good, "age": 151},
        {**good, "age": 1.5},
        {**good, "nickname": ""},
        {**good, "tags": ["a", "b", "a"]},
        {**good, "tags": ["c"]},
        {**good, "home": {"city": "Oslo", "zip": "1"}},
    ):
        assert not v.is_valid(bad), bad


# (text, the whole message): problem, place, the line, and a caret under the place.
ERRORS: list[tuple[str, str]] = [
    ("", "empty schema: expected fields such as 'name, age int' at column 1\n\n^"),
    (" \n ", "empty schema: expected fields such as 'name, age int' at line 1, column 1\n \n^"),
    (
        "name, age int ..",
        "expected a number after '..' at column 17\nname, age int ..\n" + " " * 16 + "^",
    ),
    (
        "name, age: int",
        "'int' after ':' would be a description, not a type: write 'age int' "
        "for a typed field, or quote the description at column 12\nname, age: int\n"
        + " " * 11
        + "^",
    ),
    (
        "age int 0..150 years",
        "expected ',' or a line break after field 'age', found 'years' "
        "at column 16\nage int 0..150 years\n" + " " * 15 + "^",
    ),
    ("a {b, c", "expected '}' to close the object at column 8\na {b, c\n       ^"),
    (
        "{a}",
        "expected a field name, found '{' (the top level is already an object: write "
        "'a, b int', not '{a, b int}') at column 1\n{a}\n^",
    ),
    (
        "a int|str",
        "only 'null' can follow '|' after a type (for an enum, quote the values) "
        "at column 7\na int|str\n      ^",
    ),
    (
        "mood happy|int",
        "'int' is a type name; quote it to use it as an enum value at column 12"
        "\nmood happy|int\n           ^",
    ),
    (
        "age integr",
        "unknown type 'integr': use str int float bool date time datetime email uri uuid, "
        "{…}, [type], or a|b|c for an enum at column 5\nage integr\n    ^",
    ),
    (
        "age int 5",
        "expected '..' after 5 (a range is written lo..hi) at column 10\nage int 5\n         ^",
    ),
    ("age int 150..0", "empty range: 150 is more than 0 at column 9\nage int 150..0\n        ^"),
    (
        "age int 1.5..2",
        "a range on integer needs integer bounds at column 9\nage int 1.5..2\n        ^",
    ),
    (
        "name str -1..5",
        "a length range on string can't be negative at column 10\nname str -1..5\n         ^",
    ),
    ("ok bool 0..1", "a range can't apply to boolean at column 9\nok bool 0..1\n        ^"),
    ("d date 1..2", "a range can't apply to date at column 8\nd date 1..2\n       ^"),
    (
        "c email|null|phone",
        "a type can only be combined with null; for an enum, quote the values: "
        '"email"|null|… at column 13\nc email|null|phone\n            ^',
    ),
    ("mood a|b 1..2", "a range can't apply to an enum at column 10\nmood a|b 1..2\n         ^"),
    ("a, a int", "duplicate field name 'a' at column 4\na, a int\n   ^"),
    (
        "s str derived",
        "'derived' follows int, float or date only (a string the model writes itself is "
        "'text') at column 7\ns str derived\n      ^",
    ),
    (
        "e email derived",
        "'derived' follows int, float or date only at column 9\ne email derived\n        ^",
    ),
    (
        "b bool derived",
        "'derived' follows int, float or date only at column 8\nb bool derived\n       ^",
    ),
    (
        "l [int] derived",
        "'derived' follows int, float or date only at column 9\nl [int] derived\n        ^",
    ),
    (
        "n int 0.. derived",
        "'derived' goes right after int, float or date and their '|null', before a range: "
        "n int|null derived 0.. at column 11\nn int 0.. derived\n          ^",
    ),
    ("m a|b|a", "duplicate enum value a at column 7\nm a|b|a\n      ^"),
    ("tags []", "expected a type inside '[ ]', such as [str] at column 7\ntags []\n      ^"),
    ("tags [str", "expected ']', found the end at column 10\ntags [str\n         ^"),
    ("nick str?", "'?' goes right after the field name: nick? … at column 9\nnick str?\n        ^"),
    ("a:", "expected a description after ':' at column 3\na:\n  ^"),
    ("a:, b", "expected a description after ':' at column 3\na:, b\n  ^"),
    ('a "b', 'unterminated string (a closing " is missing) at column 3\na "b\n  ^'),
    ('a: "\\q"', 'bad escape in string: Invalid \\escape at column 5\na: "\\q"\n    ^'),
    ("a @", "unexpected character '@' at column 3\na @\n  ^"),
    ("a 1.5x", "unexpected character 'x' after a number at column 6\na 1.5x\n     ^"),
    ("a 1.2.3", "unexpected '.' (a range is written lo..hi) at column 6\na 1.2.3\n     ^"),
    (
        "a 5",
        "expected a type, found 5; an enum needs two values (a|b), and one allowed value is "
        'written in quotes ("5") at column 3\na 5\n  ^',
    ),
    (
        "a null",
        "expected a type, found null; an enum needs two values (a|b), and one allowed value is "
        'written in quotes ("null") at column 3\na null\n  ^',
    ),
    ("a ..x", "expected a number after '..' at column 5\na ..x\n    ^"),
    (
        'a: "x" y',
        "expected ',' or a line break after field 'a', found 'y' at column 8\na: \"x\" y\n       ^",
    ),
    (
        "p {a int b}",
        "expected ',', a line break or '}' after field 'a', found 'b' at column 10"
        "\np {a int b}\n         ^",
    ),
    ("p {}", "expected at least one field at column 4\np {}\n   ^"),
    ("a [str}", "expected ']', found '}' at column 7\na [str}\n      ^"),
    (
        "name\nage int 0..\nbio: x, y\naddr {street\n",
        "expected '}' to close the object at line 4, column 13\naddr {street\n            ^",
    ),
    (
        "name\n  age int ..",
        "expected a number after '..' at line 2, column 13\n  age int ..\n" + " " * 12 + "^",
    ),
    # A bracket a one-line description leaves open would hide the fields after it.
    (
        "score float: in [0, 1), label, page int",
        "'[' is not closed in this description (which would run to the end of the line): close "
        'it, or quote the description ("…") at column 17\n'
        "score float: in [0, 1), label, page int\n" + " " * 16 + "^",
    ),
    # A type written after ':' is a mistake, not a description ("born: date of birth" is one).
    *(
        (
            f"{name}: {typed}",
            f"{typed!r} after ':' would be a description, not a type: write '{name} {typed}' "
            f"for a typed field, or quote the description at column {len(name) + 3}\n"
            f"{name}: {typed}\n" + " " * (len(name) + 2) + "^",
        )
        for name, typed in (
            ("age", "int 0..150"),
            ("age", "int|null"),
            ("born", "date"),
            ("tags", "[str]"),
            ("x", "text"),
        )
    ),
    (
        "a int -007..5",
        "number -007 has a leading zero (quote it as text) at column 7\na int -007..5\n      ^",
    ),
    (
        "x int 0.." + "9" * 5000,
        "number 99999999999999999999… has too many digits at column 10\nx int 0.."
        + "9" * 5000
        + "\n"
        + " " * 9
        + "^",
    ),
    ('a "\\ud800"', 'a lone surrogate (a schema must be UTF-8 text) at column 3\na "\\ud800"\n  ^'),
    # A CRLF line's carriage return is not a column of its own.
    (
        "a int|\r\nb",
        "only 'null' can follow '|' after a type (for an enum, quote the values) "
        "at line 1, column 7\na int|\n      ^",
    ),
    # Wide characters take two cells: the caret still lands under the mistake.
    (
        "姓名, 年龄 integr",
        "unknown type 'integr': use str int float bool date time datetime email uri uuid, "
        "{…}, [type], or a|b|c for an enum at column 8\n姓名, 年龄 integr\n" + " " * 11 + "^",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[t[:60] for t, _ in ERRORS])
def test_errors_point_at_the_place(text: str, message: str) -> None:
    with pytest.raises(DslError) as info:
        parse_dsl(text)
    assert str(info.value) == message
    err = info.value
    assert isinstance(err, SchemaError) and err.exit_code == EXIT_SCHEMA
    # line and column agree with the message
    first = message.splitlines()[0]
    assert first.endswith(
        f"at line {err.line}, column {err.column}" if "\n" in text else f"at column {err.column}"
    )


def test_nesting_depth_is_bounded() -> None:
    with pytest.raises(DslError) as info:
        parse_dsl("a " + "[" * 70 + "str" + "]" * 70)
    assert info.value.problem == f"nested more than {qwenjson.dsl.MAX_DEPTH} levels deep"
    assert info.value.column == 3 + qwenjson.dsl.MAX_DEPTH
    deep = "a " + "[" * qwenjson.dsl.MAX_DEPTH + "str" + "]" * qwenjson.dsl.MAX_DEPTH
    jsonschema.Draft202012Validator.check_schema(parse_dsl(deep))


# --- compatibility with llm's concise syntax ---------------------------------------------------


def without_our_additions(schema: Any) -> Any:
    """Drop what parse_dsl adds to llm's output: $schema and additionalProperties: false."""
    if isinstance(schema, dict):
        return {
            k: without_our_additions(v)
            for k, v in schema.items()
            if k not in ("$schema", "additionalProperties")
        }
    return schema


def llm_like(*fields: tuple[str, str, str | None]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, json_type, description in fields:
        props[name] = {"type": json_type}
        if description is not None:
            props[name]["description"] = description
    return {"type": "object", "properties": props, "required": list(props)}


PEOPLE = """
name: the person's name
organization: who they represent
role: their job title or role
learned: what we learned about them from this story
article_headline: the headline of the story
article_date: the publication date in YYYY-MM-DD
"""

# The examples in llm's docs/schemas.md, with the JSON Schema the docs say each one means.
LLM_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    (
        "name, age int, one_sentence_bio",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "one_sentence_bio": {"type": "string"},
            },
            "required": ["name", "age", "one_sentence_bio"],
        },
    ),
    (
        "name, age int",
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
    ),
    ("name,age int", llm_like(("name", "string", None), ("age", "integer", None))),
    ("name, bio", llm_like(("name", "string", None), ("bio", "string", None))),
    (
        "name, bio, age int",
        llm_like(("name", "string", None), ("bio", "string", None), ("age", "integer", None)),
    ),
    ("name, ten_word_bio", llm_like(("name", "string", None), ("ten_word_bio", "string", None))),
    (
        "name: the person's name, age int: their age, bio: a short bio",
        llm_like(
            ("name", "string", "the person's name"),
            ("age", "integer", "their age"),
            ("bio", "string", "a short bio"),
        ),
    ),
    (
        "name: the person's name\nage int: their age\nbio: a short bio, no more than three "
        "sentences",
        llm_like(
            ("name", "string", "the person's name"),
            ("age", "integer", "their age"),
            ("bio", "string", "a short bio, no more than three sentences"),
        ),
    ),
    (
        PEOPLE,
        llm_like(
            ("name", "string", "the person's name"),
            ("organization", "string", "who they represent"),
            ("role", "string", "their job title or role"),
            ("learned", "string", "what we learned about them from this story"),
            ("article_headline", "string", "the headline of the story"),
            ("article_date", "string", "the publication date in YYYY-MM-DD"),
        ),
    ),
    ("x float, y bool", llm_like(("x", "number", None), ("y", "boolean", None))),
]


@pytest.mark.parametrize(("text", "expected"), LLM_EXAMPLES, ids=[t for t, _ in LLM_EXAMPLES])
def test_llm_examples_mean_the_same(text: str, expected: dict[str, Any]) -> None:
    schema = parse_dsl(text)
    assert without_our_additions(schema) == expected
    assert list(schema["properties"]) == list(expected["properties"])


def test_module_docstring_examples_parse() -> None:
    doc = qwenjson.dsl.__doc__
    assert doc is not None
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in block.splitlines()]
    assert len(lines) >= 8
    for line in lines:
        jsonschema.Draft202012Validator.check_schema(parse_dsl(line))


# --- schema_to_dsl on schemas outside the syntax -----------------------------------------------

NOT_REPRESENTABLE: list[Any] = [
    [],
    {"type": "array", "items": S},
    {"type": "object", "properties": {"a": S}, "required": ["a"]},  # open object
    {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
    obj({"a": S}, ["b"]),
    {**obj({"a": S, "b": S}), "required": ["b", "a"]},  # required out of property order
    obj({"a": {"type": "string", "format": "hostname"}}),
    obj({"a": {"type": "string", "format": "date", "maxLength": 10}}),
    obj({"a": {"type": "integer", "format": "date"}}),
    obj({"a": {"type": "string", "pattern": "x"}}),
    obj({"a": {"type": "integer", "minimum": 0.5}}),
    obj({"a": {"type": "string", "minLength": 5, "maxLength": 1}}),
    obj({"a": {"type": "number", "exclusiveMinimum": 0}}),
    obj({"a": {"type": ["string", "integer"]}}),
    obj({"a": {"type": ["null", "string"]}}),
    obj({"a": {"enum": ["x", "y"]}}),  # enum without its type
    obj({"a": {"type": "integer", "enum": ["x", "y"]}}),
    obj({"a": {"type": "integer", "enum": [1]}}),  # one value that isn't a string
    obj({"a": {"type": "string", "enum": ["x", "x"]}}),
    obj({"a": {"type": "array", "items": {"type": "string", "description": "d"}}}),
    obj({"a": {"type": "array"}}),
    obj({"a": {"anyOf": [S, I]}}),
    obj({"a": {"$ref": "#/$defs/x"}}),
    obj({"a": {"type": "string", "description": 5}}),
    obj({"a": {"type": "object"}}),
    {"$schema": "http://json-schema.org/draft-07/schema#", **obj({"a": S})},
]


@pytest.mark.parametrize(
    "schema", NOT_REPRESENTABLE, ids=[str(i) for i in range(len(NOT_REPRESENTABLE))]
)
def test_schema_to_dsl_declines_what_it_cannot_say(schema: Any) -> None:
    assert schema_to_dsl(schema) is None


def test_schema_to_dsl_renders_llm_shapes_with_additional_properties() -> None:
    assert schema_to_dsl(obj({"name": S, "age": I})) == "name, age int"
    assert schema_to_dsl(obj({"a": {"type": "string", "description": "x, y"}, "b": S})) == (
        "a: x, y\nb"
    )
    assert schema_to_dsl(obj({"a": {"type": "string", "description": "x, y"}})) == 'a: "x, y"'


# --- round trip: random field specs → DSL text → parse == the schema built directly -----------


@dataclass(frozen=True)
class Prim:
    kind: str  # "string", "integer", "number", "boolean"
    low: int | float | None = None
    high: int | float | None = None
    nullable: bool = False
    grounded: bool | None = None  # "x-grounded": text/quote on strings, derived on numbers


@dataclass(frozen=True)
class Format:
    name: str  # the DSL name
    nullable: bool = False
    derived: bool = False  # dates only


@dataclass(frozen=True)
class Enum:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class List:
    item: Any
    low: int | None = None
    high: int | None = None
    nullable: bool = False


@dataclass(frozen=True)
class Obj:
    fields: tuple[Field, ...]
    nullable: bool = False


@dataclass(frozen=True)
class Field:
    name: str
    optional: bool
    type: Any  # None means the default, str
    description: str | None = field(default=None)


SHORT = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
RANGE_KEYS = {
    "integer": ("minimum", "maximum"),
    "number": ("minimum", "maximum"),
    "string": ("minLength", "maxLength"),
}


def build(spec: Any) -> dict[str, Any]:
    """The JSON Schema a spec means, written out independently of the parser."""
    if isinstance(spec, Prim):
        schema: dict[str, Any] = {"type": [spec.kind, "null"] if spec.nullable else spec.kind}
        keys = RANGE_KEYS.get(spec.kind)
        if keys and spec.low is not None:
            schema[keys[0]] = spec.low
        if keys and spec.high is not None:
            schema[keys[1]] = spec.high
        if spec.grounded is not None:
            schema["x-grounded"] = spec.grounded
        return schema
    if isinstance(spec, Format):
        fmt = FORMATS[spec.name]
        schema = {"type": ["string", "null"] if spec.nullable else "string", "format": fmt}
        return {**schema, "x-grounded": False} if spec.derived else schema
    if isinstance(spec, Enum):
        types: list[str] = []
        for v in spec.values:
            t = {
                type(None): "null",
                bool: "boolean",
                int: "integer",
                float: "number",
                str: "string",
            }[type(v)]
            if t not in types:
                types.append(t)
        if "integer" in types and "number" in types:
            types.remove("integer")
        return {"type": types[0] if len(types) == 1 else types, "enum": list(spec.values)}
    if isinstance(spec, List):
        schema = {
            "type": ["array", "null"] if spec.nullable else "array",
            "items": build(spec.item),
        }
        if spec.low is not None:
            schema["minItems"] = spec.low
        if spec.high is not None:
            schema["maxItems"] = spec.high
        return schema
    assert isinstance(spec, Obj)
    schema = obj({}, [])
    for f in spec.fields:
        sub = {"type": "string"} if f.type is None else build(f.type)
        if f.description is not None:
            sub["description"] = f.description
        schema["properties"][f.name] = sub
        if not f.optional:
            schema["required"].append(f.name)
    if spec.nullable:
        schema["type"] = ["object", "null"]
    return schema


ASCII_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SAFE_RAW = re.compile(r"[A-Za-z0-9'.()]([A-Za-z0-9 '.()-]*[A-Za-z0-9'.()])?")
KEYWORDS = {"str", "int", "float", "bool", "string", "integer", "number", "boolean"}
FORMATS = {
    "date": "date",
    "time": "time",
    "datetime": "date-time",
    "date-time": "date-time",
    "email": "email",
    "uri": "uri",
    "url": "uri",
    "uuid": "uuid",
}


def render_range(low: Any, high: Any) -> str:
    if low is None and high is None:
        return ""
    return " " + ("" if low is None else repr(low)) + ".." + ("" if high is None else repr(high))


def render(spec: Any, data: st.DataObject, multi_line: bool) -> str:
    """DSL text for a spec, in styles drawn at random (aliases, spacing, quoting, layout)."""
    if isinstance(spec, Prim):
        name = data.draw(st.sampled_from([SHORT[spec.kind], spec.kind]))
        if spec.kind == "string" and spec.grounded is not None:
            name = "quote" if spec.grounded else "text"
        text = name + ("|null" if spec.nullable else "")
        if spec.kind != "string" and spec.grounded is False:
            text += " derived"
        return text + render_range(spec.low, spec.high)
    if isinstance(spec, Format):
        return spec.name + ("|null" if spec.nullable else "") + (" derived" if spec.derived else "")
    if isinstance(spec, Enum):
        if len(spec.values) == 1:
            return json.dumps(spec.values[0])
        out = []
        for v in spec.values:
            if isinstance(v, str):
                reserved = KEYWORDS | set(FORMATS) | {"null", "true", "false"}
                bare = ASCII_WORD.fullmatch(v) and v not in reserved
                out.append(v if bare and data.draw(st.booleans()) else json.dumps(v))
            else:
                out.append(json.dumps(v) if not isinstance(v, float) else repr(v))
        return "|".join(out)
    if isinstance(spec, List):
        text = "[" + render(spec.item, data, False) + "]" + ("|null" if spec.nullable else "")
        return text + render_range(spec.low, spec.high)
    assert isinstance(spec, Obj)
    block = multi_line and data.draw(st.booleans())
    fields = [render_field(f, data, block) for f in spec.fields]
    body = ("{\n  " + "\n  ".join(fields) + "\n}") if block else "{" + ", ".join(fields) + "}"
    return body + ("|null" if spec.nullable else "")


def render_field(f: Field, data: st.DataObject, multi_line: bool) -> str:
    bare = ASCII_WORD.fullmatch(f.name) or re.fullmatch("[\u4e00-\u9fff]+", f.name)
    text = (
        f.name
        if bare and data.draw(st.booleans())
        else quoted(f.name, ascii_only=data.draw(st.booleans()))
    )
    if f.optional:
        text += data.draw(st.sampled_from(["?", "？"]))
    if f.type is not None:
        text += " " + render(f.type, data, multi_line)
    elif data.draw(st.booleans()):
        text += " str"
    if f.description is not None:
        d = f.description
        raw_ok = (
            (SAFE_RAW.fullmatch(d.replace(",", "")) and (multi_line or "," not in d))
            # A type, format or grounding word first may read as a type written after ':'.
            and d.split(" ")[0] not in KEYWORDS | set(FORMATS) | {"text", "quote", "derived"}
            and not d.startswith(",")
            and not d.endswith(",")
            # A range alone after ':' is refused as a misplaced range ("0.."): quoted, it's text.
            and not _RANGE_ONLY.fullmatch(d.strip())
        )
        text += ": " + (d if raw_ok and data.draw(st.booleans()) else json.dumps(d))
    return text


def quoted(text: str, *, ascii_only: bool) -> str:
    """``text`` as a JSON string, its control characters escaped (the syntax refuses them raw:
    ``json.dumps`` leaves DEL, the C1 controls and U+2028/9 as they are)."""
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in json.dumps(text, ensure_ascii=ascii_only)
    )


names = st.one_of(
    st.from_regex(ASCII_WORD, fullmatch=True).filter(lambda s: len(s) <= 12),
    st.text(alphabet="姓名年龄地址电话", min_size=1, max_size=4),
    st.text(max_size=8),
)
descriptions = st.one_of(
    st.from_regex(r"[a-z]{1,6}( [a-z]{1,6}){0,3}(, [a-z]{1,6})?", fullmatch=True),
    st.text(max_size=20),
)


def ordered(bounds: tuple[Any, Any]) -> tuple[Any, Any]:
    """Put both bounds of a range in order (an open end stays where it is)."""
    low, high = bounds
    return (high, low) if low is not None and high is not None and low > high else (low, high)


finite = st.floats(allow_nan=False, allow_infinity=False)
big = st.integers(-(10**12), 10**12)
ranges_int = st.tuples(st.none() | big, st.none() | big).map(ordered)
ranges_len = st.tuples(st.none() | st.integers(0, 500), st.none() | st.integers(0, 500)).map(
    ordered
)
ranges_num = st.tuples(st.none() | finite | st.integers(-50, 50), st.none() | finite).map(ordered)


def enum_values(values: list[Any]) -> bool:
    keys = [(type(v).__name__, v) for v in values]
    return len(set(keys)) == len(keys) and (len(values) > 1 or isinstance(values[0], str))


enums = (
    st.lists(
        st.one_of(
            st.from_regex(r"[a-z][a-z0-9-]{0,6}[a-z0-9]", fullmatch=True),
            st.text(max_size=6),
            st.integers(-1000, 1000),
            finite,
            st.sampled_from([None, True, False]),
        ),
        min_size=1,
        max_size=5,
    )
    .filter(enum_values)
    .map(lambda vs: Enum(tuple(vs)))
)

derived = st.sampled_from([None, False])
prims = st.one_of(
    st.builds(
        lambda r, n, g: Prim("integer", r[0], r[1], n, g), ranges_int, st.booleans(), derived
    ),
    st.builds(lambda r, n, g: Prim("number", r[0], r[1], n, g), ranges_num, st.booleans(), derived),
    st.builds(
        lambda r, n, g: Prim("string", r[0], r[1], n, g),
        ranges_len,
        st.booleans(),
        st.sampled_from([None, False, True]),
    ),
    st.builds(lambda n: Prim("boolean", nullable=n), st.booleans()),
    st.builds(Format, st.sampled_from(sorted(FORMATS)), st.booleans()),
    st.builds(lambda n: Format("date", n, derived=True), st.booleans()),
)


def fields_of(types: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Field, ...]]:
    return st.lists(
        st.builds(Field, names, st.booleans(), st.none() | types, st.none() | descriptions),
        min_size=1,
        max_size=5,
        unique_by=lambda f: f.name,
    ).map(tuple)


types = st.recursive(
    prims | enums,
    lambda inner: st.one_of(
        st.builds(lambda i, r, n: List(i, r[0], r[1], n), inner, ranges_len, st.booleans()),
        st.builds(Obj, fields_of(inner), st.booleans()),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(fields=fields_of(types), data=st.data())
def test_round_trip(fields: tuple[Field, ...], data: st.DataObject) -> None:
    expected = {"$schema": DRAFT_2020_12, **build(Obj(fields))}
    multi_line = len(fields) > 1 and data.draw(st.booleans())
    rendered = [render_field(f, data, multi_line) for f in fields]
    text = (
        "\n".join(rendered)
        if multi_line
        else data.draw(st.sampled_from([", ", ",", " , "])).join(rendered)
    )
    assert parse_dsl(text) == expected, text
    jsonschema.Draft202012Validator.check_schema(expected)
    # and through the inverse
    again = schema_to_dsl(expected)
    assert again is not None
    assert parse_dsl(again) == expected, again


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=' ,:?|{}[]\n.-"\\0123abcint姓名，：？', max_size=30))
def test_any_text_parses_or_fails_with_a_place(text: str) -> None:
    try:
        schema = parse_dsl(text)
    except DslError as err:
        assert 1 <= err.line <= text.count("\n") + 1
        assert 1 <= err.column <= len(err.source_line) + 1
        return
    jsonschema.Draft202012Validator.check_schema(schema)
    rendered = schema_to_dsl(schema)
    assert rendered is not None
    assert parse_dsl(rendered) == schema


# --- through the compiler onto llama.cpp's grammar engine --------------------------------------

# (concise schema, documents that must be accepted, documents the grammar must refuse)
ENFORCED: list[tuple[str, list[Any], list[Any]]] = [
    (
        "name, age int 0..150, nick? str 1..5",
        [{"name": "Ann", "age": 0}, {"name": "", "age": 150, "nick": "A"}],
        [
            {"name": "Ann"},  # required
            {"name": "Ann", "age": 151},
            {"name": "Ann", "age": -1},
            {"name": "Ann", "age": 3, "nick": ""},
            {"name": "Ann", "age": 3, "nick": "abcdef"},
            {"name": "Ann", "age": 3, "x": 1},  # additionalProperties
        ],
    ),
    (
        "sentiment positive|neutral|negative, score 1|2|3|null",
        [{"sentiment": "neutral", "score": 2}, {"sentiment": "positive", "score": None}],
        [{"sentiment": "happy", "score": 2}, {"sentiment": "neutral", "score": 4}],
    ),
    (
        "people [{name, age int|null}] 1..2, tags [str]",
        [
            {"people": [{"name": "A", "age": None}], "tags": []},
            {"people": [{"name": "A", "age": 1}, {"name": "B", "age": 2}], "tags": ["x"]},
        ],
        [
            {"people": [], "tags": []},
            {"people": [{"name": "A", "age": 1}] * 3, "tags": []},
            {"people": [{"name": "A"}], "tags": []},
            {"people": [{"name": "A", "age": 1}], "tags": [1]},
        ],
    ),
    (
        "born date, site? url",
        [{"born": "2024-02-29"}, {"born": "1999-12-31", "site": "https://example.org/a"}],
        [{"born": "29/02/2024"}, {"born": "2024-13-01"}, {"born": "2024-01-01", "site": "x y"}],
    ),
    (
        "姓名：全名，地址 {省, 市}: 住址",
        [{"姓名": "张三", "地址": {"省": "广东", "市": "深圳"}}],
        [{"姓名": "张三", "地址": {"省": "广东"}}, {"姓名": 1, "地址": {"省": "a", "市": "b"}}],
    ),
]


@pytest.mark.parametrize(("text", "valid", "invalid"), ENFORCED, ids=[t for t, _, _ in ENFORCED])
def test_the_grammar_enforces_the_concise_schema(
    grammar_engine: Any, text: str, valid: list[Any], invalid: list[Any]
) -> None:
    from qwenjson.schema import compile_schema
    from qwenjson.validate import make_validator
    from tests.grammar_engine import canonical_json

    schema = parse_dsl(text)
    grammar = compile_schema(schema)
    validator = make_validator(schema)  # qwenjson's own: it asserts format
    for document in valid:
        assert validator.is_valid(document)
        assert grammar_engine.accepts(grammar, canonical_json(document, schema)), document
    for document in invalid:
        assert not validator.is_valid(document)
        assert not grammar_engine.accepts(grammar, canonical_json(document, schema)), document


@settings(max_examples=60, deadline=None)
@given(fields=fields_of(types))
def test_every_concise_schema_compiles_to_a_grammar_llama_cpp_parses(
    grammar_engine: Any, fields: tuple[Field, ...]
) -> None:
    from qwenjson.schema import compile_schema

    schema = {"$schema": DRAFT_2020_12, **build(Obj(fields))}
    assert grammar_engine.grammar_error(compile_schema(schema)) is None


def test_text_and_quote_say_how_extract_writes_a_string() -> None:
    schema = parse_dsl("summary text, code quote 1..20, kind text|image, tags [quote]")
    assert isinstance(schema, dict)
    props = schema["properties"]
    assert props["summary"] == {"type": "string", "x-grounded": False}
    assert props["code"] == {"type": "string", "x-grounded": True, "minLength": 1, "maxLength": 20}
    assert props["kind"] == {"type": "string", "enum": ["text", "image"]}
    assert props["tags"]["items"] == {"type": "string", "x-grounded": True}
    # and back: the renderer says them with the same words (and quotes them as enum values)
    again = 'summary text, code quote 1..20, kind "text"|image, tags [quote]'
    assert schema_to_dsl(schema) == again


def test_derived_marks_a_number_or_date_the_model_works_out() -> None:
    text = "n int derived 0.., total float|null derived, due date derived, derived? int"
    schema = parse_dsl(text)
    assert isinstance(schema, dict)
    props = schema["properties"]
    assert props["n"] == {"type": "integer", "x-grounded": False, "minimum": 0}
    assert props["total"] == {"type": ["number", "null"], "x-grounded": False}
    assert props["due"] == {"type": "string", "format": "date", "x-grounded": False}
    assert props["derived"] == {"type": "integer"}  # only a marker after a type
    assert schema_to_dsl(schema) == text
    # and extract reads it: those values need no source in the text
    rules = grounding_rules(schema)
    assert [rules[(name,)].grounded for name in props] == [False, False, False, True]
    # what the syntax can't say is not rendered
    unsayable = [
        {"type": "integer", "x-grounded": True},
        {"type": "string", "format": "email", "x-grounded": False},
        {"type": "boolean", "x-grounded": False},
        {"type": "array", "items": {"type": "string"}, "x-grounded": False},
        {"type": "string", "x-grounded": None},  # not dropped: the syntax says true or false
    ]
    for sub in unsayable:
        assert schema_to_dsl(obj({"a": sub})) is None, sub


@pytest.mark.parametrize(
    "text",
    [
        "person {title: Mr., Mrs., Dr. etc., age int 0..150}",
        "p {title: Mr, Mrs; or Ms, age int}",
        'a {b: say "x, y", c}',
    ],
)
def test_a_one_line_group_whose_description_hides_a_comma_is_refused(text: str) -> None:
    # Read as a multi-line group, the description swallowed `age` and extract exited 0.
    with pytest.raises(DslError, match="ends at the next comma") as e:
        parse_dsl(text)
    assert e.value.line == 1


def test_a_multi_line_group_keeps_its_descriptions_to_the_end_of_the_line() -> None:
    got = parse_dsl("p {title: Mr., Mrs.\n age int}")
    assert got["properties"]["p"] == obj({"title": {**S, "description": "Mr., Mrs."}, "age": I})


def test_an_error_not_after_a_description_gets_no_comma_hint() -> None:
    with pytest.raises(DslError) as e:
        parse_dsl("a {b: x}, c.d")
    assert "comma" not in e.value.problem


@pytest.mark.parametrize(("text", "dup"), [("a 1|1.0", "1.0"), ("a 1e2|100", "100")])
def test_numbers_equal_as_json_are_one_enum_value(text: str, dup: str) -> None:
    with pytest.raises(DslError, match=f"duplicate enum value {re.escape(dup)}"):
        parse_dsl(text)
    assert parse_dsl("a 1|true")["properties"]["a"]["enum"] == [1, True]


@pytest.mark.parametrize(
    ("text", "hint"),
    [("due: date?", "due? date"), ("a: str?", "a? str"), ("到期：date？", "到期? date")],
)
def test_the_typed_field_hint_parses(text: str, hint: str) -> None:
    with pytest.raises(DslError, match=re.escape(f"write '{hint}'")):
        parse_dsl(text)
    assert parse_dsl(hint)["required"] == []


def test_an_inline_schema_with_a_bom_reads_as_its_file_does() -> None:
    from qwenjson.validate import load_schema

    assert load_schema("\ufeffname, age int") == parse_dsl("name, age int")
    assert load_schema('\ufeff{"type": "object"}') == {"type": "object"}


@pytest.mark.parametrize("text", ["a float 1e-400..", "a 1e-400|2", "a float ..-5e-330"])
def test_a_number_too_small_for_a_double_is_refused_not_read_as_zero(text: str) -> None:
    # `a float 1e-400..` allowed 0, which its lower bound says it doesn't.
    with pytest.raises(DslError, match="too small for a double"):
        parse_dsl(text)
    assert parse_dsl("a float 0e5..")["properties"]["a"]["minimum"] == 0


def test_a_group_over_lines_leaves_the_top_level_a_one_line_list() -> None:
    # Any line break made every top-level description run to the end of its line: `age` went
    # into name's description, silently (exit 0).
    got = parse_dsl("people [{\n  n, role\n}], name: full name, age int")
    assert list(got["properties"]) == ["people", "name", "age"]
    assert got["properties"]["name"] == {**S, "description": "full name"}
    # A line break between top-level fields still makes descriptions run to the line's end.
    got = parse_dsl("bio: a short bio, in English\nage int")
    assert got["properties"]["bio"] == {**S, "description": "a short bio, in English"}


@pytest.mark.parametrize(
    ("text", "swallowed"),
    [
        ("name: full name, age int,\n  email email", "age int"),
        ("a\nname: full name, tags [str] ..3", "tags [str] ..3"),
        ("a\nbio: short, born? date", "born? date"),
        ("a\nbio: short, born date 1900..", "born date 1900.."),
        # A review of the first fix: these went into the description again, silently.
        ("a\nbio: x, email email", "email email"),
        ("a\nbio: x, mood happy|sad", "mood happy|sad"),
        ("a\nbio: x, addr {street, city}", "addr {street, city}"),
        # A review (/tmp/rev-dsl): a field with its own description, derived, a quoted name,
        # the full-width '？' and a quoted enum value went in silently.
        ("a\nname: full name, age int: in years", "age int: in years"),
        ("a\nname: 全名，年龄 int：岁数", "年龄 int：岁数"),
        ("a\nbio: x, ok bool: a flag", "ok bool: a flag"),
        ("a\nbio: x, count int derived", "count int derived"),
        ("a\nbio: x, count int derived 0..", "count int derived 0.."),
        ("a\nbio: x, due date derived", "due date derived"),
        ('a\nbio: x, "full name" int', '"full name" int'),
        ('a\nbio: x, "full name" {a, b}', '"full name" {a, b}'),
        ('a\nbio: x, "full name" [str]', '"full name" [str]'),
        ("a\nbio: x, 昵称？ str", "昵称？ str"),
        ("a\nbio: x, 年龄？ int 0..150", "年龄？ int 0..150"),
        ('a\nbio: x, mood "very good"|bad', 'mood "very good"|bad'),
    ],
)
def test_a_description_over_a_line_that_takes_in_a_typed_field_is_refused(
    text: str, swallowed: str
) -> None:
    with pytest.raises(DslError, match=re.escape(f"takes in {swallowed!r}")):
        parse_dsl(text)


@pytest.mark.parametrize(
    "description",
    [
        "a short bio, in text",
        "the title, as quote",
        "one, two and three",
        # A format word after an adjective is prose (a review found these refused).
        "how to reach them, work email",
        "when it is due, due date",
        "when it was made, UTC datetime",
        "the order's reference, a uuid",
        "the page, full uri",
        "how to reach them, phone number",
        "whether it's on, a bool",
        "a fraction, in [0, 1]",
        "yes or no, true|false",
        "number of items, positive integer",
        "whether it is, true boolean",
        "see the note, note: below",
        "a person, e.g.: Ann",
        "the status, a|b testing",
    ],
)
def test_prose_with_commas_on_a_line_of_its_own_is_a_description(description: str) -> None:
    got = parse_dsl(f"bio: {description}\nage int")
    assert got["properties"]["bio"]["description"] == description


@pytest.mark.parametrize(
    ("text", "typed"),
    [
        ("address: {street, city}", "address {street, city}"),
        ("地址：{省，市}", "地址 {省，市}"),
        ("mood: happy|sad", "mood happy|sad"),
    ],
)
def test_an_object_or_enum_after_a_colon_is_refused_not_a_description(
    text: str, typed: str
) -> None:
    # It was a string whose description was "{street, city}": the object lost, exit 0.
    with pytest.raises(
        DslError, match=re.escape(f"would be a description, not a type: write '{typed}'")
    ):
        parse_dsl(text)


def test_a_range_after_a_colon_is_refused_with_both_readings() -> None:
    with pytest.raises(
        DslError, match=re.escape("('age int 0..150' for a number, 'age 0..150' for")
    ):
        parse_dsl("age: 0..150")


@pytest.mark.parametrize(
    ("text", "code", "shown"),
    [
        ("name\x1b[31mRED", "001B", "name\\x1b[31mRED"),
        ("name: full name\rage int", "000D", "name: full name\\rage int"),
        ("name: a\u2028age int", "2028", "name: a\\u2028age int"),
        ("a\n\x00b", "0000", "\\x00b"),
    ],
)
def test_a_control_character_is_refused_and_shown_escaped(text: str, code: str, shown: str) -> None:
    # A lone CR read as a blank hid a line break (age went into the description, exit 0); the
    # error echoed an ESC to the terminal.
    with pytest.raises(DslError, match=f"a control character \\(U\\+{code}\\)") as e:
        parse_dsl(text)
    message = str(e.value)
    assert shown in message.splitlines()
    assert not any(ch in message for ch in "\x1b\x00\r\u2028")
    # A CRLF line end and a tab are still lines and blanks.
    assert list(parse_dsl("name\r\nage\tint")["properties"]) == ["name", "age"]


@pytest.mark.parametrize(("text", "typed"), [("x null|date", "date"), ("x null|int", "int")])
def test_null_before_a_type_is_refused_not_an_enum_of_the_word(text: str, typed: str) -> None:
    # A review (/tmp/rev-dsl): `x date|null` is a date or null, `x null|date` was the enum
    # [null, "date"], silently.
    with pytest.raises(DslError, match=re.escape(f"'null' goes after the type: {typed}|null")):
        parse_dsl(text)
    assert parse_dsl(f'x null|"{typed}"')["properties"]["x"]["enum"] == [None, typed]
    assert parse_dsl(f"x {typed}|null")["properties"]["x"]["type"][-1] == "null"
    assert parse_dsl("x null|a|b")["properties"]["x"]["enum"] == [None, "a", "b"]


@pytest.mark.parametrize("text", ["tags [str], 1..5", "age int, 0..150", "a, -1..1"])
def test_a_range_after_a_comma_is_refused_not_a_field_named_by_a_number(text: str) -> None:
    # It was a required string field named "1" (or "0"), exit 0.
    with pytest.raises(DslError, match="a range follows its field's type with no comma"):
        parse_dsl(text)


@pytest.mark.parametrize(
    "description",
    ["text 3 sentences at most", "date 2 weeks after the order", "time 24h", "int 8 bits"],
)
def test_a_type_word_then_words_is_a_description(description: str) -> None:
    # (`n: float 1e3..` is a type with a range, refused as ever: the range's end as the lexer
    # reads numbers.)
    with pytest.raises(DslError, match="would be a description, not a type"):
        parse_dsl("n: float 1e-3..1")
    # Only a type alone, in brackets, or with a range, '|' or '?' after it reads as a type.
    got = parse_dsl(f"x: {description}, y")
    assert got["properties"]["x"]["description"] == description


def test_the_comma_hint_is_only_for_an_error_at_the_next_name() -> None:
    with pytest.raises(DslError) as e:
        parse_dsl("bio: short, age int 5..1")
    assert e.value.problem == "empty range: 5 is more than 1"
    with pytest.raises(DslError, match="ends at the next comma"):
        parse_dsl("bio: short, mood happy")  # ambiguous: "short, mood happy" may be prose


def test_a_hash_is_named_as_no_comment() -> None:
    with pytest.raises(DslError, match="has no comments"):
        parse_dsl("sentiment positive|neutral|negative          # an enum")


def test_a_value_where_a_type_goes_says_to_quote_it() -> None:
    with pytest.raises(DslError, match=re.escape('written in quotes ("02134")')):
        parse_dsl("zip 02134")
    assert parse_dsl('zip "02134"')["properties"]["zip"]["enum"] == ["02134"]


def test_names_equal_after_nfc_are_duplicates() -> None:
    with pytest.raises(DslError, match="the same text after NFC normalization"):
        parse_dsl("caf\u00e9, cafe\u0301")


def test_the_readme_examples_are_schemas_without_their_notes() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("### `qwenjson schema dsl 'CONCISE SCHEMA'`", 1)[1]
    block = block.split("```\n", 2)[1]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) >= 10
    for line in lines:
        schema = re.split(r"\s+# ", line, maxsplit=1)[0].strip()
        jsonschema.Draft202012Validator.check_schema(parse_dsl(schema))


def test_a_braced_concise_schema_read_as_json_says_why() -> None:
    from qwenjson.validate import load_schema

    with pytest.raises(SchemaError, match=re.escape("so write 'name, age int'")):
        load_schema("{name, age int}")
    with pytest.raises(SchemaError) as e:
        load_schema('{"type": "object",}')  # JSON with a slip: no concise hint
    assert "concise" not in str(e.value)


def test_names_one_normalisation_apart_are_not_rendered_as_text_that_fails_to_parse() -> None:
    # "é" and "e\u0301" rendered as 'é?, é?', which parse_dsl refuses (a review's round trip).
    string = {"type": "string"}
    schema = {
        "type": "object",
        "properties": {"é": string, "e\u0301": string},
        "required": [],
        "additionalProperties": False,
    }
    assert schema_to_dsl(schema) is None
