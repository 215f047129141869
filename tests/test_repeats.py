"""Lists of unique items with the model's repeats taken out (``qwenjson.repeats``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwenjson.repeats import json_equal, without_repeats
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
