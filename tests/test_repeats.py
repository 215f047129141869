"""Lists of unique items with the model's repeats taken out (``qwenjson.repeats``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwenjson.repeats import json_equal, repeats_to_drop, without_repeats
from qwenjson.validate import make_validator, repeated_lists

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([1.0, 2.5, -0.0])
    | st.text(max_size=2),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        (0, -0.0, True),
        ({"a": 1, "b": [True]}, {"b": [True], "a": 1.0}, True),
        ([1, 2], [2, 1], False),
        ("1", 1, False),
        (None, False, False),
        ([True], [1], False),
    ],
)
def test_json_equal_is_the_equality_of_unique_items(a: Any, b: Any, same: bool) -> None:
    assert json_equal(a, b) is same
    # The oracle: jsonschema's own uniqueItems on the pair.
    validator = make_validator({"uniqueItems": True})
    assert validator.is_valid([a, b]) is not same


@given(st.lists(JSON, max_size=5))
def test_without_repeats_leaves_a_list_jsonschema_calls_unique(items: list[Any]) -> None:
    validator = make_validator({"type": "array", "uniqueItems": True})
    kept = without_repeats(items, {()})
    assert validator.is_valid(kept)
    # Only repeats went, the first copy of each in its place.
    assert all(any(json_equal(item, k) for k in kept) for item in items)
    firsts = [k for k, item in enumerate(items) if not any(json_equal(item, x) for x in items[:k])]
    assert kept == [items[k] for k in firsts]
    if validator.is_valid(items):
        assert kept == items


def test_the_lists_that_break_unique_items_are_found_behind_refs_and_all_of() -> None:
    schema = {
        "$defs": {"tags": {"type": "array", "uniqueItems": True}},
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/tags"},
            "b": {"allOf": [{"type": "array"}, {"uniqueItems": True}]},
            "c": {"type": "array"},
            "d": {"type": "array", "items": {"$ref": "#/$defs/tags"}},
        },
    }
    data = {"a": [1, 1], "b": ["x", "x"], "c": [2, 2], "d": [[3], [4, 4.0]]}
    lists = repeated_lists(data, make_validator(schema))
    assert lists == {("a",), ("b",), ("d", 1)}
    assert without_repeats(data, lists) == {"a": [1], "b": ["x"], "c": [2, 2], "d": [[3], [4]]}


def test_an_inner_repeat_is_taken_out_before_the_items_are_compared() -> None:
    data = [["x", "x"], ["x"]]
    assert without_repeats(data, {(), (0,)}) == [["x"]]


@pytest.mark.parametrize("of", ["anyOf", "oneOf"])
def test_a_list_under_any_of_is_found_too(of: str) -> None:
    # Pydantic's Optional[set[str]]: the uniqueItems error is a branch's, not the document's.
    schema = {
        "type": "object",
        "properties": {
            "stops": {
                of: [
                    {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                    {"type": "null"},
                ]
            }
        },
    }
    data = {"stops": ["Paris", "London", "Paris"]}
    assert repeats_to_drop(data, make_validator(schema)) == {("stops",)}


def test_an_outer_repeat_an_inner_one_made_is_found_in_the_documents_places() -> None:
    tags = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    group = {"type": "object", "properties": {"tags": tags}}
    schema = {
        "type": "array",
        "items": {"type": "array", "items": group, "uniqueItems": True},
    }
    # The outer list of the second element: two groups once "red" is listed once.
    data = [[], [{"tags": ["red", "red"]}, {"tags": ["blue"]}, {"tags": ["red"]}]]
    validator = make_validator(schema)
    assert repeated_lists(data, validator) == {(1, 0, "tags")}
    lists = repeats_to_drop(data, validator)
    assert lists == {(1, 0, "tags"), (1,)}
    assert without_repeats(data, lists) == [[], [{"tags": ["red"]}, {"tags": ["blue"]}]]
    assert validator.is_valid(without_repeats(data, lists))
    # Found in a list that moved up (its place in the document as written is kept).
    both = make_validator({**schema, "uniqueItems": True})
    data = [[], [], [{"tags": ["r", "r"]}, {"tags": ["r"]}]]
    lists = repeats_to_drop(data, both)
    assert lists == {(), (2, 0, "tags"), (2,)}
    assert without_repeats(data, lists) == [[], [{"tags": ["r"]}]]
