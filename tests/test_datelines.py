"""Entity-list items cut before the date their source ends in (``qwenjson.datelines``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qwenjson.datelines import trim_dates
from qwenjson.evidence import Annotated
from qwenjson.source import SourceText
from qwenjson.validate import make_validator

LISTS = ("people", "locations")
TEXT = "Clinton wins.\nCHICAGO 1996-08-28\nPresident Bill Clinton was nominated in Chicago."


def _found(text: str, items: dict[str, list[str]], offset: int = 0) -> Annotated:
    """The items with the first place the text says each as evidence (offsets into the input,
    ``offset`` code points before ``text``)."""
    evidence: dict[str, list[int] | None] = {}
    for name, values in items.items():
        for i, value in enumerate(values):
            at = text.find(value)
            evidence[f"/{name}/{i}"] = None if at < 0 else [offset + at, offset + at + len(value)]
    confidence = {p: 0.5 for p in evidence}
    return Annotated(items, evidence, confidence, ())


def _always(_: Any) -> bool:
    return True


def test_a_dateline_place_loses_its_date_and_evidence_follows() -> None:
    found = _found(TEXT, {"people": ["Bill Clinton"], "locations": ["CHICAGO 1996-08-28"]})
    out = trim_dates(found, LISTS, SourceText(TEXT), _always)
    assert out.data == {"people": ["Bill Clinton"], "locations": ["CHICAGO"]}
    start, end = out.evidence["/locations/0"]  # type: ignore[misc]
    assert TEXT[start:end] == "CHICAGO"
    assert out.evidence["/people/0"] == found.evidence["/people/0"]
    assert out.confidence == found.confidence  # the whole span's: a lower bound of the name's


def test_offsets_of_a_piece_of_a_longer_input() -> None:
    piece, before = "BONN, 22 August 1996\nGermany said on Thursday", 500
    found = _found(piece, {"people": [], "locations": ["BONN, 22 August 1996"]}, before)
    out = trim_dates(found, LISTS, SourceText(piece, before), _always)
    assert out.data["locations"] == ["BONN"]
    assert out.evidence["/locations/0"] == [before, before + 4]


def test_names_without_a_date_at_their_end_are_left_alone() -> None:
    text = "Apollo 13 landed 1970-04-17 in the Pacific; Report-1996-08-28 was filed."
    items = {"people": ["1970-04-17"], "locations": ["Apollo 13", "Report-1996-08-28"]}
    found = _found(text, items)
    # A date alone has no name before it; a date written onto a word has no blank before it.
    assert trim_dates(found, LISTS, SourceText(text), _always) is found


def test_only_the_entity_lists_and_only_the_texts_own_words() -> None:
    text = "PARIS 2018-03-23: talks"
    found = Annotated(
        {"people": ["Paris 2018-03-23"], "notes": ["PARIS 2018-03-23"]},
        {"/people/0": [0, 16], "/notes/0": [0, 16]},
        {},
        (),
    )
    # "Paris …" is not what the text says there (case); "notes" is no entity list.
    assert trim_dates(found, ("people", "locations"), SourceText(text), _always) is found


def test_kept_whole_when_the_cut_document_would_not_validate() -> None:
    schema = {
        "type": "object",
        "properties": {
            "people": {"type": "array", "items": {"type": "string"}},
            "locations": {"type": "array", "items": {"type": "string", "minLength": 10}},
        },
    }
    found = _found(TEXT, {"people": [], "locations": ["CHICAGO 1996-08-28"]})
    valid = make_validator(schema).is_valid
    assert trim_dates(found, LISTS, SourceText(TEXT), valid) is found


_NAMES = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=12,
)
_DATES = st.sampled_from(["1996-08-28", "28/08/1996", "28 Aug 1996", "August 28, 1996"])


@given(
    before=st.text(max_size=20),
    name=_NAMES,
    sep=st.sampled_from([" ", "  ", ", ", " - ", "\t"]),
    date=_DATES,
    after=st.text(max_size=20),
)
def test_evidence_always_slices_the_input_to_the_value(
    before: str, name: str, sep: str, date: str, after: str
) -> None:
    text = f"{before}\n{name}{sep}{date}\n{after}"
    start = len(before) + 1
    value = text[start : start + len(name) + len(sep) + len(date)]
    found = Annotated(
        {"people": [], "locations": [value]},
        {"/locations/0": [start, start + len(value)]},
        {"/locations/0": 0.25},
        (),
    )
    out = trim_dates(found, LISTS, SourceText(text), _always)
    kept = out.data["locations"][0]
    span = out.evidence["/locations/0"]
    assert span is not None and text[span[0] : span[1]] == kept
    assert kept == value or (kept and value.startswith(kept) and len(kept) < len(value))
    if name.isalpha():  # a plain name before a blank and a date: the date goes, the name stays
        assert kept == name
