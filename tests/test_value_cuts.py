"""Strings cut to a part, evidence and all (``qwenjson.value_cuts``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qwenjson.evidence import Annotated
from qwenjson.fields import Path
from qwenjson.source import SourceText
from qwenjson.value_cuts import DROP, cut_values

TEXT = "Dear Dr. Ada Lovelace, see room B-12."
DATA = {"to": {"names": ["Dr. Ada Lovelace"], "room": "room B-12"}, "n": 3}
EVIDENCE: dict[str, list[int] | None] = {
    "/to/names/0": [5, 21],
    "/to/room": [27, 36],
    "/n": None,
}


def _found() -> Annotated:
    return Annotated(copy.deepcopy(DATA), dict(EVIDENCE), {"/to/names/0": 0.4}, ())


def _always(_: Any) -> bool:
    return True


def test_nested_strings_are_cut_and_the_input_is_left_as_it_was() -> None:
    seen: list[tuple[Path, str, tuple[int, int]]] = []

    def cutter(path: Path, value: str, span: tuple[int, int]) -> tuple[int, int] | None:
        seen.append((path, value, span))
        return (4, len(value)) if value.startswith("Dr. ") else None

    found = _found()
    out = cut_values(found, cutter, SourceText(TEXT), _always)
    assert out.data == {"to": {"names": ["Ada Lovelace"], "room": "room B-12"}, "n": 3}
    assert out.evidence["/to/names/0"] == [9, 21] and TEXT[9:21] == "Ada Lovelace"
    assert out.confidence == found.confidence
    assert found.data == DATA and found.evidence == EVIDENCE  # a new document, not an edit
    # Only strings with a source are asked, with it; the number isn't.
    assert seen == [
        (("to", "names", 0), "Dr. Ada Lovelace", (5, 21)),
        (("to", "room"), "room B-12", (27, 36)),
    ]


def test_a_string_that_is_not_the_texts_words_there_is_not_asked() -> None:
    found = Annotated({"to": "Dr. Ada"}, {"/to": [0, 7]}, {}, ())  # the text says "Dear Dr"

    def cutter(path: Path, value: str, span: tuple[int, int]) -> tuple[int, int] | None:
        raise AssertionError("asked")

    assert cut_values(found, cutter, SourceText(TEXT), _always) is found


def test_whole_when_nothing_is_cut_or_the_cut_document_is_invalid() -> None:
    found = _found()
    assert cut_values(found, lambda *_: None, SourceText(TEXT), _always) is found
    assert cut_values(found, lambda p, v, s: (0, len(v)), SourceText(TEXT), _always) is found
    never = cut_values(found, lambda p, v, s: (0, 1), SourceText(TEXT), lambda _: False)
    assert never is found


@pytest.mark.parametrize("part", [(3, 3), (-1, 2), (0, 99), (5, 2)])
def test_a_cutter_that_keeps_no_part_is_a_bug(part: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="must keep a part"):
        cut_values(_found(), lambda *_: part, SourceText(TEXT), _always)


def test_a_dropped_item_goes_and_the_items_after_it_move_up_with_their_marks() -> None:
    text = "Ana, the boat, Bo and Cy"
    data = {"names": ["Ana", "the boat", "Bo", "Cy"], "n": 1}
    evidence: dict[str, list[int] | None] = {
        "/names/0": [0, 3],
        "/names/1": [5, 13],
        "/names/2": [15, 17],
        "/names/3": [22, 24],
        "/n": None,
    }
    confidence = {"/names/0": 0.9, "/names/1": 0.2, "/names/2": 0.7, "/names/3": 0.6, "/n": 1.0}
    found = Annotated(data, evidence, confidence, ("/names/3", "/n"))

    def cutter(path: Path, value: str, span: tuple[int, int]) -> tuple[int, int] | None:
        return DROP if value == "the boat" else (0, 1) if value == "Cy" else None

    out = cut_values(found, cutter, SourceText(text), _always)
    assert out.data == {"names": ["Ana", "Bo", "C"], "n": 1}
    assert out.evidence == {
        "/names/0": [0, 3],
        "/names/1": [15, 17],
        "/names/2": [22, 23],
        "/n": None,
    }
    assert out.confidence == {"/names/0": 0.9, "/names/1": 0.7, "/names/2": 0.6, "/n": 1.0}
    assert out.unsupported == ("/names/2", "/n")
    assert found.data["names"] == ["Ana", "the boat", "Bo", "Cy"]  # not an edit
    # Left whole when the shorter list would not validate.
    assert cut_values(found, cutter, SourceText(text), lambda d: len(d["names"]) == 4) is found


def test_only_a_list_item_can_be_dropped() -> None:
    with pytest.raises(ValueError, match="only a list item"):
        cut_values(
            _found(), lambda p, v, s: DROP if p[-1] == "room" else None, SourceText(TEXT), _always
        )


def test_items_dropped_from_nested_lists_keep_every_other_mark_in_place() -> None:
    text = "ann bob cy dee"
    data = {"groups": ["ann", {"names": ["bob", "cy"]}, "dee"]}
    evidence: dict[str, list[int] | None] = {
        "/groups/0": [0, 3],
        "/groups/1/names/0": [4, 7],
        "/groups/1/names/1": [8, 10],
        "/groups/2": [11, 14],
    }
    confidence = dict(zip(evidence, (0.1, 0.2, 0.3, 0.4), strict=True))
    found = Annotated(data, evidence, confidence, ("/groups/1/names/1",))
    gone = {"ann", "bob"}
    out = cut_values(found, lambda p, v, s: DROP if v in gone else None, SourceText(text), _always)
    assert out.data == {"groups": [{"names": ["cy"]}, "dee"]}
    assert out.evidence == {"/groups/0/names/0": [8, 10], "/groups/1": [11, 14]}
    assert out.confidence == {"/groups/0/names/0": 0.3, "/groups/1": 0.4}
    assert out.unsupported == ("/groups/0/names/0",)


def test_only_the_strings_where_says_are_asked() -> None:
    asked: list[Path] = []

    def cutter(path: Path, value: str, span: tuple[int, int]) -> tuple[int, int] | None:
        asked.append(path)
        return (4, len(value)) if value.startswith("Dr. ") else None

    out = cut_values(_found(), cutter, SourceText(TEXT), _always, where={("to", "names", None)})
    assert asked == [("to", "names", 0)]
    assert out.data["to"] == {"names": ["Ada Lovelace"], "room": "room B-12"}
    assert cut_values(_found(), cutter, SourceText(TEXT), _always, where={("n",)}).data == DATA
