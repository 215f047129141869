"""Labels asked for after the values they classify, the document printed in the schema's order
(``qwenjson.label_order``)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from qwenjson.label_order import in_schema_order, labels_last, member_order
from qwenjson.pipeline import Extractor, open_model
from tests.grammar_engine import default_model_path

MOOD = {"type": "string", "enum": ["happy", "sad"]}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "mood": MOOD,
        "name": {"type": "string"},
        "kind": {"$ref": "#/$defs/kind"},
        "visits": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"rating": MOOD, "place": {"type": "string"}},
                "enum": [{"rating": "sad", "place": "x"}, {"place": "y", "rating": "happy"}],
            },
        },
    },
    "required": ["mood", "name"],
    "$defs": {
        "kind": {"enum": ["a", "b"]},
        "pair": {"properties": {"x": MOOD, "y": {"type": "integer"}}},
    },
}


def test_labels_go_after_the_other_members_of_each_object() -> None:
    before = copy.deepcopy(SCHEMA)
    asked = labels_last(SCHEMA)
    assert before == SCHEMA  # a new schema, not an edit
    assert list(asked["properties"]) == ["name", "visits", "mood", "kind"]  # a $ref's enum too
    assert list(asked["properties"]["visits"]["items"]["properties"]) == ["place", "rating"]
    assert list(asked["$defs"]["pair"]["properties"]) == ["y", "x"]
    # An enum's values are data: left as written.
    assert (
        asked["properties"]["visits"]["items"]["enum"]
        == SCHEMA["properties"]["visits"]["items"]["enum"]
    )
    assert list(asked["properties"]["visits"]["items"]["enum"][0]) == ["rating", "place"]


def test_only_subschemas_are_read_whatever_the_members_are_called() -> None:
    # A member called "enum" is a schema like any; a tuple of item schemas (draft 4) too.
    named = {"properties": {"enum": {"properties": {"a": MOOD, "b": {}}}, "x": {}}}
    assert list(labels_last(named)["properties"]["enum"]["properties"]) == ["b", "a"]
    assert list(labels_last(named)["properties"]) == ["enum", "x"]
    tuple_items = {"items": [{"properties": {"a": MOOD, "b": {}}}, True]}
    assert list(labels_last(tuple_items)["items"][0]["properties"]) == ["b", "a"]
    assert labels_last(tuple_items)["items"][1] is True


def test_nothing_to_move_leaves_the_schema_itself() -> None:
    plain = {"type": "object", "properties": {"name": {"type": "string"}, "mood": MOOD}}
    assert labels_last(plain) is plain
    one = {"type": "object", "properties": {"only": {"enum": ["x"]}, "name": {"type": "string"}}}
    assert labels_last(one) is one  # one value is no choice to make
    assert labels_last(True) is True


def test_a_document_in_the_schemas_own_order() -> None:
    written = {"name": "Ann", "visits": [{"place": "Rome", "rating": "happy"}], "mood": "sad"}
    printed = in_schema_order(written, member_order(SCHEMA))
    assert printed == written
    assert list(printed) == ["mood", "name", "visits"]
    assert list(printed["visits"][0]) == ["rating", "place"]
    # Members the schema doesn't list keep their place after those it does.
    assert list(
        in_schema_order({"extra": 1, "name": "x", "mood": "sad"}, member_order(SCHEMA))
    ) == [
        "mood",
        "name",
        "extra",
    ]


@pytest.mark.model
def test_extract_asks_for_labels_last_and_prints_the_schemas_order() -> None:
    schema = {
        "type": "object",
        "properties": {"mood": MOOD, "name": {"type": "string"}},
        "required": ["mood", "name"],
    }
    model = open_model(str(default_model_path()), threads=1)
    try:
        extractor = Extractor(schema, model)
        system = extractor.messages("Ann is glad.")[0]["content"]
        assert system.index('"name"') < system.index('"mood"')
        result = extractor.run("Ann is glad today.")
    finally:
        model.close()
    assert list(json.loads(result.json)) == ["mood", "name"]
    assert list(result.data) == ["mood", "name"]
