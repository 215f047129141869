"""Person names cut to the name, no title before or honorific after (qwenjson.person_names)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qwenjson.evidence import Annotated
from qwenjson.fields import grounding_rules
from qwenjson.labeling import entity_lists
from qwenjson.person_names import cut_titles, person_fields, with_entity_lists
from qwenjson.source import SourceText
from qwenjson.validate import make_validator


def _fields(schema: dict[str, Any]) -> frozenset[Any]:
    rules = grounding_rules(schema)
    return with_entity_lists(person_fields(schema, rules), entity_lists(rules, schema))


def _always(_: Any) -> bool:
    return True


def _strings(*names: str, **described: str) -> dict[str, Any]:
    props: dict[str, Any] = {n: {"type": "string"} for n in names}
    props |= {n: {"type": "string", "description": d} for n, d in described.items()}
    return {"type": "object", "properties": props}


def _lists(**described: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            n: {"type": "array", "description": d, "items": {"type": "string"}}
            for n, d in described.items()
        },
    }


def test_fields_that_hold_person_names_by_name_or_by_description() -> None:
    assert _fields(_strings(name="本人姓名", company="公司名")) == {("name",)}
    assert _fields(_strings("authors", "title")) == {("authors",)}
    assert _fields(_strings(lead="Full name of the lead author")) == {("lead",)}
    resume = _lists(people="People mentioned; each once", places="Cities and countries")
    # A title marks a person in whichever sibling list the model put it.
    assert _fields(resume) == {("people", None), ("places", None)}


def test_fields_that_only_mention_people_or_say_nothing_are_not_persons() -> None:
    booking = _strings(
        "name", party_size="number of people for the booking", product="product name"
    )
    assert _fields(booking) == frozenset()
    assert _fields(_lists(cities="Cities mentioned", companies="Companies")) == frozenset()


def _found(text: str, data: dict[str, Any], offset: int = 0) -> Annotated:
    """``data`` with the first place the text says each string (top level, or in a list) as its
    evidence, in the input's offsets (``offset`` code points before ``text``)."""
    evidence: dict[str, list[int] | None] = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            pointer = f"/{key}/{i}" if isinstance(value, list) else f"/{key}"
            at = text.find(v)
            evidence[pointer] = None if at < 0 else [offset + at, offset + at + len(v)]
    return Annotated(data, evidence, {p: 0.5 for p in evidence}, ())


def test_an_honorific_after_a_chinese_name_goes_and_evidence_follows() -> None:
    text = "袁先生于一九九零年七月毕业于南京大学。"
    schema = _strings(name="本人姓名", school="学校")
    found = _found(text, {"name": "袁先生", "school": "南京大学"})
    out = cut_titles(found, _fields(schema), SourceText(text), _always)
    assert out.data == {"name": "袁", "school": "南京大学"}
    assert out.evidence["/name"] == [0, 1]
    assert out.evidence["/school"] == found.evidence["/school"]
    assert out.confidence == found.confidence


def test_a_title_before_an_english_name_goes_in_any_entity_list() -> None:
    piece, before = "Among them were Rep. Richard Gephardt and Mrs. Brady.", 300
    schema = _lists(people="People mentioned", organizations="Organisations mentioned")
    data = {"people": ["Mrs. Brady"], "organizations": ["Rep. Richard Gephardt"]}
    found = _found(piece, data, before)
    out = cut_titles(found, _fields(schema), SourceText(piece, before), _always)
    assert out.data == {"people": ["Brady"], "organizations": ["Richard Gephardt"]}
    for pointer, value in (("/people/0", "Brady"), ("/organizations/0", "Richard Gephardt")):
        start, end = out.evidence[pointer]  # type: ignore[misc]
        assert piece[start - before : end - before] == value


def test_left_alone_when_nothing_would_be_left_or_the_words_are_not_the_texts() -> None:
    fields = _fields(_strings(name="本人姓名"))
    text = "先生们好。Dr. who?"
    # Nothing left before 先生; "Dr. who" has no capital after the title.
    for value in ("先生", "Dr. who"):
        found = _found(text, {"name": value})
        assert cut_titles(found, fields, SourceText(text), _always) is found
    moved = Annotated({"name": "王先生"}, {"/name": [0, 3]}, {}, ())  # the text says 先生们
    assert cut_titles(moved, fields, SourceText(text), _always) is moved


def test_kept_whole_when_the_cut_document_would_not_validate() -> None:
    schema = _strings(name="本人姓名")
    schema["properties"]["name"]["minLength"] = 2
    text = "郑先生毕业于香港中文大学"
    found = _found(text, {"name": "郑先生"})
    valid = make_validator(schema).is_valid
    assert cut_titles(found, _fields(schema), SourceText(text), valid) is found


_CJK = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=4)


@given(
    before=st.text(max_size=20),
    name=_CJK,
    honorific=st.sampled_from(["先生", "女士", "小姐"]),
    after=st.text(max_size=20),
)
def test_evidence_always_slices_the_input_to_the_name(
    before: str, name: str, honorific: str, after: str
) -> None:
    text = before + name + honorific + after
    start = len(before)
    value = name + honorific
    found = Annotated({"name": value}, {"/name": [start, start + len(value)]}, {}, ())
    out = cut_titles(found, _fields(_strings(name="姓名")), SourceText(text), _always)
    span = out.evidence["/name"]
    assert out.data["name"] == name
    assert span is not None and text[span[0] : span[1]] == name


def test_schema_check_says_which_fields_hold_person_names() -> None:
    from qwenjson.schema import check_schema

    schema = {
        "type": "object",
        "properties": {
            "people": {"type": "array", "description": "People mentioned", "items": {}},
            "places": {"type": "array", "description": "Places mentioned", "items": {}},
            "boss": {"type": "string", "description": "姓名，如 王小明、李明"},
            "cook": {"type": "string", "description": "职务，如 厨师、主厨"},
            "size": {"type": "string", "description": "number of people for the booking"},
        },
    }
    for node in ("people", "places"):
        schema["properties"][node]["items"] = {"type": "string"}
    notes = {(u.pointer, u.keyword): u.note for u in check_schema(schema)}
    persons = "holds person names: a title before one or an honorific after it"
    assert notes["/properties/people", "description"].startswith("extract: " + persons)
    # With the examples extract reads, both are said.
    assert notes["/properties/boss", "description"] == (
        "extract: reads its examples (王小明, 李明): a value like one goes to this field; "
        + persons
        + " (Mr., Dr., 先生, 女士) is left out"
    )
    for quiet in ("places", "size"):  # a sibling list is cut too, but holds no persons itself
        assert persons not in notes["/properties/" + quiet, "description"]


def test_a_recursive_schema_is_read_to_the_limits_and_ends() -> None:
    tree = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "人名"},
            **{k: {"$ref": "#"} for k in ("left", "right", "up")},
        },
    }
    found = _fields(tree)
    assert ("name",) in found and ("left", "right", "name") in found
