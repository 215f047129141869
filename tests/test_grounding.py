"""Grounding without a model: which fields are grounded, the span check on output bytes, and
what abstention and evidence make of a finished document."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from qwenjson.errors import EXIT_SCHEMA, SchemaError
from qwenjson.evidence import annotate, leaf_spans
from qwenjson.fields import Path, schema_fields
from qwenjson.generation import TokenTrace
from qwenjson.grounding import (
    FieldRule,
    Grounding,
    SourceText,
    grounding_rules,
    required_keys,
    value_floors,
)
from qwenjson.sampling import index_pieces, narrowed
from qwenjson.validate import load_schema

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "nick": {"type": ["string", "null"]},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "nick"],
}


def test_rules_follow_the_schema() -> None:
    rules = grounding_rules(PERSON)
    assert rules[("name",)] == FieldRule(True, "none")
    assert rules[("city",)] == FieldRule(True, "omit")
    assert rules[("nick",)] == FieldRule(True, "null")  # required but nullable
    assert rules[("hobbies", None)] == FieldRule(True, "item")
    assert rules[("age",)] == FieldRule(True, "none", "integer")  # read from the text's numbers


@pytest.mark.parametrize(
    ("sub", "grounded"),
    [
        ({"type": "string", "enum": ["a", "b"]}, False),
        ({"type": "string", "format": "date"}, True),  # read from the text's dates
        ({"type": "string", "format": "date-time"}, False),
        ({"type": "string", "format": "date", "pattern": "^2"}, False),
        ({"type": "string", "format": "date", "x-grounded": False}, False),
        ({"type": "string", "pattern": "^[0-9]+$"}, False),
        ({"type": "string", "x-grounded": False}, False),
        ({"type": "string", "format": "date", "x-grounded": True}, True),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, True),
        ({"$ref": "#/$defs/s"}, True),
    ],
)
def test_which_strings_are_grounded(sub: dict[str, Any], grounded: bool) -> None:
    schema = {"type": "object", "properties": {"x": sub}, "$defs": {"s": {"type": "string"}}}
    assert grounding_rules(schema)[("x",)].grounded is grounded


@pytest.mark.parametrize(
    ("name", "grounded"),
    [
        ("summary", False),
        ("short_summary", False),
        ("reasoning", False),
        ("description", False),
        ("摘要", False),
        ("文章摘要", False),
        ("中文翻译", False),
        ("退货_说明", False),
        ("描述", False),
        ("condition_description", True),  # a copied slot value, named after what it holds
        ("病情描述", True),  # the same in Chinese
        ("翻译者", True),  # a translator's name
        ("说明书编号", True),
        ("原因代码", True),
        ("评价人", True),
        ("title", True),
        ("address", True),
    ],
)
def test_fields_that_ask_for_writing_are_not_grounded(name: str, grounded: bool) -> None:
    schema = {"type": "object", "properties": {name: {"type": "string"}}}
    assert grounding_rules(schema)[(name,)].grounded is grounded
    assert grounding_rules(schema, default=False)[(name,)].grounded is False


def test_x_grounded_on_a_list_or_object_is_the_default_for_what_it_holds() -> None:
    # It was ignored there: a user's "tags are written" left them grounded.
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "x-grounded": False},
            "about": {
                "type": "object",
                "x-grounded": False,
                "properties": {
                    "note": {"type": "string"},
                    "quote": {"type": "string", "x-grounded": True},  # its own wins
                    "n": {"type": "integer"},
                },
            },
            "codes": {"type": "array", "items": {"$ref": "#/$defs/code"}, "x-grounded": False},
            "names": {"type": "array", "items": {"type": "string"}, "x-grounded": True},
        },
        "$defs": {"code": {"type": "string", "x-grounded": True}},
    }
    rules = grounding_rules(schema)
    assert {p: r.grounded for p, r in rules.items()} == {
        ("tags", None): False,
        ("about", "note"): False,
        ("about", "quote"): True,
        ("about", "n"): False,
        ("codes", None): True,  # the $ref's target says so itself
        ("names", None): True,
    }
    assert grounding_rules(schema, default=False)[("names", None)].grounded is True

    # A default, not a mark (a review: /tmp/rev-s30b/gr.py): under an object marked true, an
    # enum, a const, a format and a written name keep their own rules, as under --grounding.
    marked = {
        "type": "object",
        "x-grounded": True,
        "properties": {
            "mood": {"type": "string", "enum": ["happy", "sad"]},
            "kind": {"const": "review", "type": "string"},
            "email": {"type": "string", "format": "email"},
            "summary": {"type": "string"},
            "name": {"type": "string"},
            "n": {"type": "integer", "enum": [1, 2]},
        },
    }
    rules = grounding_rules(marked, default=False)
    assert {p[0]: r.grounded for p, r in rules.items()} == {
        "mood": False,
        "kind": False,
        "email": False,
        "summary": False,
        "name": True,
        "n": False,
    }


def test_x_grounded_reaches_through_an_optional_in_a_marked_object() -> None:
    # A review (/tmp/rev-s30c/gr3.py): the default handed down made an Optional look like an
    # anyOf with other keywords beside it, and its whole subtree lost its rules (a value the
    # text doesn't have printed under --require-evidence).
    schema = {
        "type": "object",
        "x-grounded": False,
        "$defs": {"P": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "properties": {
            "p": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]},
            "t": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
            "s": {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}]},
        },
        "required": ["p"],
    }
    fields = schema_fields(schema)
    assert {p: r.grounded for p, r in fields.rules.items()} == {
        ("p", "name"): False,
        ("t", None): False,
        ("s",): False,
    }
    assert fields.objects[("p",)] == "null"
    marked_true = {**schema, "x-grounded": True}
    assert all(r.grounded for r in schema_fields(marked_true, default=False).rules.values())


def test_the_walkers_own_key_is_refused_in_a_schema() -> None:
    schema = {"type": "object", "x-qwenjson-inherited-grounded": False}
    with pytest.raises(SchemaError, match="qwenjson's own: mark fields with x-grounded"):
        load_schema(json.dumps(schema))


@pytest.mark.parametrize("mark", ["false", 0, None, [False]])
def test_x_grounded_other_than_true_or_false_is_refused(mark: Any) -> None:
    # "false" (a string) was read as no mark: the field stayed grounded, and schema check
    # listed it as if it counted.
    schema = {"type": "object", "properties": {"a": {"type": "string", "x-grounded": mark}}}
    with pytest.raises(SchemaError, match=r'"x-grounded" is true or false') as e:
        load_schema(json.dumps(schema))
    assert e.value.exit_code == EXIT_SCHEMA
    assert "/properties/a/x-grounded" in str(e.value)
    # A property named x-grounded is data's, not the annotation.
    load_schema(json.dumps({"type": "object", "properties": {"x-grounded": {"type": "string"}}}))


def test_recursive_schemas_stop() -> None:
    schema = {"type": "array", "items": {"$ref": "#"}}
    assert grounding_rules(schema) == {}
    tree = {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "kids": {"type": "array", "items": {"$ref": "#"}},
        },
    }
    rules = grounding_rules(tree)
    assert ("label",) in rules and ("kids", None, "label") in rules


def _feed(g: Grounding, text: str) -> bool:
    """Offer ``text`` as one piece; accept it when allowed."""
    piece = text.encode()
    if not g.allows(piece):
        return False
    g.accept(piece)
    return True


def test_a_grounded_value_only_grows_along_the_text() -> None:
    g = Grounding(SourceText("Tom grows tomatoes in Oslo."), grounding_rules(PERSON))
    assert _feed(g, '{"name": "')
    assert not g.allows(b"Tim")
    assert _feed(g, "To")
    assert not g.allows(b"x")
    assert _feed(g, 'm", "age": 30, "city": "')
    assert not g.allows(b'New York"')
    assert g.allows(b'Oslo"') and not g.allows(b'Osl"')
    assert _feed(g, 'Oslo"')
    assert [(r.path, r.status, r.span) for r in g.records] == [
        (("name",), "grounded", (0, 3)),
        (("age",), "unsupported", None),  # the text has no number: written freely, no source
        (("city",), "grounded", (22, 26)),
    ]


RECEIPT = {
    "type": "object",
    "properties": {
        "date": {"type": "string", "format": "date"},
        "items": {"type": "integer"},
        "total": {"type": "number"},
    },
    "required": ["date", "total"],
}


def test_a_number_is_one_the_text_can_be_read_as() -> None:
    text = "3 items. TOTAL RM1,041.20 on 23/03/2018"
    g = Grounding(SourceText(text), grounding_rules(RECEIPT))
    assert _feed(g, '{"date": "2018-03-23", "items": ')
    assert not g.allows(b"4") and not g.allows(b"2019")  # not numbers of the text
    assert _feed(g, "3")
    assert _feed(g, ', "total": 10')
    assert not g.allows(b"2")  # 102... is no number of the text
    assert not g.allows(b"}") and not g.allows(b", ")  # 10 isn't one either
    assert _feed(g, "41.2")
    assert g.allows(b"0}") and g.allows(b"}")  # 1041.20 and 1041.2 both spell it
    assert _feed(g, "}")
    assert [
        (r.path, r.status, text[r.span[0] : r.span[1]] if r.span else None) for r in g.records
    ] == [
        (("date",), "grounded", "23/03/2018"),
        (("items",), "grounded", "3"),
        (("total",), "grounded", "1,041.20"),
    ]


@pytest.mark.parametrize(
    ("bounds", "offered", "refused"),
    [
        ({"maximum": 99}, ["7", "-3", "15"], ["1234"]),  # the grammar would cut it to 12
        ({"minimum": 0, "exclusiveMaximum": 7}, ["5"], ["7", "-3", "15", "1234"]),
        ({"exclusiveMinimum": 7}, ["1234", "15"], ["7", "-3", "5"]),
        ({"multipleOf": 5}, ["15", "5"], ["7", "1234", "-3"]),
    ],
)
def test_a_number_outside_the_schemas_bounds_is_not_offered(
    bounds: dict[str, int], offered: list[str], refused: list[str]
) -> None:
    # "Room 1234, floor 7" under "maximum": 99 printed {"n": 12}: a value the text doesn't say.
    schema = {"type": "object", "properties": {"n": {"type": "integer", **bounds}}}
    g = Grounding(SourceText("Room 1234, floor 7, 15 and 5 guests, -3 °C"), grounding_rules(schema))
    assert _feed(g, '{"n": ')
    _offers(g, offered, refused)


def test_a_number_in_scientific_notation_may_be_written_either_way() -> None:
    # JSON takes 1.5e3 as written; the tracker follows it byte by byte to its reading.
    schema = {"type": "object", "properties": {"n": {"type": "number", "maximum": 10**6}}}
    g = Grounding(SourceText("took 1.5e3 ms, then 2.5 × 10^4 ms, 1e7 ms"), grounding_rules(schema))
    assert _feed(g, '{"n": ')
    _offers(g, ["1.5e3", "1500", "2.5e4", "25000"], ["1.5e4", "1e7", "10000000", "1.5e"])
    assert _feed(g, "1.5e3}")
    assert [(r.status, r.span) for r in g.records] == [("grounded", (5, 10))]


def _offers(g: Grounding, offered: list[str], refused: list[str]) -> None:
    """At an open number, each of ``offered`` may be written whole and none of ``refused``."""
    for value in offered:
        assert g.fork()._feed(value.encode() + b"}"), value
    for value in refused:
        assert not g.fork()._feed(value.encode() + b"}"), value


@pytest.mark.parametrize(
    ("number", "text", "offered", "refused"),
    [
        # draft 4's boolean beside minimum: read as a plain bound, 5 was offered, the grammar
        # forbade it and made it 50 (evidence null)
        (
            {"type": "integer", "minimum": 5, "exclusiveMinimum": True},
            "Guests: 5. Booked 12 days ago.",
            ["12"],
            ["5"],
        ),
        # multipleOf in decimals (jsonschema divides floats: 0.3 / 0.1 is 2.9999999999999996,
        # and 0.3 and 0.7 were refused, as the document's validation refused them)
        (
            {"type": "number", "multipleOf": 0.1},
            "0.3, 0.5, 0.7 and 0.25",
            ["0.3", "0.5", "0.7"],
            ["0.25"],
        ),
        ({"type": "number", "multipleOf": 0.01}, "Total 19.99, tax 0.075", ["19.99"], ["0.075"]),
    ],
)
def test_bounds_are_read_as_the_documents_validation_reads_them(
    number: dict[str, Any], text: str, offered: list[str], refused: list[str]
) -> None:
    draft = "http://json-schema.org/draft-04/schema#"
    schema = {"$schema": draft, "type": "object", "properties": {"n": number}}
    g = Grounding(SourceText(text), grounding_rules(schema))
    assert _feed(g, '{"n": ')
    _offers(g, offered, refused)


@pytest.mark.parametrize(
    ("room", "draft", "offered"),
    [
        # a bound behind $ref beside one of its own: read merged, 500 was offered, cut to 50
        ({"$ref": "#/$defs/N", "maximum": 1000}, "2020-12", ["7"]),
        ({"type": "integer", "allOf": [{"maximum": 99}]}, "2020-12", ["7"]),
        # draft 7: $ref hides its siblings, so 7 is valid there (merged, "maximum": 5 hid it)
        ({"$ref": "#/$defs/N", "maximum": 5}, "7", ["7"]),
    ],
)
def test_a_reading_is_offered_where_validation_takes_it_at_that_place(
    room: dict[str, Any], draft: str, offered: list[str]
) -> None:
    uri = {
        "2020-12": "https://json-schema.org/draft/2020-12/schema",
        "7": "http://json-schema.org/draft-07/schema#",
    }[draft]
    schema = {
        "$schema": uri,
        "$defs": {"N": {"type": "integer", "maximum": 99}},
        "type": "object",
        "properties": {"room": room},
    }
    g = Grounding(SourceText("Room number: 500. The guest has 7 cats."), grounding_rules(schema))
    assert _feed(g, '{"room": ')
    assert [v for v in ("500", "7") if g.fork()._feed(v.encode() + b"}")] == offered


def test_a_string_under_max_length_begins_only_spans_that_fit() -> None:
    # The grammar cut "Alexander" to "Alexa" (exit 0): a piece of a word, in no place of the text.
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}}
    g = Grounding(SourceText("Alexander Hamilton met Bob and 李明明."), grounding_rules(schema))
    assert _feed(g, '{"name": "')
    for piece in ["A", "Alexa", "Hamilton", "met Bob"]:
        assert not g.allows(piece.encode()), piece
    for piece in ["B", "Bob", "李", "李明明", "met", "and"]:
        assert g.allows(piece.encode()), piece
    assert _feed(g, 'Bob"}')
    assert g.records[0].span == (23, 26)


def test_a_date_is_one_the_text_can_be_read_as() -> None:
    g = Grounding(SourceText("Paid 03/04/2018, due 2018年5月1日"), grounding_rules(RECEIPT))
    assert _feed(g, '{"date": "2018-0')
    # 03/04 reads day-first or month-first; the model chooses.
    assert g.allows(b'4-03"') and g.allows(b'3-04"') and g.allows(b'5-01"')
    assert not g.allows(b'3-03"') and not g.allows(b"4-3")
    assert _feed(g, '5-01"')
    assert g.records[0].span == (21, 30)


def test_a_refused_first_digit_marks_the_number_unsupported() -> None:
    g = Grounding(SourceText("Total 41.20"), grounding_rules(RECEIPT))
    assert _feed(g, '{"date": "2018-01-01", "total": ')
    assert not g.allows(b"9")
    g.refused(b"9")
    assert not g.would_abstain(b"9")  # a number can't be closed empty
    g.accept(b"41.2")
    g.accept(b"}")
    assert [(r.path, r.status) for r in g.records][-1] == (("total",), "unsupported")


def test_a_token_that_opens_a_value_is_checked_too() -> None:
    g = Grounding(SourceText("Tom"), grounding_rules(PERSON))
    assert _feed(g, '{"name":')
    assert not g.allows(b' "Ann')
    assert g.allows(b' "To')


def test_escapes_are_the_texts_own() -> None:
    text = 'She said "hi" \\ bye\n再见 🙂'
    g = Grounding(SourceText(text), grounding_rules(PERSON))
    assert _feed(g, '{"name": "')
    written = json.dumps('said "hi" \\ bye\n再见 🙂', ensure_ascii=False)[1:]
    assert _feed(g, written)
    (record,) = g.records
    assert record.span is not None
    assert text[record.span[0] : record.span[1]] == 'said "hi" \\ bye\n再见 🙂'
    g2 = Grounding(SourceText(text), grounding_rules(PERSON))
    assert _feed(g2, '{"name": "')
    assert not g2.allows(b"\\u005c")  # another spelling of the backslash: not the text's
    assert not g2.allows(b'n"')  # the n of an escaped newline is not a character of the text


def test_required_values_cant_close_empty_but_optional_ones_can() -> None:
    g = Grounding(SourceText("Tom"), grounding_rules(PERSON))
    assert _feed(g, '{"name": "')
    assert not g.allows(b'"')
    g2 = Grounding(SourceText("Tom"), grounding_rules(PERSON))
    assert _feed(g2, '{"name": "Tom", "age": 1, "city": "')
    assert g2.closes_empty(b'"') and g2.allows(b'",')
    assert g2.would_abstain(b"Paris")  # a first choice the text doesn't have
    g2.refused(b"Paris")
    assert _feed(g2, '"')
    assert g2.records[-1].status == "abstained"


def test_a_refused_first_choice_marks_a_required_value_unsupported() -> None:
    g = Grounding(SourceText("Tom"), grounding_rules(PERSON))
    assert _feed(g, '{"name": "')
    assert not g.would_abstain(b"Ann")  # required: it must be written
    g.refused(b"Ann")
    assert _feed(g, 'Tom"')
    assert g.records[-1].status == "unsupported"


def test_a_list_that_repeats_an_item_ends() -> None:
    g = Grounding(SourceText("渔场 渔场"), grounding_rules(PERSON))
    assert _feed(g, '{"name": "渔场", "age": 1, "nick": null, "hobbies": ["渔场", "渔场"')
    assert g.allows(b", ")  # the text says it twice: two items
    assert _feed(g, ', "渔场"')
    assert not g.allows(b", ")  # not three times: a loop
    assert g.allows(b"]")


def test_an_item_the_text_says_again_is_another_item() -> None:
    # Ended at the second "Paris", the list lost Rome and Berlin (exit 0, no warning).
    text = "Flight log: Paris, London, Paris, Rome, Berlin."
    schema = {
        "type": "object",
        "properties": {"stops": {"type": "array", "items": {"type": "string"}}},
    }
    raw = '{"stops": ["Paris", "London", "Paris", "Rome", "Berlin", "Paris"'
    g = Grounding(SourceText(text), grounding_rules(schema))
    assert _feed(g, raw[: raw.index(', "Berlin"')])
    assert g.allows(b", ")
    assert _feed(g, raw[raw.index(', "Berlin"') :])
    assert not g.allows(b", ")  # a third "Paris": the text says it twice
    assert _feed(g, "]}")
    found = _annotated(text, raw + "]}", schema)
    assert found.data == {"stops": ["Paris", "London", "Paris", "Rome", "Berlin"]}
    assert [text[s:e] for s, e in found.evidence.values()] == [
        "Paris", "London", "Paris", "Rome", "Berlin"
    ]  # fmt: skip
    assert found.evidence["/stops/0"] != found.evidence["/stops/2"]


PEOPLE: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer", "x-grounded": False}},
    },
}


def test_the_same_words_right_after_themselves_are_two_items_at_two_places() -> None:
    # Both copies of "Paris" got the first place's evidence, and the second was dropped.
    text = "Stamps, in order: Paris, Paris, London."
    stamps = {"type": "array", "items": {"type": "string"}}
    schema = {"type": "object", "properties": {"stamps": stamps}}
    found = _annotated(text, '{"stamps": ["Paris", "Paris", "London"]}', schema)
    assert found.data == {"stamps": ["Paris", "Paris", "London"]}
    assert list(found.evidence.values()) == [[18, 23], [25, 30], [32, 38]]


def test_each_place_of_the_text_serves_one_item_in_any_order() -> None:
    # Written out of the text's order, a second mention looked like going back and ended the
    # list ("cat", "bird", then "cat" refused its comma); searched again from the last value,
    # evidence put both copies at one place and dropped one.
    text = "cat dog cat bird"
    pets = {"type": "array", "items": {"type": "string"}}
    schema = {"type": "object", "properties": {"pets": pets}}
    g = Grounding(SourceText(text), grounding_rules(schema))
    assert _feed(g, '{"pets": ["cat", "bird", "cat"')
    assert g.allows(b", ")
    assert _feed(g, ', "dog", "cat"')  # a third "cat": the text says it twice
    assert not g.allows(b", ")
    found = _annotated(text, '{"pets": ["cat", "bird", "cat", "dog", "cat"]}', schema)
    assert found.data == {"pets": ["cat", "bird", "cat", "dog"]}
    assert list(found.evidence.values()) == [[0, 3], [12, 16], [8, 11], [4, 7]]


def test_a_list_inside_a_list_takes_its_places_from_the_last_value_on() -> None:
    # Each inner list began at the text's start: Team B's "Ann" pointed at Team A's.
    text = "Team A: Ann, Bo. Team B: Ann, Cy."
    groups = {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
    schema = {"type": "object", "properties": {"groups": groups}}
    found = _annotated(text, '{"groups": [["Ann", "Bo"], ["Ann", "Cy"]]}', schema)
    assert found.evidence == {
        "/groups/0/0": [8, 11],
        "/groups/0/1": [13, 15],
        "/groups/1/0": [25, 28],
        "/groups/1/1": [30, 32],
    }


def test_a_list_that_repeats_an_object_item_ends() -> None:
    g = Grounding(SourceText("Ann Keller met Bo."), grounding_rules(PEOPLE))
    assert _feed(g, '[{"name": "Keller"}, {"name": "Ann Keller"}, {"name": "Keller"}')
    assert not g.allows(b", ")
    assert g.allows(b"]")
    assert not g.fork()._feed(b', {"name": "Bo"}')  # the fork is refused, the original goes on
    assert _feed(g, "]")


def test_object_items_differing_anywhere_are_not_repeats() -> None:
    g = Grounding(SourceText("Ann Keller met Bo."), grounding_rules(PEOPLE))
    assert _feed(g, '[{"name": "Bo", "n": 1}, {"name": "Bo", "n": 2}, {"name": "Bo"}')
    assert g.allows(b", ")


def test_repeated_numbers_and_booleans_are_data_not_an_ended_list() -> None:
    # Test scores 90, 85, 90, 70: only a repeated grounded string ends a list (Grounding).
    ints = {"type": "array", "items": {"type": "integer"}}
    scores = {"type": "object", "properties": {"s": ints}}
    found = _annotated("Test scores: 90, 85, 90, 70.", '{"s": [90, 85, 90, 70]}', scores)
    assert found.data == {"s": [90, 85, 90, 70]}
    flags = {"type": "object", "properties": {"f": {"type": "array", "items": {}}}}
    assert _annotated("yes", '{"f": [true, true, 1]}', flags).data == {"f": [True, True, 1]}


@pytest.mark.parametrize(
    ("items", "written"),
    [
        ({"enum": ["A", "B", "C"]}, '["A", "B", "A"'),
        ({"type": "string", "x-grounded": False}, '["stir", "wait", "stir"'),
        ({"type": "string", "format": "date"}, '["2020-01-01", "2020-01-01"'),
    ],
)
def test_a_repeated_label_date_or_written_string_is_data_not_an_ended_list(
    items: dict[str, object], written: str
) -> None:
    # The list could only close after the repeat (A, B, A, C lost C): only a grounded text
    # repeated is a loop, as the evidence reads it.
    schema = {"type": "object", "properties": {"x": {"type": "array", "items": items}}}
    text = "Grades: A, B, A, C. stir wait stir 2020-01-01 and 2020-01-01"
    g = Grounding(SourceText(text), grounding_rules(schema))
    assert _feed(g, '{"x": ' + written)
    assert g.allows(b", ")


def test_a_value_found_after_generation_is_a_whole_word_with_its_own_length() -> None:
    # An enum label has no source inside another word; a casefolded match ends where it does.
    mood = {"type": "object", "properties": {"m": {"enum": ["happy", "sad"]}}}
    assert _annotated("He is unhappy.", '{"m": "happy"}', mood).evidence == {"/m": None}
    assert _annotated("Happy? He is.", '{"m": "happy"}', mood).evidence == {"/m": [0, 5]}
    street = {"type": "object", "properties": {"a": {"type": "string", "x-grounded": False}}}
    found = _annotated("Address: HAUPTSTRASSE 5", '{"a": "Hauptstraße"}', street)
    assert found.evidence == {"/a": [9, 21]}  # "HAUPTSTRASSE", not "HAUPTSTRASS"


def test_a_number_in_fullwidth_digits_is_read_as_json_digits() -> None:
    apples = {"type": "object", "properties": {"n": {"type": "integer"}}}
    found = _annotated("我买了３个苹果。", '{"n": 3}', apples)
    assert found.data == {"n": 3} and found.evidence == {"/n": [3, 4]}
    assert found.unsupported == ()


def test_a_repeated_object_item_is_dropped_with_its_evidence() -> None:
    raw = '[{"name": "Keller"}, {"name": "Ann Keller"}, {"name": "Keller"}]'
    found = _annotated("Ann Keller met Keller.", raw, PEOPLE)
    assert found.data == [{"name": "Keller"}, {"name": "Ann Keller"}]
    assert set(found.evidence) == {"/0/name", "/1/name"}
    kept = _annotated("no such names", '[{"n": 1}, {"n": 1}]', PEOPLE)  # nothing grounded
    assert kept.data == [{"n": 1}, {"n": 1}]


def test_repeated_items_without_grounded_values_may_repeat() -> None:
    scores = {
        "type": "array",
        "items": {"type": "object", "properties": {"v": {"type": "integer", "x-grounded": False}}},
    }
    g = Grounding(SourceText("no numbers"), grounding_rules(scores))
    assert _feed(g, '[{"v": 1}, {"v": 1}')
    assert g.allows(b", ")


def _word(char: str) -> bool:
    return char.isalnum() and char not in "中文"


FLAG = "🇳🇴"  # two regional indicators: one flag on screen


def _cuttable(text: str, i: int) -> bool:
    """Whether a value may start or end before ``text[i]``: not inside a word, nor inside one
    character as a reader sees it (before a combining accent, beside a joiner, inside a flag)."""
    if i == 0 or i == len(text):
        return True
    a, b = text[i - 1], text[i]
    letter = text[:i].rstrip("\u0301")[-1:]  # what an accent sits on: "é|b" is in a word
    if (_word(letter) and _word(b)) or b == "\u0301" or "\u200d" in (a, b):
        return False
    if a in FLAG and b in FLAG:
        run = 0
        while i - run > 0 and text[i - run - 1] in FLAG:
            run += 1
        return run % 2 == 0
    return True


def _is_span(text: str, value: str) -> bool:
    """The slow, obvious oracle: ``value`` occurs in ``text`` and cuts no word in two."""
    for start in range(len(text) - len(value) + 1):
        end = start + len(value)
        if text[start:end] == value and _cuttable(text, start) and _cuttable(text, end):
            return True
    return False


ALPHABET = [*'ab "\\\n\t中文🙂é,{}', "\u0301", "\u200d", *FLAG]


@given(text=st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=30), data=st.data())
def test_any_span_of_the_text_is_allowed_and_slices_back(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    value = text[start:end]
    g = Grounding(SourceText(text), grounding_rules(PERSON))
    assert _feed(g, '{"name": ')
    assert _feed(g, json.dumps(value, ensure_ascii=False)) == _is_span(text, value)
    if _is_span(text, value):
        (record,) = g.records
        assert record.span is not None
        assert text[record.span[0] : record.span[1]] == value


@given(
    text=st.text(alphabet=st.sampled_from(ALPHABET), max_size=12),
    value=st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=6),
)
def test_a_value_outside_the_text_is_refused(text: str, value: str) -> None:
    g = Grounding(SourceText(text), grounding_rules(PERSON))
    assert _feed(g, '{"name": ')
    allowed = g.allows(json.dumps(value, ensure_ascii=False).encode())
    assert allowed == _is_span(text, value)


def test_a_value_refused_only_for_its_case_is_respelled_as_the_text_has_it() -> None:
    text = "Tom, 1: play greg raposo songs from the ÉCOLE"
    g = Grounding(SourceText(text), grounding_rules(PERSON))
    assert _feed(g, '{"name": "Tom", "age": 1, "city": "')
    assert g.respelled(b"Greg") == b"greg"
    assert g.respelled(b"Greg Rap") == b"greg rap"
    assert g.respelled("École".encode()) == "ÉCOLE".encode()
    assert g.respelled(b"greg") is None  # not refused at all
    assert g.respelled(b"Paris") is None  # not in the text in any case
    assert g.respelled(b"Gregory") is None
    assert g.respelled(b'Greg", "') == b'greg", "'
    assert g.respelled(b'Gre"') is None  # "gre" would cut a word
    assert _feed(g, "greg raposo")
    assert g.respelled(b" Songs") == b" songs"
    assert g.respelled(b'"') is None  # closing is no case matter
    # A choice that leads nowhere is taken back: "Gre" fits "Great" before "greg".
    g2 = Grounding(SourceText("Great, play greg raposo"), grounding_rules(PERSON))
    assert _feed(g2, '{"name": "')
    assert g2.respelled(b"Greg") == b"greg"


@pytest.mark.parametrize(
    ("then", "written", "status"),
    [
        (b" Greg", b"", "grounded"),  # respelled: the model stays with the text
        (b" Beatles", b' greg"', "unsupported"),  # refused inside: it meant something else
        (b'", "nick": "Zed', b'"', "grounded"),  # refused after the value: not its matter
    ],
)
def test_a_respelled_value_keeps_its_source_while_the_model_stays_with_the_text(
    then: bytes, written: bytes, status: str
) -> None:
    g = Grounding(SourceText("Tom: play the greg raposo songs, 1"), grounding_rules(PERSON))
    assert _feed(g, '{"name": "Tom", "age": 1, "city": "')
    assert g.respelled(b"The") == b"the"
    g.case_changed()
    g.accept(b"the")
    respelled = g.respelled(then)
    if respelled is None:
        assert not g.allows(then)
        g.refused(then)
    else:
        g.case_changed()
    assert _feed(g, (written if respelled is None else respelled + b'"').decode())
    assert g.records[-1].path == ("city",) and g.records[-1].status == status


@pytest.mark.parametrize(
    ("then", "status"),
    [(b" Beatles", "unsupported"), (b"ir", "grounded"), (b" Greg", "grounded")],
)
def test_a_value_respelled_as_it_opens_is_watched_too(then: bytes, status: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "band": {"type": "string"}},
    }
    g = Grounding(SourceText("Tom: play the greg raposo songs"), grounding_rules(schema))
    g.accept(b'{"name": "Tom", "band":')
    assert g.respelled(b' "The') == b' "the'  # the piece opens the value
    g.case_changed()
    g.accept(b' "the')
    respelled = g.respelled(then)
    if respelled is not None:
        g.case_changed()
        g.accept(respelled)
    else:
        # " Beatles": a word of its own; "ir" ("Their"): inside a word, which proves less.
        assert not g.allows(then)
        g.refused(then)
        g.accept(b" greg")
    g.accept(b'"}')
    assert g.records[-1].path == ("band",) and g.records[-1].status == status


def test_a_respelled_value_broken_where_the_text_breaks_the_line_keeps_its_source() -> None:
    g = Grounding(SourceText("Tom: LOT 3,\nSHAH ROAD, 1"), grounding_rules(PERSON))
    assert _feed(g, '{"name": "Tom", "age": 1, "city": "')
    assert g.respelled(b"Lot") == b"LOT"
    g.case_changed()
    g.accept(b"LOT 3,")
    assert not g.allows(b" Shah") and g.blank_continuations(b" Shah")
    g.refused(b" Shah")  # then written as the text's line break
    assert _feed(g, '\\nSHAH ROAD"}')
    assert g.records[-1].path == ("city",) and g.records[-1].status == "grounded"


CASED = list('aAbB éÉ,"中')


def _respellings(text: str, value: str) -> set[str]:
    """The slow, obvious oracle: the starts of spans of ``text`` equal to ``value`` up to case
    (a token is the start of a value, not all of it)."""
    n = len(value)
    return {
        text[i : i + n]
        for i in range(len(text) - n + 1)
        if text[i : i + n].lower() == value.lower()
        and any(_starts_span(text, i, j) for j in range(i + n, len(text) + 1))
    }


def _starts_span(text: str, i: int, j: int) -> bool:
    """Whether ``text[i:j]`` cuts no word at either end."""
    if i > 0 and _word(text[i - 1]) and _word(text[i]):
        return False
    return not (j < len(text) and _word(text[j - 1]) and _word(text[j]))


@given(
    text=st.text(alphabet=st.sampled_from(CASED), min_size=1, max_size=12),
    value=st.text(alphabet=st.sampled_from(CASED), min_size=1, max_size=5),
)
@example(text="Aa ab", value="Ab")  # "A" fits "Aa" first: only going back finds "ab"
def test_a_respelling_starts_a_span_of_the_text_equal_up_to_case(text: str, value: str) -> None:
    g = Grounding(SourceText(text), grounding_rules(PERSON))
    assert _feed(g, '{"name": "')
    piece = json.dumps(value, ensure_ascii=False)[1:-1].encode()
    got = g.respelled(piece)
    found = _respellings(text, value)
    if value in found or not found:
        assert got is None
    else:
        assert got is not None
    if got is not None:
        assert json.loads(b'"' + got + b'"') in found
        assert g.allows(got)


def _scalars(
    value: object, path: tuple[str | int, ...] = ()
) -> dict[tuple[str | int, ...], object]:
    if isinstance(value, dict):
        return {p: v for k, x in value.items() for p, v in _scalars(x, (*path, k)).items()}
    if isinstance(value, list):
        return {p: v for i, x in enumerate(value) for p, v in _scalars(x, (*path, i)).items()}
    return {path: value}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_JSON, st.booleans())
@example([{}, "Ann", "Bob"], False)  # a closed `{}` took the next string for a key (a crash)
@example({"a": [{"b": {}}, "x"]}, True)
def test_leaf_spans_find_every_scalar_of_any_document(value: object, spaced: bool) -> None:
    raw = json.dumps(value, ensure_ascii=False, separators=(", ", ": ") if spaced else (",", ":"))
    got = {
        leaf.path: json.loads(raw.encode()[leaf.start : leaf.end])
        for leaf in leaf_spans(raw.encode())
    }
    assert got == _scalars(value)


def test_leaf_spans_point_at_each_scalar() -> None:
    raw = '{"a": "x", "b": [1, true, {"c": null}], "d": "q\\"r"}'
    spans = {
        leaf.path: raw.encode()[leaf.start : leaf.end].decode() for leaf in leaf_spans(raw.encode())
    }
    assert spans == {
        ("a",): '"x"',
        ("b", 0): "1",
        ("b", 1): "true",
        ("b", 2, "c"): "null",
        ("d",): '"q\\"r"',
    }


def _annotated(
    text: str,
    raw: str,
    schema: dict[str, Any],
    trace: tuple[TokenTrace, ...] = (),
    abstain_below: float = 0.0,
    abstain: bool = True,
) -> Any:
    fields = schema_fields(schema)
    rules = fields.rules
    g = Grounding(SourceText(text), rules)
    g.accept(raw.encode())
    return annotate(
        json.loads(raw),
        raw,
        source=SourceText(text),
        records=g.records,
        trace=trace,
        rules=rules,
        validator=jsonschema.Draft202012Validator(schema),
        abstain=abstain,
        abstain_below=abstain_below,
        objects=fields.objects,
    )


def test_abstention_leaves_out_nulls_and_drops_items() -> None:
    raw = '{"name": "Tom", "age": 7, "city": "", "nick": "", "hobbies": ["", "bees", "bees"]}'
    found = _annotated("Tom, 7, bees", raw, PERSON)
    assert found.data == {"name": "Tom", "age": 7, "nick": None, "hobbies": ["bees"]}
    assert found.evidence == {"/name": [0, 3], "/age": [5, 6], "/nick": None, "/hobbies/0": [8, 12]}
    assert found.unsupported == ()


ADDRESS: dict[str, Any] = {
    "type": "object",
    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
    "required": ["street", "city"],
}


def _holder(address: dict[str, Any], required: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"type": "string"}, "home": address},
        "required": ["name", "home"] if required else ["name"],
        "$defs": {"A": ADDRESS},
    }


OPTIONAL_ADDRESS = {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}  # Pydantic's Optional


@pytest.mark.parametrize(
    ("home", "required", "expected"),
    [
        (OPTIONAL_ADDRESS, True, {"name": "Tom", "home": None}),  # nullable: null
        (OPTIONAL_ADDRESS, False, {"name": "Tom"}),  # optional: left out
        ({"$ref": "#/$defs/A"}, False, {"name": "Tom"}),
    ],
)
def test_an_object_whose_required_member_has_no_source_goes_where_it_may(
    home: dict[str, Any], required: bool, expected: dict[str, Any]
) -> None:
    # "Tom lives in Oslo.": no street. The model was made to write one (it can't be left out
    # of the object); an address the text doesn't describe was printed with exit 0.
    schema = _holder(home, required)
    raw = '{"name": "Tom", "home": {"street": "Main St", "city": "Oslo"}}'
    trace = (TokenTrace(34, 43, math.log(0.5)), TokenTrace(53, 59, math.log(0.8)))
    found = _annotated("Tom lives in Oslo.", raw, schema, trace)
    assert found.data == expected
    assert found.unsupported == ()
    if "home" in expected:  # its confidence: the product of its leaves' (0.5 * 0.8)
        assert found.evidence == {"/name": [0, 3], "/home": None}
        assert found.confidence == {"/name": 1.0, "/home": 0.4}
    else:
        assert found.evidence == {"/name": [0, 3]} and found.confidence == {"/name": 1.0}
    kept = _annotated("Tom lives in Oslo.", raw, schema, trace, abstain=False)
    assert kept.data == json.loads(raw) and kept.unsupported == ("/home/street",)


def test_an_object_kept_when_its_required_members_have_sources() -> None:
    schema = _holder(OPTIONAL_ADDRESS, True)
    raw = '{"name": "Tom", "home": {"street": "Main St", "city": ""}}'
    found = _annotated("Tom, Main St", raw, schema)
    assert found.data == json.loads(raw)  # an empty required string is the model's own choice
    found = _annotated("Tom, Main St, Oslo", raw.replace('""', '"Oslo"'), schema)
    assert found.data == {"name": "Tom", "home": {"street": "Main St", "city": "Oslo"}}


def test_a_hollow_object_is_taken_out_by_its_nearest_object_that_may_go() -> None:
    # The address is required in a person, the person is a list item: the item goes.
    person = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "home": {"$ref": "#/$defs/A"}},
        "required": ["name", "home"],
    }
    schema = {
        "type": "object",
        "properties": {"people": {"type": "array", "items": person}},
        "$defs": {"A": ADDRESS},
    }
    raw = (
        '{"people": [{"name": "Ann", "home": {"street": "Elm Rd", "city": "Oslo"}}, '
        '{"name": "Tom", "home": {"street": "Main St", "city": "Oslo"}}]}'
    )
    found = _annotated("Ann, Elm Rd, Oslo. Tom, Oslo.", raw, schema)
    assert found.data == {"people": [{"name": "Ann", "home": {"street": "Elm Rd", "city": "Oslo"}}]}
    assert found.unsupported == ()
    # Nothing above may go (the root): kept whole, the value marked as having no source.
    tom = '{"name": "Tom", "home": {"street": "Main St", "city": "Oslo"}}'
    alone = _annotated("Tom, Oslo.", tom, person | {"$defs": {"A": ADDRESS}})
    assert alone.data == json.loads(tom)
    assert alone.unsupported == ("/home/street",)


def test_an_object_that_would_break_the_schema_when_it_goes_is_kept() -> None:
    # The list must hold an item: the item with no street comes back, marked.
    schema = {
        "type": "object",
        "properties": {"homes": {"type": "array", "items": {"$ref": "#/$defs/A"}, "minItems": 1}},
        "$defs": {"A": ADDRESS},
    }
    raw = '{"homes": [{"street": "Main St", "city": "Oslo"}]}'
    found = _annotated("Oslo", raw, schema)
    assert found.data == json.loads(raw)
    assert found.unsupported == ("/homes/0/street",)


def _trace_at(raw: str, *parts: tuple[str, int, float]) -> tuple[TokenTrace, ...]:
    """A trace giving the ``n``-th occurrence of each ``text`` in ``raw`` the probability ``p``."""
    b, pieces = raw.encode(), []
    for text, n, p in parts:
        at = -1
        for _ in range(n):
            at = b.index(text.encode(), at + 1)
        pieces.append(TokenTrace(at, at + len(text.encode()), math.log(p)))
    return tuple(sorted(pieces, key=lambda piece: piece.start))


def test_an_object_that_goes_leaves_its_words_to_the_others() -> None:
    # The home went (no street in the text), but had won "Oslo" from the work address, which
    # then lost its city's source and went too.
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "home": OPTIONAL_ADDRESS,
            "work": OPTIONAL_ADDRESS,
        },
        "required": ["name", "home", "work"],
        "$defs": {"A": ADDRESS},
    }
    raw = (
        '{"name": "Tom", "home": {"street": "Main St", "city": "Oslo"}, '
        '"work": {"street": "5 Elm Rd", "city": "Oslo"}}'
    )
    trace = _trace_at(raw, ('"Oslo"', 1, 0.9), ('"Oslo"', 2, 0.6))
    found = _annotated("Tom works at 5 Elm Rd in Oslo.", raw, schema, trace)
    assert found.data == {
        "name": "Tom",
        "home": None,
        "work": {"street": "5 Elm Rd", "city": "Oslo"},
    }
    assert found.evidence["/work/city"] == [25, 29] and found.unsupported == ()


def test_only_a_refused_text_choice_takes_its_object_along() -> None:
    # A quantity the text doesn't give has no number to point at, and "Ann" went to "first"
    # (the surer field): each is marked, and the item stays.
    order = {
        "type": "object",
        "properties": {
            "first": {"type": "string"},
            "order": {"type": "array", "items": {
                "type": "object",
                "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"}},
                "required": ["product", "quantity"],
            }},
        },
    }  # fmt: skip
    raw = '{"first": "Ann", "order": [{"product": "Ann", "quantity": 2}]}'
    trace = _trace_at(raw, ('"Ann"', 1, 0.9), ('"Ann"', 2, 0.5))
    found = _annotated("Ann wants coffees.", raw, order, trace)
    assert found.data == json.loads(raw)
    assert found.unsupported == ("/order/0/product", "/order/0/quantity")


def test_an_object_brought_back_for_validity_keeps_the_other_abstentions() -> None:
    schema = {
        "type": "object",
        "properties": {
            "nick": {"type": "string"},
            "age": {"type": ["string", "null"]},
            "homes": {"type": "array", "items": {"$ref": "#/$defs/A"}, "minItems": 1},
        },
        "required": ["age", "homes"],
        "$defs": {"A": ADDRESS},
    }
    raw = '{"nick": "Zed", "age": "forty", "homes": [{"street": "Main St", "city": "Oslo"}]}'
    found = _annotated("Tom lives in Oslo.", raw, schema)
    assert found.data == {"age": None, "homes": [{"street": "Main St", "city": "Oslo"}]}
    assert found.unsupported == ("/homes/0/street",)


def test_the_root_object_never_goes() -> None:
    schema = {**ADDRESS, "type": ["object", "null"]}
    found = _annotated("Tom lives in Oslo.", '{"street": "Main St", "city": "Oslo"}', schema)
    assert found.data == {"street": "Main St", "city": "Oslo"}
    assert found.unsupported == ("/street",)


def _named(key: str, kind: str, *, both: bool = False) -> dict[str, Any]:
    """An object with a required name and an optional (``both``: required) ``key``."""
    return {
        "type": "object",
        "properties": {"name": {"type": "string"}, key: {"type": kind}},
        "required": ["name", key] if both else ["name"],
    }


def test_items_that_are_one_once_their_values_with_no_source_are_out_are_listed_once() -> None:
    # The model wrote "Bob" again and again with made-up ages: 67 items printed by --each.
    person = _named("age", "integer")
    schema = {"type": "object", "properties": {"people": {"type": "array", "items": person}}}
    raw = '{"people": [{"name": "Ann"}, {"name": "Bob", "age": 30}, {"name": "Bob", "age": 35}]}'
    found = _annotated("Ann is a painter. Bob is a baker.", raw, schema)
    assert found.data == {"people": [{"name": "Ann"}, {"name": "Bob"}]}
    assert found.evidence == {"/people/0/name": [0, 3], "/people/1/name": [18, 21]}
    assert _annotated("Ann is a painter. Bob is a baker.", raw, schema, abstain=False).data == (
        json.loads(raw)
    )


def test_two_items_from_two_places_in_the_text_stay_two() -> None:
    # Another "Bob" of the text is another item, whatever abstention took out of both (here
    # the cities, which the model was unsure of).
    person = _named("city", "string")
    schema = {"type": "object", "properties": {"people": {"type": "array", "items": person}}}
    raw = '{"people": [{"name": "Bob", "city": "Paris"}, {"name": "Bob", "city": "London"}]}'
    trace = _trace_at(raw, ('"Paris"', 1, 0.15), ('"London"', 1, 0.15))
    text = "Bob lives in Paris. Another Bob lives in London."
    found = _annotated(text, raw, schema, trace, abstain_below=0.2)
    assert found.data == {"people": [{"name": "Bob"}, {"name": "Bob"}]}
    assert found.evidence == {"/people/0/name": [0, 3], "/people/1/name": [28, 31]}


def test_items_listed_once_come_back_before_other_abstentions_do() -> None:
    # Two items are needed (minItems): listing Bob once broke the schema, and every
    # abstention came back with him (the made-up note and ages, exit 5 with
    # --require-evidence).
    person = _named("age", "integer")
    schema = {
        "type": "object",
        "properties": {
            "note": {"type": "string"},
            "people": {"type": "array", "items": person, "minItems": 2},
        },
    }
    raw = '{"note": "Zed", "people": [{"name": "Bob", "age": 30}, {"name": "Bob", "age": 35}]}'
    found = _annotated("Ann is a painter. Bob is a baker.", raw, schema)
    assert found.data == {"people": [{"name": "Bob"}, {"name": "Bob"}]}
    assert found.unsupported == ()


def _unsure_everywhere(raw: str, logprob: float) -> tuple[TokenTrace, ...]:
    """A trace in which the model gave every value of ``raw`` (a flat one-line document) the
    probability ``exp(logprob)``; the rest (keys, brackets) forced."""
    return tuple(TokenTrace(leaf.start, leaf.end, logprob) for leaf in leaf_spans(raw.encode()))


def test_an_unsure_optional_value_is_abstained_from_as_one_with_no_source() -> None:
    text = "Tom from Oslo, aka Tommy, 7, likes bees"
    raw = '{"name": "Tom", "age": 7, "city": "Oslo", "nick": "Tommy", "hobbies": ["bees"]}'
    unsure = _unsure_everywhere(raw, math.log(0.15))
    found = _annotated(text, raw, PERSON, unsure, abstain_below=0.2)
    # The optional city goes, the required nullable nick is null; the required name, the
    # number and the list item stay (each with its low confidence).
    assert found.data == {"name": "Tom", "age": 7, "nick": None, "hobbies": ["bees"]}
    assert found.confidence == {"/name": 0.15, "/age": 0.15, "/nick": 0.15, "/hobbies/0": 0.15}
    assert found.evidence["/nick"] is None
    assert found.unsupported == ()
    # At or above the threshold, or with it at 0, every value stays.
    sure = _unsure_everywhere(raw, math.log(0.2))
    assert _annotated(text, raw, PERSON, sure, abstain_below=0.2).data == json.loads(raw)
    assert _annotated(text, raw, PERSON, unsure).data == json.loads(raw)
    # A value the schema can't let go stays however unsure.
    schema = {**PERSON, "minProperties": 5}
    assert _annotated(text, raw, schema, unsure, abstain_below=0.2).data == json.loads(raw)


def _trace_of(raw: str, logprobs: dict[Path, float]) -> tuple[TokenTrace, ...]:
    """A trace giving the values of ``raw`` at the paths named these log-probabilities."""
    return tuple(
        TokenTrace(leaf.start, leaf.end, logprobs[leaf.path])
        for leaf in leaf_spans(raw.encode())
        if leaf.path in logprobs
    )


def test_only_optional_copied_text_is_abstained_from_as_unsure() -> None:
    schema = {
        "type": "object",
        "properties": {
            "born": {"type": "string", "format": "date"},  # read from the text, not a span
            "note": {"type": "string", "x-grounded": False},  # written by the model
            "city": {"type": "string"},
        },
    }
    raw = '{"born": "2018-03-23", "note": "a note", "city": "Oslo"}'
    unsure = _trace_of(raw, {("born",): -3.0, ("note",): -3.0, ("city",): -3.0})
    found = _annotated("Oslo, 23/03/2018", raw, schema, unsure, abstain_below=0.2)
    assert found.data == {"born": "2018-03-23", "note": "a note"}


def test_unsure_members_of_nested_objects_and_of_list_items_go_too() -> None:
    member = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
        "required": ["name"],
    }
    schema = {
        "type": "object",
        "properties": {"boss": member, "staff": {"type": "array", "items": member}},
    }
    raw = '{"boss": {"name": "Ann", "city": "Oslo"}, "staff": [{"name": "Bo", "city": "Rome"}]}'
    text = "Ann (Oslo) and Bo (Rome)"
    low = math.log(0.1)
    every = {("boss", "name"): low, ("boss", "city"): low}
    every |= {("staff", 0, "name"): low, ("staff", 0, "city"): low}
    found = _annotated(text, raw, schema, _trace_of(raw, every), abstain_below=0.2)
    assert found.data == {"boss": {"name": "Ann"}, "staff": [{"name": "Bo"}]}
    # Abstention off (what --keep-empty asks for): nothing goes.
    kept = _annotated(text, raw, schema, _trace_of(raw, every), abstain_below=0.2, abstain=False)
    assert kept.data == json.loads(raw)


@pytest.mark.parametrize("below", [-0.1, 1.5, math.nan])
def test_a_threshold_outside_0_to_1_is_a_usage_error(below: float) -> None:
    from qwenjson.errors import UsageError
    from qwenjson.pipeline import ExtractOptions

    with pytest.raises(UsageError, match="abstain_below must be from 0 to 1"):
        ExtractOptions(abstain_below=below)


def test_unsure_values_come_back_before_any_other_abstention_does() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}},
        "minProperties": 2,
    }
    raw = '{"a": "Tom", "b": "Oslo", "c": "Paris"}'
    unsure_b = _trace_of(raw, {("b",): math.log(0.1)})
    # "Paris" has no source: it goes at any threshold. Without "b" too the document would be
    # too small, so "b" comes back, not "Paris".
    for below in (0.0, 0.2):
        found = _annotated("Tom from Oslo", raw, schema, unsure_b, abstain_below=below)
        assert found.data == {"a": "Tom", "b": "Oslo"}
        assert found.unsupported == ()


def test_an_unsure_value_claims_no_words_from_another_field() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "places": {"type": "array", "items": {}}},
    }
    schema["properties"]["places"]["items"] = {"type": "string"}
    raw = '{"city": "Oslo", "places": ["Oslo"]}'
    trace = _trace_of(raw, {("city",): math.log(0.15), ("places", 0): math.log(0.1)})
    # The surer city keeps "Oslo" from the list ...
    assert _annotated("I live in Oslo", raw, schema, trace).data == {"city": "Oslo", "places": []}
    # ... unless it is dropped as unsure: then the list keeps it.
    found = _annotated("I live in Oslo", raw, schema, trace, abstain_below=0.2)
    assert found.data == {"places": ["Oslo"]}
    assert found.evidence == {"/places/0": [10, 14]}
    # With abstention off, nothing is unsure: the surer city keeps the words again.
    off = _annotated("I live in Oslo", raw, schema, trace, abstain_below=0.2, abstain=False)
    assert off.evidence == {"/city": [10, 14], "/places/0": None}


def test_an_unsure_value_brought_back_for_validity_has_no_words_another_field_owns() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
        "minProperties": 2,
    }
    raw = '{"name": "Oslo", "city": "Oslo"}'
    trace = _trace_of(raw, {("name",): math.log(0.9), ("city",): math.log(0.1)})
    for below in (0.0, 0.2):
        found = _annotated("Oslo", raw, schema, trace, abstain_below=below)
        # Kept whole for validity, the city has no source at any threshold.
        assert found.data == json.loads(raw)
        assert found.evidence == {"/name": [0, 4], "/city": None}
        assert found.unsupported == ("/city",)


def test_numbers_the_text_lacks_are_unsupported_or_left_out() -> None:
    schema = {**PERSON, "properties": {**PERSON["properties"], "weight": {"type": "number"}}}
    raw = '{"name": "Tom", "age": 30, "nick": null, "weight": 41.2}'
    found = _annotated("Tom paid RM 41.20", raw, schema)
    assert found.data == {"name": "Tom", "age": 30, "nick": None, "weight": 41.2}
    assert found.evidence["/weight"] == [12, 17]
    assert found.unsupported == ("/age",)  # required: kept, but flagged
    raw = '{"name": "Tom", "age": 30, "nick": null, "weight": 12}'
    assert "weight" not in _annotated("Tom is 30", raw, schema).data  # optional: left out


PEOPLE_PLACES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "people": {"type": "array", "items": {"type": "string"}},
        "places": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["people", "places"],
}


def test_one_piece_of_text_is_the_source_of_one_field() -> None:
    schema = PEOPLE_PLACES
    raw = '{"people": ["Anna Berg"], "places": ["Berg", "Oslo"]}'
    found = _annotated("Anna Berg lives in Oslo", raw, schema)
    assert found.data == {"people": ["Anna Berg"], "places": ["Oslo"]}
    # ... unless the words occur again elsewhere.
    found = _annotated("Anna Berg went to Berg", raw, schema)
    assert found.data == {"people": ["Anna Berg"], "places": ["Berg"]}
    assert found.evidence["/places/0"] == [18, 22]


def test_abstention_never_breaks_validity() -> None:
    schema = {
        **PERSON,
        "properties": {
            **PERSON["properties"],
            "hobbies": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
    }
    raw = '{"name": "Tom", "age": 7, "nick": null, "hobbies": [""]}'
    found = _annotated("Tom 7", raw, schema)
    assert found.data["hobbies"] == [""]  # dropping it would leave the list too short


def test_the_closing_reserve_counts_required_members_still_to_come() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "array", "items": {"type": "string"}},
            "inner": {"type": "object", "properties": {"x": {}, "y": {}}, "required": ["x", "y"]},
            "公司": {"type": "array", "items": {"type": "string"}},
            "note": {"type": "string"},
        },
        "required": ["a", "inner", "公司"],
    }
    g = Grounding(
        SourceText("t"), grounding_rules(schema), required_keys(schema), value_floors(schema)
    )
    assert g.closing_reserve() == 0  # nothing open yet
    g.accept(b'{"a": ["t"')
    # ', "inner": {"x": 0, "y": 0}' and ', "公司": []' still to come, at two bytes a token
    # (and one more for rounding, as before the floors).
    inner = len(b', "inner": {"x": 0, "y": 0}')
    company = len(', "公司": []'.encode())
    assert g.closing_reserve() == (inner + 2) // 2 + (company + 2) // 2
    g.accept(b'], "inner"')
    # The key is written: its value, the object with its own members, still to come.
    assert g.closing_reserve() == (len(b'{"x": 0, "y": 0}') + 1) // 2 + (company + 2) // 2
    g.accept(b': {"x": 1')
    assert g.closing_reserve() == (company + 2) // 2 + (len(b', "y": 0') + 2) // 2
    g.accept(', "y": 2}, "公司": ['.encode())
    assert g.closing_reserve() == 0


def _tracker(schema: dict[str, Any]) -> Grounding:
    return Grounding.from_fields(SourceText("t"), schema_fields(schema))


def test_the_closing_reserve_counts_the_items_a_list_still_owes() -> None:
    # Once the list was open its minItems counted nothing: steering began too late and a
    # document that could close ran out of tokens (SmolLM2, minItems 4, 45 tokens).
    people = {"type": "array", "items": _named("city", "string", both=True), "minItems": 3}
    schema = {"type": "object", "properties": {"people": people}}
    # Two bytes a token, the ", " and ": " between members (6 bytes) a byte a token; and the
    # ", " between items two tokens.
    item, comma = (len(b'{"name": "", "city": ""}') - 6) // 2 + 6, 2
    g = _tracker(schema)
    g.accept(b'{"people": [')
    assert g.closing_reserve() == 3 * item + 2 * comma
    g.accept(b'{"name": "A"')  # an item begun: its own members count, not the list's
    member = (len(b', "city": ""') + 2) // 2  # (as ever)
    assert g.closing_reserve() == 2 * (item + comma) + member
    g.accept(b', "city": "B"}, ')  # (a comma written)
    assert g.closing_reserve() == 2 * item + comma
    g.accept(b'{"name": "C", "city": "D"}, {"name": "E", "city": "F"}')
    assert g.closing_reserve() == 0
    # Numbers: each digit, and each ", " before one, a token (was a byte each: "0, 0, 0, 0"
    # reserved 4 tokens and takes 11).
    numbers = {"type": "array", "items": {"type": "integer"}, "minItems": 4}
    g = _tracker({"type": "object", "properties": {"xs": numbers}})
    g.accept(b'{"xs": [')
    assert g.closing_reserve() == 4 * 1 + 3 * comma


def test_a_required_date_is_reserved_a_token_a_digit() -> None:
    # Its floor was "" (a token) where the grammar writes ten characters: digits and the
    # characters next to them, a token each to Qwen2's tokenizer (scripts/steering_reserve.py).
    schema = {
        "type": "object",
        "properties": {"note": {"type": "string"}, "due": {"type": "string", "format": "date"}},
        "required": ["due"],
    }
    fields = schema_fields(schema)
    date = len(b'"2000-01-01"')
    assert (fields.floors[("due",)], fields.dense[("due",)]) == (date, date)
    g = _tracker(schema)
    g.accept(b'{"note": "x"')
    assert g.closing_reserve() == (len(b', "due": ') + 1) // 2 + date


@pytest.mark.parametrize(
    "key", ["ᚠᚢᚦᚨᚱᚲᚷᚹᚺᚾᛁᛃᛇᛈᛉᛊᛏᛒ", "xQzJkWpVbNmRtY", "ㄅㄆㄇㄈ", "ｱｲｳｴｵｶｷｸｹｺ", "name"]
)
def test_required_keys_are_reserved_the_tokens_the_models_tokenizer_gives_them(key: str) -> None:
    # At two bytes a token the reserve was below these keys' tokens (Runic: 58 against 32 on
    # SmolLM2), and four of them ran a document out of a budget it fitted (exit 5).
    from tests.grammar_engine import engine

    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, key: {"type": "boolean"}},
        "required": [key],
    }
    vocab = engine()
    g = _tracker(schema)
    g.measure_with(lambda text: len(vocab.tokenize(text.decode())))
    g.accept(b'{"a": "t"')
    member = f", {json.dumps(key, ensure_ascii=False)}: false"
    assert g.closing_reserve() >= len(vocab.tokenize(member))
    # A fork (a draft's check) counts them the same.
    assert g.fork().closing_reserve() == g.closing_reserve()


def test_value_floors_are_the_shortest_values_the_schema_allows() -> None:
    label = {"enum": ["a long category label", "short", 1234567]}
    schema = {
        "type": "object",
        "properties": {
            "c": label,
            "s": {"type": "string", "minLength": 3},
            "l": {"type": "array", "items": label, "minItems": 2},
            "o": {"type": ["object", "null"], "properties": {"k": label}, "required": ["k"]},
            "n": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        },
    }
    floors = value_floors(schema)
    # An enum's longest label: near the end of a budget the model may begin it, and steering
    # can't take it back (a long label begun there ran the document out, exit 5).
    label_bytes = len(b'"a long category label"')
    assert floors[("c",)] == label_bytes
    assert floors[("s",)] == len(b'"abc"')
    assert floors[("l",)] == 2 + 2 * label_bytes + 2
    assert floors[("o",)] == len(b"null")
    assert floors[("n",)] == len(b"0")
    assert floors[()] == len(b"{}")


def test_a_blank_where_the_text_breaks_the_line_is_written_as_the_break() -> None:
    g = Grounding(SourceText("LOT 3, JALAN 23/1,\n40300 SHAH ALAM"), grounding_rules(PERSON))
    assert _feed(g, '{"name": "LOT 3, JALAN 23/1,')
    assert not g.allows(b" 40300")
    assert g.blank_continuations(b" 40300") == [b"\\n40300 SHAH ALAM"]
    assert g.blank_continuations(b"40300") == []  # no blank: nothing to respell
    assert _feed(g, '\\n40300"')


def test_where_two_fields_claim_the_same_words_the_surer_one_keeps_them() -> None:
    schema = PEOPLE_PLACES
    raw = '{"people": ["Oslo"], "places": ["Oslo"]}'
    first, second = raw.index('"Oslo"'), raw.rindex('"Oslo"')
    unsure_first = (TokenTrace(first, first + 6, -2.0), TokenTrace(second, second + 6, -0.1))
    found = _annotated("We met in Oslo", raw, schema, unsure_first)
    assert found.data == {"people": [], "places": ["Oslo"]}
    assert found.confidence == {"/places/0": pytest.approx(0.9048, abs=1e-4)}
    sure_first = (TokenTrace(first, first + 6, -0.1), TokenTrace(second, second + 6, -2.0))
    assert _annotated("We met in Oslo", raw, schema, sure_first).data == {
        "people": ["Oslo"],
        "places": [],
    }


def test_a_runaway_number_is_cut_off() -> None:
    g = Grounding(SourceText("total 41.44"), grounding_rules(PERSON))
    assert _feed(g, '{"name": "total", "age": ' + "4" * 24)
    assert not g.allows(b"4")
    assert g.allows(b", ")


def test_a_number_too_large_for_a_float_has_no_source() -> None:
    raw = '{"name": "Tom", "age": ' + "9" * 400 + ', "nick": null}'
    found = _annotated("Tom is 9", raw, PERSON)
    assert found.unsupported == ("/age",)


def test_a_derived_number_is_found_as_the_readings_read_it() -> None:
    # Not grounded while generated: evidence finds it afterwards with the readings' own rules,
    # so the European money form and a thousands separator are found as they are when grounded.
    prices = {
        "type": "object",
        "properties": {
            "price": {"type": "number", "x-grounded": False},
            "total": {"type": "number", "x-grounded": False},
        },
    }
    text = "costs 12,50 EUR, 1,234.50 in all"
    found = _annotated(text, '{"price": 12.5, "total": 1234.5}', prices)
    assert found.evidence == {"/price": [6, 11], "/total": [17, 25]}
    assert text[6:11] == "12,50" and text[17:25] == "1,234.50"


def test_the_narrowed_mask_is_what_the_span_check_allows_for_pieces_of_any_length() -> None:
    # The oracle: every piece put to ``allows`` one by one. The narrowed mask looks pieces up by
    # prefix up to 48 bytes; a longer one the text spells (SmolLM2 has "#" runs of 64 bytes)
    # was refused by the mask though the span check allows it.
    text = "Title " + "#" * 70 + ' "end"'
    schema = {"type": "object", "properties": {"v": {"type": "string"}}, "required": ["v"]}
    pieces = [b"#", b"#" * 16, b"#" * 48, b"#" * 49, b"#" * 64, b"#" * 71, b'"', b"x" * 60, b"T"]
    pieces += [b"#" * 70 + b" ", b'", "', b"end"]
    index = index_pieces(len(pieces), pieces.__getitem__, lambda t: False)
    for written in (b'{"v": "Title ', b'{"v": "Title ##', b'{"v": "', b'{"v": "Title ' + b"#" * 70):
        g = Grounding(SourceText(text), grounding_rules(schema), required_keys(schema))
        g.accept(written)
        every = np.ones(len(pieces), dtype=bool)
        mask = narrowed(every, g, pieces.__getitem__, lambda: index)
        assert mask.tolist() == [g.allows(p) for p in pieces], written


def test_value_floors_of_a_recursive_schema_are_each_worked_out_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # k required members, each anyOf [null, the whole schema again]: worked out afresh at every
    # $ref, the floors took time as k**6 (k = 10: 82 s) before any generation.
    import qwenjson.fields as fields

    k = 12
    schema = {
        "type": "object",
        "properties": {f"m{i}": {"anyOf": [{"type": "null"}, {"$ref": "#"}]} for i in range(k)},
        "required": [f"m{i}" for i in range(k)],
    }
    calls = 0
    follow = fields.follow_local_refs

    def counted(root: Any, node: Any) -> Any:
        nonlocal calls
        calls += 1
        return follow(root, node)

    monkeypatch.setattr(fields, "follow_local_refs", counted)
    floors = value_floors(schema)
    # The walk stops at its budget of node visits (every pattern of the first levels), each
    # node's floor worked out once: k**6 was millions of calls.
    assert calls < 10 * fields._MAX_WALKS
    # Each member's shortest is null; the root's, its k keys with null each.
    assert floors[("m0",)] == len(b"null")
    assert floors[()] == 2 + sum(len(f'"m{i}": null') for i in range(k)) + 2 * (k - 1)


def test_the_strings_of_an_optional_nested_model_are_grounded() -> None:
    # Pydantic's Optional[Person]: anyOf [{"$ref": …}, {"type": "null"}]. Its strings had no
    # rule (an invented city came out with exit 0, even with x-grounded: true and
    # --require-evidence).
    schema = {
        "type": "object",
        "properties": {"p": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]}},
        "$defs": {
            "P": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "code": {"anyOf": [
                    {"type": "string", "maxLength": 5}, {"type": "null"}
                ]}},
                "required": ["name", "code"],
            }
        },
    }  # fmt: skip
    rules = grounding_rules(schema)
    assert rules[("p", "name")] == FieldRule(True, "none")
    assert rules[("p", "code")] == FieldRule(True, "null", max_chars=5)  # null, not invented


def test_the_values_of_a_nested_model_under_an_all_of_of_one_schema_have_rules() -> None:
    # Pydantic v1's nested model with a description: allOf [{"$ref": …}]. No rule reached
    # it: its strings were left to the grammar, and a count marked x-grounded: false still
    # needed a source (exit 5 with --require-evidence, a review's run).
    schema = {
        "type": "object",
        "properties": {
            "p": {"allOf": [{"$ref": "#/$defs/P"}], "description": "who"},
            "count": {"allOf": [{"type": "integer", "x-grounded": False}]},
            "two": {"allOf": [{"type": "string"}, {"maxLength": 9}]},  # parts: not merged
        },
        "required": ["p"],
        "$defs": {
            "P": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            }
        },
    }
    rules = grounding_rules(schema)
    assert rules[("p", "name")] == FieldRule(True, "none")
    assert rules[("count",)] == FieldRule(False, "omit", "integer")
    assert ("two",) not in rules


def test_prefix_items_keep_their_own_rules() -> None:
    # `items` covered every place, the prefix's enum label too: it was refused as ungrounded.
    schema = {
        "type": "array",
        "prefixItems": [{"enum": ["urgent", "normal"]}],
        "items": {"type": "string"},
    }
    found = _annotated("Ann needs this.", '["urgent", "Ann"]', schema)
    assert found.unsupported == ()


def test_rules_of_a_wide_recursive_schema_cover_its_first_levels() -> None:
    # A tree whose members are the schema again: a rule per path took k**12 walks (3 optional
    # self-references: 11 s before any generation; 4: over a minute). Every pattern of the
    # levels the walk budget holds (here three), none half-done.
    k = 12
    tree = {
        "type": "object",
        "properties": {"name": {"type": "string"}} | {f"m{i}": {"$ref": "#"} for i in range(k)},
    }
    rules = grounding_rules(tree)
    assert rules[("name",)].grounded and rules[("m0", "name")].grounded
    assert ("m0", "m1", "name") in rules and ("m0", "m1", "m2", "name") not in rules
    assert len(rules) == 1 + k + k**2


def test_a_value_does_not_end_inside_a_word_after_a_combining_mark() -> None:
    # Decomposed "Müller" gave "Mü" and "ller" (the mark is no letter, so its edge looked like
    # a word's); a Devanagari word was cut inside its conjunct.
    nfd = SourceText(unicodedata.normalize("NFD", "Müller kam."))
    assert nfd.span(unicodedata.normalize("NFD", "Mü").encode()) is None
    assert nfd.span(b"ller") is None
    assert nfd.span(unicodedata.normalize("NFD", "Müller").encode()) == (0, 7)
    hindi = SourceText("नमस्ते दुनिया")
    assert hindi.span("नमस्".encode()) is None and hindi.span("नमस्ते".encode()) == (0, 6)


def test_a_tree_of_one_self_reference_is_ruled_to_the_last_level() -> None:
    # Pydantic's Employee with reports: list[Employee]. A cap of two levels on recursion left
    # the third level's names free to be invented; one self-reference never blew up.
    employee = {
        "$ref": "#/$defs/E",
        "$defs": {
            "E": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "reports": {"type": "array", "items": {"$ref": "#/$defs/E"}},
                },
            }
        },
    }
    rules = grounding_rules(employee)
    deep = ("reports", None) * 5 + ("name",)
    assert rules[deep] == FieldRule(True, "omit")


def test_a_list_whose_prefix_places_are_plain_strings_keeps_its_item_rule() -> None:
    same = {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "string"}}
    assert grounding_rules(same) == {(None,): FieldRule(True, "item")}


def test_value_floors_of_two_defs_are_each_their_own() -> None:
    # Memoised by the id of the dict a $ref's following makes afresh, a freed id was reused:
    # the string's floor came out as the object's 36 bytes (an over-reserve that cuts output
    # short), the root's as 86.
    pair = {"type": "string"}
    obj = {
        "type": "object",
        "properties": {"xxxxxxxxxx": pair, "yyyyyyyyyy": pair},
        "required": ["xxxxxxxxxx", "yyyyyyyyyy"],
    }
    schema = {
        "type": "object",
        "properties": {"b": {"$ref": "#/$defs/B"}, "a": {"$ref": "#/$defs/A"}},
        "required": ["b", "a"],
        "$defs": {"A": {"type": "string"}, "B": obj},
    }
    floors = value_floors(schema)
    assert (floors[("a",)], floors[("b",)]) == (2, 36)
    assert floors[()] == len(b'{"b": {"xxxxxxxxxx": "", "yyyyyyyyyy": ""}, "a": ""}')


def test_thai_cuts_between_letters_and_hangul_keeps_its_syllables_whole() -> None:
    # Thai writes no blanks between words: only whole runs between blanks were values (and a
    # cut after a vowel mark, by accident). Decomposed Hangul could be cut inside a syllable.
    thai = SourceText("ผมทำงานที่กรุงเทพ")
    assert thai.span("กรุงเทพ".encode()) == (10, 17) and thai.span("ทำงาน".encode()) == (2, 7)
    assert thai.span("กร".encode()) is None  # before the vowel mark ุ: inside a character
    hangul = SourceText(unicodedata.normalize("NFD", "한국 사람"))
    assert hangul.span(unicodedata.normalize("NFD", "한국").encode()) == (0, 6)
    assert hangul.span("\u1112".encode()) is None  # the first jamo of 한 alone


@pytest.mark.parametrize("shop", [False, True])
def test_items_of_only_dates_and_numbers_may_repeat(shop: bool) -> None:
    # Two coffees of one price on one day are two purchases: only grounded text repeated ends
    # a list (objects of dates and numbers ended it, and the second was dropped). With a text
    # field in the item's schema (``shop``) that these items don't write, the same: the
    # tracker ended the list on the repeat while the evidence kept it.
    properties: dict[str, Any] = {
        "date": {"type": "string", "format": "date"},
        "amount": {"type": "number"},
    }
    if shop:
        properties["shop"] = {"type": "string"}
    purchases = {"type": "array", "items": {"type": "object", "properties": properties}}
    text = "2020-01-01 coffee 3.50; 2020-01-01 coffee 3.50; 2020-01-02 tea 2.00"
    g = Grounding(SourceText(text), grounding_rules(purchases))
    two = '[{"date": "2020-01-01", "amount": 3.50}, {"date": "2020-01-01", "amount": 3.50}'
    assert _feed(g, two) and g.allows(b", ")
    assert len(_annotated(text, two + "]", purchases).data) == 2
    if shop:  # with the text written, the same item twice is a loop, as before
        g = Grounding(SourceText(text), grounding_rules(purchases))
        item = '{"shop": "coffee", "amount": 3.50}'
        assert _feed(g, f"[{item}, {item}") and not g.allows(b", ")


def test_a_big_schema_without_recursion_is_ruled_whole() -> None:
    # 12,000 strings through $refs: a budget on every walk lost all their rules (and an
    # unrelated field's); only a recursive schema's later levels are bounded.
    leaf = {"type": "object", "properties": {f"x{j}": {"type": "string"} for j in range(10)}}
    mid = {"type": "object", "properties": {f"m{j}": {"$ref": "#/$defs/Leaf"} for j in range(30)}}
    schema: dict[str, Any] = {
        "$defs": {"Leaf": leaf, "Mid": mid},
        "type": "object",
        "properties": {f"t{j}": {"$ref": "#/$defs/Mid"} for j in range(40)},
    }
    schema["properties"]["contact"] = {
        "type": "object",
        "properties": {"address": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    rules = grounding_rules(schema)
    assert len(rules) == 12_001 and ("t39", "m29", "x9") in rules
    assert ("contact", "address", "city") in rules


def test_thai_digits_stay_whole_numbers_and_stacked_letters_stay_together() -> None:
    assert SourceText("ปี ๒๕๖๗").span("๒๕".encode()) is None
    assert SourceText("ស្រុក").span("ស្".encode()) is None  # Khmer coeng: the next letter is under
    assert SourceText("เชียงใหม่").span("เ".encode()) is None  # a vowel written before its letter


def test_defs_that_name_each_other_are_ruled_within_a_bound() -> None:
    # Nine $defs each naming the other eight: never the same $ref twice down a path, yet about
    # 9! paths (the unbounded first walk took 3 s; ten defs, 27 s). Their first levels instead.
    k = 9
    defs = {
        f"D{i}": {
            "type": "object",
            "properties": {"name": {"type": "string"}}
            | {f"to{j}": {"$ref": f"#/$defs/D{j}"} for j in range(k) if j != i},
        }
        for i in range(k)
    }
    schema = {"$ref": "#/$defs/D0", "$defs": defs}
    rules = grounding_rules(schema)
    assert ("name",) in rules and ("to1", "name") in rules
    assert len(rules) < 10_000


def test_an_item_repeated_with_its_text_null_is_data_as_the_tracker_reads_it() -> None:
    purchases = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "shop": {"type": ["string", "null"]}},
        },
    }
    text = "coffee 3.50; coffee 3.50"
    raw = '[{"amount": 3.50, "shop": null}, {"amount": 3.50, "shop": null}]'
    assert len(_annotated(text, raw, purchases).data) == 2
    g = Grounding(SourceText(text), grounding_rules(purchases))
    assert _feed(g, raw[:-1]) and g.allows(b", ")


def test_a_schema_whose_stopped_children_are_many_still_keeps_to_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import qwenjson.fields as fields

    # Nine $defs naming each other, each with 600 members naming their own $def again: the
    # stopped children were not counted, so the time grew with them (600: 15 s).
    k, m = 9, 600
    defs = {
        f"D{i}": {
            "type": "object",
            "properties": {"name": {"type": "string"}}
            | {f"to{j}": {"$ref": f"#/$defs/D{j}"} for j in range(k) if j != i}
            | {f"self{n}": {"$ref": f"#/$defs/D{i}"} for n in range(m)},
        }
        for i in range(k)
    }
    visits = 0
    count = fields._Walker._count

    def counted(self: Any) -> None:
        nonlocal visits
        visits += 1
        count(self)

    monkeypatch.setattr(fields._Walker, "_count", counted)
    rules = grounding_rules({"$ref": "#/$defs/D0", "$defs": defs})
    assert ("name",) in rules and ("to1", "name") in rules
    assert visits < 10 * fields._MAX_FIRST_WALK  # each walk bounded, a search of a few walks


@pytest.mark.parametrize("default", [True, False])
def test_one_walk_gives_what_the_three_functions_give(default: bool) -> None:
    # The Extractor walked each schema three times; schema_fields walks it once (twice without
    # grounding by default), with the same results.
    optional = {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]}
    tuple_list = {"type": "array", "prefixItems": [{"enum": ["a", "b"]}], "items": {}}
    schemas: list[dict[str, Any]] = [
        PEOPLE,
        {
            "type": "object",
            "properties": {"p": optional, "t": tuple_list, "n": {"type": "integer"}},
            "required": ["p"],
            "$defs": {"P": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
        {"type": "object", "properties": {f"m{i}": {"$ref": "#"} for i in range(3)}},
    ]
    for schema in schemas:
        fields = schema_fields(schema, default=default)
        assert fields.rules == grounding_rules(schema, default=default)
        assert (fields.required, fields.floors) == (required_keys(schema), value_floors(schema))


@pytest.mark.parametrize(
    ("piece", "around", "spans", "not_spans"),
    [
        # A piece of a longer input: its edges inside a word are no place to start or end.
        ("live in Osl", ("", "o now"), [b"live in"], [b"Osl", b"in Osl"]),
        ("lo is cold", ("in Os", ""), [b"is cold"], [b"lo", b"lo is"]),
        # In Chinese any character boundary is a word's, but not a piece's edge in a name.
        ("我认识欧阳", ("", "芳伟。"), ["我认识".encode()], ["欧阳".encode()]),
        ("芳伟是朋友", ("欧阳", ""), ["是朋友".encode()], ["芳伟".encode()]),
        # At a blank or a mark the edge is a boundary as in the whole text.
        ("北京", ("", "，上海"), ["北京".encode()], []),
        ("Oslo", ("in ", "."), [b"Oslo"], []),
        # The whole input (nothing around): its ends are boundaries.
        ("我认识欧阳", ("", ""), ["欧阳".encode()], []),
    ],
)
def test_a_pieces_edges_are_boundaries_only_where_the_whole_inputs_are(
    piece: str, around: tuple[str, str], spans: list[bytes], not_spans: list[bytes]
) -> None:
    # A name cut by a piece's end was a value of that piece, and the merge kept it cut while
    # the next piece's whole name was dropped as the same mention.
    source = SourceText(piece, 0, around)
    assert all(source.spans(s) for s in spans)
    assert not any(source.spans(s) for s in not_spans)
