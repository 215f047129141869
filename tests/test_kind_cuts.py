"""Entity-list items cut at the kinds their lists enumerate (``qwenjson.kind_cuts``)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qwenjson.evidence import Annotated
from qwenjson.field_examples import ExampleTyping
from qwenjson.fields import grounding_rules
from qwenjson.kind_cuts import cut_at_kinds
from qwenjson.labeling import entity_lists
from qwenjson.source import SourceText
from qwenjson.validate import make_validator

# The dev set's résumé schema, shortened: two lists enumerate kinds, one gives examples only.
RESUME = {
    "type": "object",
    "properties": {
        "organizations": {
            "type": "array",
            "description": "任职的具体单位名称（公司、学校、协会等），每个列一次",
            "items": {"type": "string"},
        },
        "titles": {
            "type": "array",
            "description": "职务、职称和头衔，如 董事、副总经理",
            "items": {"type": "string"},
        },
        "majors": {
            "type": "array",
            "description": "所学专业，如 会计专业、经济学",
            "items": {"type": "string"},
        },
    },
}
TEXT = "曾任金塔县棉花公司副经理，现任武汉钢铁股份有限公司董事会秘书，会计专业。"


def _cut(data: dict[str, list[str]], text: str = TEXT, offset: int = 0) -> Annotated:
    rules = grounding_rules(RESUME)
    lists = entity_lists(rules, RESUME)
    kinds = ExampleTyping(RESUME, rules).lists[()]
    found = _found(text, data, offset)
    return cut_at_kinds(found, lists, kinds, SourceText(text, offset), _always)


def _found(text: str, data: dict[str, list[str]], offset: int = 0) -> Annotated:
    evidence: dict[str, list[int] | None] = {}
    for name, items in data.items():
        for i, item in enumerate(items):
            at = text.find(item)
            evidence[f"/{name}/{i}"] = None if at < 0 else [offset + at, offset + at + len(item)]
    return Annotated(data, evidence, {p: 0.5 for p in evidence}, ())


def _always(_: Any) -> bool:
    return True


def test_an_organization_ends_at_its_kind_and_a_post_begins_after_one() -> None:
    data = {
        "organizations": ["武汉钢铁股份有限公司董事会秘书"],
        "titles": ["金塔县棉花公司副经理"],
        "majors": ["会计专业"],
    }
    out = _cut(data)
    assert out.data == {
        "organizations": ["武汉钢铁股份有限公司"],
        "titles": ["副经理"],
        "majors": ["会计专业"],
    }
    for pointer, value in (("/organizations/0", "武汉钢铁股份有限公司"), ("/titles/0", "副经理")):
        start, end = out.evidence[pointer]  # type: ignore[misc]
        assert TEXT[start:end] == value
    assert out.confidence == _found(TEXT, data).confidence


def test_names_that_end_in_a_kind_stay_whole_wherever_they_are() -> None:
    # Under titles, a company's whole name is left for the typing after this to move.
    data = {"organizations": ["金塔县棉花公司"], "titles": ["武汉钢铁股份有限公司"], "majors": []}
    found = _found(TEXT, data)
    rules = grounding_rules(RESUME)
    kinds = ExampleTyping(RESUME, rules).lists[()]
    out = cut_at_kinds(found, entity_lists(rules, RESUME), kinds, SourceText(TEXT), _always)
    assert out is found


def test_no_kind_inside_or_not_the_texts_words_or_invalid_leaves_it_whole() -> None:
    rules = grounding_rules(RESUME)
    lists, kinds = entity_lists(rules, RESUME), ExampleTyping(RESUME, rules).lists[()]
    plain = _found(TEXT, {"organizations": [], "titles": ["董事会秘书"], "majors": []})
    assert cut_at_kinds(plain, lists, kinds, SourceText(TEXT), _always) is plain
    respelled = Annotated(
        {"organizations": ["武汉钢铁公司董事"], "titles": [], "majors": []},
        {"/organizations/0": [16, 24]},
        {},
        (),
    )
    assert cut_at_kinds(respelled, lists, kinds, SourceText(TEXT), _always) is respelled
    schema: Any = copy.deepcopy(RESUME)
    schema["properties"]["titles"]["items"]["minLength"] = 4
    compound = _found(TEXT, {"organizations": [], "titles": ["金塔县棉花公司副经理"], "majors": []})
    valid = make_validator(schema).is_valid
    assert cut_at_kinds(compound, lists, kinds, SourceText(TEXT), valid) is compound


def test_examples_are_no_kinds_to_cut_at() -> None:
    # 会计专业 is an example of majors, not a kind its description enumerates.
    text = "主修会计专业课程"
    out = _cut({"organizations": [], "titles": [], "majors": ["会计专业课程"]}, text)
    assert out.data["majors"] == ["会计专业课程"]


_HAN = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=6)


@given(
    before=st.text(max_size=12),
    company=_HAN,
    post=_HAN,
    where=st.sampled_from(["organizations", "titles"]),
    offset=st.integers(0, 1000),
)
def test_evidence_always_slices_the_input_to_the_value(
    before: str, company: str, post: str, where: str, offset: int
) -> None:
    item = company + "公司" + post
    text = before + "，" + item + "。"
    data = {"organizations": [], "titles": [], "majors": []}
    data[where] = [item]
    start = len(before) + 1
    rules = grounding_rules(RESUME)
    kinds = ExampleTyping(RESUME, rules).lists[()]
    found = Annotated(data, {f"/{where}/0": [offset + start, offset + start + len(item)]}, {}, ())
    out = cut_at_kinds(found, entity_lists(rules, RESUME), kinds, SourceText(text, offset), _always)
    kept = out.data[where][0]
    span = out.evidence[f"/{where}/0"]
    assert span is not None and text[span[0] - offset : span[1] - offset] == kept
    assert kept and kept in item
