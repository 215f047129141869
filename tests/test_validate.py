"""Validation after generation: the formats and regex semantics jsonschema alone gets wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwenjson.errors import SchemaError
from qwenjson.validate import (
    check_metaschema,
    drop_empty_strings,
    load_schema,
    make_validator,
    read_schema,
    validation_errors,
)


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"pattern": "^\\d+$"}, ["12"], ["৪", "1\n"]),
        ({"pattern": "^\\w$"}, ["a"], ["é"]),
        (
            {"format": "time"},
            ["23:59:60Z", "15:59:60-08:00", "08:30:06.283185Z"],
            ["22:59:60Z", "24:00:00Z"],
        ),
        (
            {"format": "date-time"},
            ["1998-12-31T23:59:60Z", "1963-06-19T08:30:06Z"],
            ["1998-12-31T22:59:60Z", "2021-02-29T00:00:00Z"],
        ),
        ({"format": "duration"}, ["P4DT12H30M5S", "P2W"], ["P", "PT", "P1D2H"]),
        (
            {"format": "hostname"},
            ["example.com", "xn--bcher-kva.example"],
            ["-a.com", "ab--c.com", "a" * 64],
        ),
        ({"format": "uri"}, ["https://example.com/a?b#c"], ["//no-scheme", "http://a b"]),
        ({"format": "regex"}, ["^\\p{L}+$"], ["(unclosed"]),
        # Whole values in ASCII digits: no final newline, no ४ read as 4 by int().
        ({"format": "date-time"}, ["2024-01-01T00:00:00Z"], ["2024-01-01T00:00:00Z\n"]),
        ({"format": "date-time"}, [], ["२०२४-01-01T00:00:00Z"]),
        ({"format": "time"}, [], ["00:00:00Z\n", "००:00:00Z"]),
        ({"format": "hostname"}, [], ["example.com\n"]),
        # Beside a pattern a format is checked after generation: by the grammar's language.
        (
            {"pattern": "^[\\s\\S]*$", "format": "relative-json-pointer"},
            ["0/a", "1#"],
            ["not a pointer", "0\n"],
        ),
        ({"pattern": "^[\\s\\S]*$", "format": "uri-template"}, ["/a/{b}"], ["{a"]),
        ({"pattern": "^[\\s\\S]*$", "format": "iri"}, ["http://é.example/ü"], ["é", "http://a b"]),
        ({"pattern": "^[\\s\\S]*$", "format": "email"}, ["a@b"], ["a@@b", "@"]),
        (
            {"patternProperties": {"^\\d$": {"type": "integer"}}, "additionalProperties": False},
            [{"1": 1}],
            [{"1": "x"}, {"৪": 1}],
        ),
    ],
)
def test_validation(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    _check(schema, good, bad)


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        # unevaluatedProperties counts the keys patternProperties matched, in ECMA's sense too.
        (
            {"patternProperties": {"^\\d$": {}}, "unevaluatedProperties": False},
            [{"1": "x"}],
            [{"৪": "x"}],
        ),
        (
            {"patternProperties": {"^\\p{L}+$": {}}, "unevaluatedProperties": False},
            [{"é": 1}],
            [{"1": 1}],
        ),
        # The compiler reports `dependencies` as checked after generation in every draft.
        (
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "dependencies": {"a": ["b"]},
            },
            [{"a": 1, "b": 2}, {"b": 2}],
            [{"a": 1}],
        ),
        (
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "dependencies": {"a": {"required": ["c"]}},
            },
            [{"a": 1, "c": 2}],
            [{"a": 1}],
        ),
        (
            {
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "allOf": [{"patternProperties": {"^\\w$": {}}}],
                "unevaluatedProperties": False,
            },
            [{"a": 1}],
            [{"é": 1}],
        ),
    ],
)
def test_keywords_mean_what_the_compiler_reports(
    schema: dict[str, Any], good: list[Any], bad: list[Any]
) -> None:
    _check(schema, good, bad)


def _check(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    validator = make_validator(schema)
    for value in good:
        assert validation_errors(value, validator) == [], value
    for value in bad:
        assert validation_errors(value, validator), value


@pytest.mark.parametrize(
    ("source", "said"),
    [
        # What Python makes of `qwenjson extract -s $'name, age\xff int'`.
        ("name, age\udcff int", "byte 0xff at byte 9"),
        ('{"type": "\udcc0"}', "byte 0xc0 at byte 10"),
        ("名前\udcff int", "byte 0xff at byte 6"),  # a byte offset, not a character index
        ("name \ud800 int", "a surrogate code point U+D800 at byte 5"),  # a library caller's
        # A "/" in schema text (a $schema URL, a description) doesn't make it a file name.
        (
            '{"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "caf\udce9"}',
            "byte 0xe9 at byte 73",
        ),
        ("caf\udce9, bio: home/work", "byte 0xe9 at byte 3"),
    ],
)
def test_an_inline_schema_that_isnt_utf8_names_the_byte(source: str, said: str) -> None:
    with pytest.raises(SchemaError) as e:
        read_schema(source)
    assert str(e.value) == f"the inline schema is not UTF-8 text ({said})"


@pytest.mark.parametrize("name", ["/nonexistent/x\udcff.json", "/nonexistent/x\udcff"])
def test_a_missing_file_whose_name_isnt_utf8_is_reported_missing(name: str) -> None:
    with pytest.raises(SchemaError) as e:
        read_schema(name)
    assert str(e.value) == f"schema file {name!r} not found"


def test_concise_syntax_with_a_slash_keeps_its_own_error() -> None:
    # A date pattern, a URL or "and/or" in a description is no file name: the column is told.
    with pytest.raises(SchemaError) as e:
        read_schema("born: dd/mm/yyyy, age: int")
    assert str(e.value).startswith("'int' after ':' would be a description, not a type")


def test_a_missing_file_whose_name_has_a_blank_is_reported_missing() -> None:
    with pytest.raises(SchemaError) as e:
        read_schema("/nonexistent/my dir/s")
    assert str(e.value) == "schema file '/nonexistent/my dir/s' not found"


def test_errors_are_json_pointers() -> None:
    schema = {
        "type": "object",
        "properties": {"a/b": {"type": "array", "items": {"type": "integer"}}},
    }
    errors = validation_errors({"a/b": [1, "x"]}, make_validator(schema))
    assert errors == ["/a~1b/1: 'x' is not of type 'integer'"]


def test_metaschema_accepts_ecma_only_patterns_and_refuses_broken_ones() -> None:
    check_metaschema({"pattern": "^\\p{Letter}\\cC$"})
    with pytest.raises(SchemaError, match="at /pattern"):
        check_metaschema({"pattern": "(unclosed"})


def test_validation_never_fetches_a_remote_ref() -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    hits: list[bool] = []

    def serve() -> None:
        try:
            conn, _ = server.accept()
            hits.append(True)
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    validator = make_validator({"$ref": f"http://127.0.0.1:{port}/schema.json"})
    with pytest.raises(Exception, match="Unresolvable"):
        validation_errors(1, validator)
    thread.join()
    server.close()
    assert hits == []


FLIGHT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "flight": {"type": "string"},
        "seat": {"type": "string"},
        "gate": {"type": "string"},
        "legs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"to": {"type": "string"}, "note": {"type": "string"}},
                "required": ["to"],
            },
        },
        "extra": {"type": "object", "minProperties": 1},
    },
    "required": ["flight", "gate"],
}


def test_empty_strings_go_where_the_schema_lets_them() -> None:
    doc = {
        "flight": "LH 454",
        "seat": "",
        "gate": "",  # required: stays
        "legs": [{"to": "", "note": ""}, {"to": "SFO", "note": "window"}],
        "extra": {"k": ""},  # minProperties 1: stays
    }
    v = make_validator(FLIGHT)
    out = drop_empty_strings(doc, v)
    assert out == {
        "flight": "LH 454",
        "gate": "",
        "legs": [{"to": ""}, {"to": "SFO", "note": "window"}],
        "extra": {"k": ""},
    }
    assert list(out) == ["flight", "gate", "legs", "extra"]  # order kept
    assert doc["seat"] == ""  # the input is not changed
    assert not validation_errors(out, v)


def test_dependent_requirements_are_respected() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "dependentRequired": {"b": ["a"]},
    }
    # Dropping "a" first would break b's dependency: it goes once b has gone.
    assert drop_empty_strings({"a": "", "b": "x"}, make_validator(schema)) == {"a": "", "b": "x"}
    assert drop_empty_strings({"a": "", "b": ""}, make_validator(schema)) == {}


def test_a_long_chain_of_dependencies_stays_valid_and_bounded() -> None:
    # Each member needs the one before it: one drop per pass, from the end. The number of
    # validations is bounded, and whatever is left is still valid.
    names = [f"a{i}" for i in range(40)]
    schema = {
        "type": "object",
        "properties": {n: {"type": "string"} for n in names},
        "dependentRequired": {names[i + 1]: [names[i]] for i in range(len(names) - 1)},
    }
    v = make_validator(schema)
    out = drop_empty_strings(dict.fromkeys(names, ""), v)
    assert not validation_errors(out, v)
    assert "a39" not in out and list(out) == names[: len(out)]


def test_a_valid_regex_python_cant_run_is_unsupported_not_invalid() -> None:
    with pytest.raises(SchemaError) as e:
        check_metaschema({"type": "string", "pattern": "(?<=a+)b"})
    assert str(e.value).startswith("unsupported schema keyword 'pattern': '(?<=a+)b' is valid")
    assert "look-behind requires fixed-width pattern" in str(e.value)
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        check_metaschema({"type": "string", "pattern": "(unclosed"})


def test_plain_jsonschema_keeps_its_own_meaning_beside_qwenjson() -> None:
    # qwenjson reads patterns as ECMA in its own validators; another library's jsonschema in the
    # same process must agree with itself (its patternProperties reads Python's re).
    import jsonschema

    schema = {"patternProperties": {"^\\d$": {"type": "integer"}}, "unevaluatedProperties": False}
    plain = jsonschema.Draft202012Validator(schema)
    assert [e.message for e in plain.iter_errors({"৪": 1})] == []
    assert validation_errors({"৪": 1}, make_validator(schema))  # ECMA: ৪ is not \d


def test_a_file_named_like_a_concise_field_says_it_was_read_as_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A review (/tmp/rev-dsl): `-s name` with a file "name" in the directory reported only
    # "name is not valid JSON", with no word that the file had won over the concise syntax.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "name").write_text("Ann's notes\n")
    with pytest.raises(SchemaError) as e:
        load_schema("name")
    message = str(e.value)
    assert "is not valid JSON" in message
    assert "read as the file 'name' in this directory" in message
    assert """quote the name: '"name"'""" in message
    assert list(load_schema('"name"')["properties"]) == ["name"]  # as the hint says


@pytest.mark.parametrize(
    ("divisor", "valid", "invalid"),
    [
        (0.01, [19.99, 0.07, 1e16, 3], [0.005, 19.991, 1e-20, 0.1 + 0.2]),
        (0.1, [0.3, 0.7, 4.2], [0.25]),
        (1.5, [4.5, 0, -3], [35]),
        (0.0001, [0.0075], [0.00751]),
        (0.123456789, [], [1e308]),  # the official suite's "float division = inf"
        (2, [4, -2, 6.0], [3, 2.5]),
    ],
)
def test_multiple_of_is_exact_in_the_decimals_json_writes(
    divisor: float, valid: list[float], invalid: list[float]
) -> None:
    # jsonschema divides floats: 19.99 / 0.01 = 1998.9999999999998, and every attempt at a
    # price under "multipleOf": 0.01 failed (exit 5).
    validator = make_validator({"type": "number", "multipleOf": divisor})
    assert [x for x in valid if not validator.is_valid(x)] == []
    assert [x for x in invalid if validator.is_valid(x)] == []
