"""Name lists keep capitalized names, in texts that capitalize them (``qwenjson.proper_names``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qwenjson.evidence import Annotated
from qwenjson.fields import Pattern, grounding_rules
from qwenjson.person_names import person_fields
from qwenjson.proper_names import capitalizes_names, cut_to_names, name_lists, name_part
from qwenjson.source import SourceText
from qwenjson.value_cuts import DROP

# The dev set's news schema, shortened; the root says its lists hold named entities.
NEWS: dict[str, Any] = {
    "type": "object",
    "description": "Named entities mentioned in a news article excerpt.",
    "properties": {
        "organizations": {"type": "array", "items": {"type": "string"}},
        "locations": {"type": "array", "items": {"type": "string"}},
        "topic": {"type": "string"},
    },
    "required": ["organizations", "locations"],
}
TEXT = (
    "Finnish police said on Thursday that a luxury boat was seen in the western town of "
    "Tampere, Itar-Tass reported; de Gaulle airport was shut."
)


def _lists(schema: Any) -> frozenset[Pattern]:
    rules = grounding_rules(schema)
    return name_lists(schema, rules, person_fields(schema, rules))


def _found(text: str, data: dict[str, Any], offset: int = 0) -> Annotated:
    evidence: dict[str, list[int] | None] = {}
    for name, items in data.items():
        for i, item in enumerate(items if isinstance(items, list) else []):
            at = text.find(item)
            evidence[f"/{name}/{i}"] = None if at < 0 else [offset + at, offset + at + len(item)]
    confidence = {p: 0.1 * n for n, p in enumerate(evidence)}
    return Annotated(data, evidence, confidence, ())


def _always(_: Any) -> bool:
    return True


def test_no_name_is_left_out_and_words_before_a_name_are_cut_off() -> None:
    data = {
        "organizations": ["Finnish police", "luxury boat", "Itar-Tass"],
        "locations": ["western town of Tampere", "de Gaulle airport", "de Gaulle"],
    }
    found = _found(TEXT, data)
    out = cut_to_names(found, _lists(NEWS), SourceText(TEXT), _always)
    assert out.data == {"organizations": ["Itar-Tass"], "locations": ["Tampere", "de Gaulle"]}
    for pointer, value in (
        ("/organizations/0", "Itar-Tass"),
        ("/locations/0", "Tampere"),
        ("/locations/1", "de Gaulle"),
    ):
        span = out.evidence[pointer]
        assert span is not None and TEXT[span[0] : span[1]] == value
    # Each kept item keeps the confidence the model gave it.
    assert out.confidence == {
        "/organizations/0": found.confidence["/organizations/2"],
        "/locations/0": found.confidence["/locations/0"],
        "/locations/1": found.confidence["/locations/2"],
    }


def test_name_part() -> None:
    assert name_part("Sudan People's Liberation Army") is None
    assert name_part("Rally for the Return of Refugees and Democracy in Rwanda") is None
    assert name_part("iPhone") is None and name_part("al-Qaeda") is None
    assert name_part("van Gogh") is None
    assert name_part("the Netherlands") == (4, len("the Netherlands"))
    # A name's words are capitalized or join capitalized ones; another lowercase word inside
    # runs two mentions together, and the head, the last, is kept.
    assert name_part("Frankfurt am Main") is None and name_part("Bank of America") is None
    hoddle = "England soccer manager Glen Hoddle"
    assert name_part(hoddle) == (hoddle.index("Glen"), len(hoddle))
    said = "Reuters spokesman de Gaulle"
    assert name_part(said) == (said.index("de"), len(said))
    assert name_part("Democratic party") == DROP and name_part("passer-by") == DROP
    # Words without cased letters have no say.
    assert name_part("1996") is None and name_part("San Francisco 49ers") is None
    assert name_part("北京 office") == DROP and name_part("北京") is None


def test_texts_that_do_not_capitalize_names_are_left_alone() -> None:
    assert capitalizes_names(TEXT)
    lower = "play doctor fink if i could choose"
    chinese = "客胜并没有被否定，bet365就强烈暗示客胜存在较大机会，ESRB也这样说。"
    sentence_starts = "The boat sank. Police came.\nNobody saw it. I did not."
    for text in (lower, chinese, sentence_starts, "", "1996-08-28"):
        assert not capitalizes_names(text)
        found = _found(text, {"organizations": ["bet365"], "locations": []})
        assert cut_to_names(found, _lists(NEWS), SourceText(text), _always) is found


def test_the_lists_that_hold_names() -> None:
    assert _lists(NEWS) == {("organizations", None), ("locations", None)}
    plain: dict[str, Any] = {
        "type": "object",
        "properties": {
            "hobbies": {"type": "array", "items": {"type": "string"}},
            "authors": {"type": "array", "items": {"type": "string"}},
            "places": {
                "type": "array",
                "description": "Proper names of the places visited",
                "items": {"type": "string"},
            },
        },
    }
    assert _lists(plain) == {("authors", None), ("places", None)}
    text = "Tom grows tomatoes in Kent with Ann Lee."
    found = _found(text, {"hobbies": ["grows tomatoes"], "authors": ["tomatoes"], "places": []})
    out = cut_to_names(found, _lists(plain), SourceText(text), _always)
    assert out.data == {"hobbies": ["grows tomatoes"], "authors": [], "places": []}


def test_whole_when_the_shorter_list_would_not_validate() -> None:
    found = _found(TEXT, {"organizations": ["luxury boat"], "locations": []})
    kept = cut_to_names(found, _lists(NEWS), SourceText(TEXT), lambda d: bool(d["organizations"]))
    assert kept is found


def test_the_dev_sets_gold_names_are_all_kept(shared_dir: Path) -> None:
    """Every gold item the rule would judge is a name to it: it drops or cuts none."""
    judged = 0
    for line in (shared_dir / "corpus" / "extraction-dev" / "cases.jsonl").open(encoding="utf-8"):
        case = json.loads(line)
        if not capitalizes_names(case["input"]):
            continue
        for pattern in _lists(case["schema"]):
            for item in case["gold"].get(pattern[0], []) if len(pattern) == 2 else []:
                judged += 1
                assert name_part(item) is None, (case["id"], item)
    assert judged > 100  # the news and citation lists: a rule that judges nothing proves nothing


_WORD = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Cc")), max_size=6)


@given(
    before=st.text(max_size=20),
    words=st.lists(_WORD.filter(bool), min_size=1, max_size=4),
    offset=st.integers(0, 1000),
)
def test_evidence_always_slices_the_input_to_the_value(
    before: str, words: list[str], offset: int
) -> None:
    item = " ".join(words)
    text = "Reuters said, in London, " + before + " " + item + ' "and" \\ 东京 🎉'
    start = len(text) - len(item) - len(' "and" \\ 东京 🎉')
    data = {"organizations": [item], "locations": []}
    span = [offset + start, offset + start + len(item)]
    found = Annotated(data, {"/organizations/0": span}, {"/organizations/0": 0.5}, ())
    out = cut_to_names(found, _lists(NEWS), SourceText(text, offset), _always)
    if out.data["organizations"]:
        kept = out.data["organizations"][0]
        got = out.evidence["/organizations/0"]
        assert got is not None and text[got[0] - offset : got[1] - offset] == kept
        assert kept and item.endswith(kept)
    else:
        assert name_part(item) == DROP and "/organizations/0" not in out.evidence


def test_schema_check_says_which_lists_hold_names() -> None:
    from qwenjson.schema import check_schema

    schema = {
        **NEWS,
        "properties": {
            **NEWS["properties"],
            "organizations": {
                "type": "array",
                "description": "Organisations mentioned",
                "items": {"type": "string"},
            },
        },
    }
    notes = {(u.pointer, u.keyword): u.note for u in check_schema(schema)}
    rule = "in a text that capitalizes names, an item whose last word has no capital is left out"
    assert notes["", "description"].startswith(f"extract: its lists hold names: {rule}")
    assert notes["/properties/organizations", "description"].startswith(
        f"extract: holds names: {rule}"
    )
    # An object whose lists hold names only because one holds persons says nothing itself.
    plain = {
        "type": "object",
        "description": "A reference",
        "properties": {"authors": {"type": "array", "items": {"type": "string"}}},
    }
    assert not any(u.note for u in check_schema(plain) if u.pointer == "")
