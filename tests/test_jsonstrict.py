"""Strict JSON: what Python's json accepts but a pipeline can't use is refused, saying where."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwenjson import jsonstrict


@pytest.mark.parametrize(
    ("text", "message", "pointer"),
    [
        ('{"a": NaN}', "NaN is not a JSON number", "/a"),
        ("[1, Infinity]", "Infinity is not a JSON number", "/1"),
        ('{"a": {"b": -Infinity}}', "-Infinity is not a JSON number", "/a/b"),
        ('{"a": [1e400]}', "1e400 is too large for a number", "/a/0"),
        ('{"n": ' + "9" * 5000 + "}", "an integer of 5000 digits", "/n"),
        ('{"a": 1, "a": 2}', 'duplicate key "a"', ""),
        ('{"x": {"a/b": {"k": 1, "k": 1}}}', 'duplicate key "k"', "/x/a~1b"),
        ('{"s": "a \\ud800"}', "lone surrogate", "/s"),
        ('{"\\udc00": 1}', "lone surrogate", ""),
        ("[" * 200 + "]" * 200, "nested more than 128 levels deep", "/0/0/0"),
        ("[" * 100_000 + "]" * 100_000, "nested more than 128 levels deep", None),
        # The first problem in the text is the one named.
        ('{"a": [1, NaN], "b": Infinity}', "NaN is not a JSON number", "/a/1"),
    ],
)
def test_refused_with_the_place(text: str, message: str, pointer: str | None) -> None:
    with pytest.raises(jsonstrict.JsonValueError) as caught:
        jsonstrict.loads(text)
    assert message in caught.value.message
    if pointer is None:
        assert caught.value.pointer is None
    else:
        assert caught.value.pointer is not None and caught.value.pointer.startswith(pointer)


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, "x", None, True]}, [], "李明", 10**4000, 1e308, {"a": "\U0001f600"}],
)
def test_what_json_allows_is_read_as_json_reads_it(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert jsonstrict.loads(text) == json.loads(text)


def test_text_that_isnt_json_is_a_decode_error_with_its_column() -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        jsonstrict.loads('{"a": }')
    assert caught.value.colno == 7


def test_check_refuses_values_built_in_python() -> None:
    with pytest.raises(jsonstrict.JsonValueError, match=r"nan is not a JSON number \(at /a/0\)"):
        jsonstrict.check({"a": [float("nan")]})
    jsonstrict.check({"a": [1.5, "ok"]})


def test_json_pointer_escapes() -> None:
    assert jsonstrict.json_pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"
    assert jsonstrict.json_pointer([]) == ""


def test_doubles_refuses_integers_beyond_a_double_where_asked() -> None:
    jsonstrict.check({"max": 10**400})
    with pytest.raises(jsonstrict.JsonValueError, match=r"401 digits, beyond .* \(at /max\)"):
        jsonstrict.check({"max": 10**400}, doubles=True)
    jsonstrict.check({"max": 10**300, "min": -(10**300)}, doubles=True)
