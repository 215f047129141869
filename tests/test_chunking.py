"""Long texts in pieces, without a model: the splitter (boundaries, overlap, offsets, Chinese,
bounded tokenizing), the merge rules, and the piece loop on the fake model."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwenjson.batch import run_batch
from qwenjson.checkpoint import Checkpoint
from qwenjson.chunking import CHARS_PER_TOKEN, Piece, split
from qwenjson.errors import NoValidOutputError, TimeoutExpired, UsageError
from qwenjson.merging import Found, Merger
from qwenjson.pieces import DEFAULT_PIECE_TOKENS, PieceHooks
from qwenjson.pipeline import ExtractOptions
from qwenjson.plan import RecordOptions, plan_for
from qwenjson.records import BatchOptions
from qwenjson.runner import Limits, Runner
from qwenjson.stream import LineOutput
from qwenjson.validate import make_validator
from tests.fakes import FakeModel


def words(text: str) -> int:
    """A tokenizer stand-in: one token per word or CJK character or punctuation mark."""
    return len(re.findall(r"\w+|[^\w\s]", text, re.ASCII))


def pieces_of(text: str, budget: int, overlap: int) -> list[Piece]:
    return list(split(text, words, budget, overlap))


def check_cover(text: str, pieces: list[Piece], budget: int, overlap: int) -> None:
    assert pieces[0].start == 0 and pieces[-1].end == len(text)
    assert [p.index for p in pieces] == list(range(len(pieces)))
    for p in pieces:
        assert words(text[p.start : p.end]) <= budget
    for a, b in itertools.pairwise(pieces):
        assert a.start < b.start <= a.end < b.end  # progress, no gap
        assert words(text[b.start : a.end]) <= overlap


def test_pieces_end_at_paragraphs_and_overlap_by_sentences() -> None:
    paragraphs = [
        f"Person {i} is named Name{i}. They live in Town{i}. They work as Job{i}."
        for i in range(40)
    ]
    text = "\n\n".join(paragraphs)
    pieces = pieces_of(text, budget=60, overlap=8)
    check_cover(text, pieces, 60, 8)
    assert len(pieces) > 5
    for p in pieces[:-1]:
        assert text[: p.end].endswith("\n\n")  # a paragraph break ends every piece
    for p in pieces[1:]:
        assert text[p.start - 2 : p.start] in (". ", "\n\n")  # the overlap starts a sentence
        assert text[p.start] in "PT"


def test_without_paragraphs_a_piece_ends_at_a_sentence_then_a_blank() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    pieces = pieces_of(text, budget=50, overlap=6)
    check_cover(text, pieces, 50, 6)
    assert all(text[p.end - 2 : p.end] == ". " for p in pieces[:-1])
    blanks = "word " * 300
    pieces = pieces_of(blanks, budget=50, overlap=6)
    check_cover(blanks, pieces, 50, 6)
    assert all(blanks[p.end - 1] == " " and blanks[p.start] == "w" for p in pieces[1:-1])


def test_chinese_ends_at_its_own_punctuation_or_any_character() -> None:
    text = "".join(f"第{i}位是张{i}先生，他住在北京；他喜欢读书！" for i in range(60))
    pieces = pieces_of(text, budget=80, overlap=10)
    check_cover(text, pieces, 80, 10)
    assert all(text[p.end - 1] in "；！" for p in pieces[:-1])
    plain = "字" * 1000  # no punctuation, no blanks: any character boundary
    pieces = pieces_of(plain, budget=100, overlap=10)
    check_cover(plain, pieces, 100, 10)
    assert [p.end - p.start for p in pieces[:-1]] == [100] * (len(pieces) - 1)
    # A cut through a word (any character boundary may be one) is overlapped all the same.
    assert [a.end - b.start for a, b in itertools.pairwise(pieces)] == [10] * (len(pieces) - 1)


def test_a_name_cut_at_a_piece_end_in_chinese_is_whole_in_the_next() -> None:
    text = "他们说" * 20 + "王小明" + "今天来了" * 40  # no sentence end, no blank
    pieces = pieces_of(text, budget=62, overlap=7)
    check_cover(text, pieces, 62, 7)
    at = text.index("王小明")
    assert any(p.start < at < p.end < at + 3 for p in pieces)  # the cut goes through the name
    assert any(p.start <= at and at + 3 <= p.end for p in pieces)


def test_a_long_text_is_never_tokenized_whole() -> None:
    text = "A short sentence here. " * 50_000  # 1.15 MB
    longest = 0

    def counting(s: str) -> int:
        nonlocal longest
        longest = max(longest, len(s))
        return words(s)

    pieces = list(split(text, counting, 500, 50))
    assert pieces[-1].end == len(text)
    assert longest <= 500 * CHARS_PER_TOKEN


def test_a_piece_after_dense_text_still_ends_past_the_one_before() -> None:
    # Emoji cost several tokens each: the "second half" of a piece, measured in characters,
    # could end at or before the previous piece's end, and the same text was read again (40 of
    # 360 pieces inside the one before with a real tokenizer, 1.9 times the text read).
    def dense(text: str) -> int:
        return words(text) + 4 * sum(not c.isascii() for c in text)

    unit = "word " * 40 + "end.\n\n" + "😀👨‍👩‍👧🎉" * 30 + "\n\n"
    text = unit * 20
    for budget, overlap in ((64, 24), (256, 32), (40, 12)):
        pieces = list(split(text, dense, budget, overlap))
        assert pieces[0].start == 0 and pieces[-1].end == len(text)
        for a, b in itertools.pairwise(pieces):
            assert a.start < b.start <= a.end < b.end, (a, b)
        assert all(dense(text[p.start : p.end]) <= budget for p in pieces)


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet="ab 。.\n字", min_size=1, max_size=400),
    st.integers(min_value=4, max_value=40),
)
def test_any_text_is_covered(text: str, budget: int) -> None:
    pieces = pieces_of(text, budget, budget // 4)
    check_cover(text, pieces, budget, budget // 4)


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet="字王明·：", min_size=1, max_size=600),
    st.integers(min_value=8, max_value=60),
)
def test_a_piece_cut_inside_a_word_is_overlapped(text: str, budget: int) -> None:
    overlap = budget // 4
    pieces = pieces_of(text, budget, overlap)
    check_cover(text, pieces, budget, overlap)
    for a, b in itertools.pairwise(pieces):
        # No blank, no sentence end: every cut may go through a word, so the next piece repeats
        # the last ``overlap`` tokens (those of a piece shortened below twice that: half).
        assert words(text[b.start : a.end]) == min(overlap, words(text[a.start : a.end]) // 2)


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        # CSV rows and a list of names: a cut at a blank gave "Ann" of "Ann Lee" (a review:
        # /tmp/rev-long), and the merge keeps the first of two mentions it takes for one.
        ("".join(f"2024-01-{d:02},Ann Lee,Coffee beans {d}\n" for d in range(1, 29)), "\n"),
        (", ".join(f"Pam{n} Nash{n}" for n in range(60)) + ".", ", "),
        ("，".join(f"王{n} 明{n}" for n in range(60)) + "。", "，"),
        # Not inside a number (a review: /tmp/rev-s30b/ch.py): "8,541,|208 EUR".
        (" ".join(f"paid {n * 1_000_003:,} EUR to Ann{n} Lee{n} and" for n in range(40)), " "),
    ],
)
def test_a_piece_ends_at_a_line_or_a_comma_before_a_blank(text: str, unit: str) -> None:
    pieces = pieces_of(text, 40, 10)
    assert len(pieces) > 2
    check_cover(text, pieces, 40, 10)
    for piece in pieces[:-1]:
        assert text[: piece.end].endswith(unit)  # a whole row, a whole name
        assert not re.search(r"\d,\d", text[piece.end - 2 : piece.end + 1])  # a number's comma
    for piece in pieces[1:]:  # (a row longer than the overlap: at a comma of the row)
        assert text[: piece.start].endswith((unit, ",", "，"))
        assert not re.search(r"\d,\d", text[piece.start - 2 : piece.start + 1])


# -- merging ----------------------------------------------------------------------------------

ITEMS = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
                "required": ["name"],
            },
        }
    },
}


def items_found(*items: tuple[str, list[int] | None, str | None]) -> Found:
    data: list[dict[str, Any]] = []
    evidence: dict[str, list[int] | None] = {}
    for i, (name, span, role) in enumerate(items):
        data.append({"name": name} | ({"role": role} if role else {}))
        evidence[f"/items/{i}/name"] = span
        if role:
            evidence[f"/items/{i}/role"] = [900 + i, 905 + i]
    return Found({"items": data}, evidence, {p: 0.5 for p in evidence})


def test_an_item_seen_in_two_pieces_is_kept_once_by_its_evidence_or_its_value() -> None:
    merger = Merger(make_validator(ITEMS))
    first = merger.add(items_found(("Ann", [10, 13], None), ("Bob Lee", [50, 57], "cook")))
    assert first == [("items", 0), ("items", 1)]
    # "Bob" overlaps "Bob Lee" (the first leaf both ground decides, not the role); "ann" is
    # Ann by value; a second Cy in the same piece is a repeat; Dan and Cy are new, put in the
    # order the text has them.
    second = merger.add(
        items_found(
            ("Bob", [50, 53], "chef"),
            ("ann", None, None),
            ("Dan", [90, 93], None),
            ("Cy", [70, 72], None),
            ("Cy", [80, 82], None),
        )
    )
    assert second == [("items", 2), ("items", 3)]
    assert [x["name"] for x in merger.data["items"]] == ["Ann", "Bob Lee", "Cy", "Dan"]
    assert merger.subtree(("items", 3)) == ({"name": "Dan"}, {"/name": [90, 93]}, {"/name": 0.5})
    # Two people with the same role span are two people: the name decides.
    third = merger.add(items_found(("Eve", [95, 98], "cook")))
    assert third == [("items", 4)]


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "city": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name"],
}


def test_an_object_takes_each_field_from_the_first_piece_that_grounds_it() -> None:
    merger = Merger(make_validator(PERSON))
    # The first piece had no name to give (pushed to a value, unsupported) and one tag.
    merger.add(
        Found(
            {"name": "Report", "tags": ["x"]},
            {"/name": [0, 6], "/tags/0": [7, 8]},
            {"/name": 0.1, "/tags/0": 0.9},
            ("/name",),
        )
    )
    merger.add(
        Found(
            {"name": "Ann", "city": "Oslo", "tags": ["X", "y"]},
            {
                "/name": [100, 103],
                "/city": [110, 114],
                "/tags/0": [120, 121],
                "/tags/1": [130, 131],
            },
            {"/name": 0.9, "/city": 0.8, "/tags/0": 0.7, "/tags/1": 0.6},
        )
    )
    # A later grounded name does not replace a grounded one.
    merger.add(Found({"name": "Bob", "city": "Rome"}, {"/name": [200, 203], "/city": [210, 214]}))
    assert merger.data == {"name": "Ann", "city": "Oslo", "tags": ["x", "y"]}
    assert list(merger.data) == ["name", "city", "tags"]  # the schema's order, as generated
    assert merger.evidence["/name"] == [100, 103] and merger.evidence["/tags/1"] == [130, 131]
    assert merger.unsupported_in() == []
    # More tags than maxItems: the additions are tried one by one, the extra one left out.
    merger.add(Found({"name": "Ann", "tags": ["z", "w"]}, {"/tags/0": [300, 301]}))
    assert merger.data["tags"] == ["x", "y", "z"] and merger.skipped == 1
    make_validator(PERSON).validate(merger.data)


def test_with_confident_a_field_comes_from_the_piece_the_model_was_surest_of() -> None:
    merger = Merger(make_validator(PERSON), confident=True)
    merger.add(Found({"name": "Intro"}, {"/name": [0, 5]}, {"/name": 0.2}))
    merger.add(Found({"name": "Ann"}, {"/name": [50, 53]}, {"/name": 0.9}))
    merger.add(Found({"name": "Bob"}, {"/name": [90, 93]}, {"/name": 0.5}))
    merger.add(Found({"name": "Cy"}, {"/name": [99, 101]}, {"/name": 0.99}, ("/name",)))
    assert merger.data == {"name": "Ann"} and merger.evidence == {"/name": [50, 53]}
    first = Merger(make_validator(PERSON))  # without it, the first piece's stays
    first.add(Found({"name": "Intro"}, {"/name": [0, 5]}, {"/name": 0.2}))
    first.add(Found({"name": "Ann"}, {"/name": [50, 53]}, {"/name": 0.9}))
    assert first.data == {"name": "Intro"}


CONTACT = {
    "type": "object",
    "properties": {
        "city": {"type": ["string", "null"]},
        "phones": {"type": ["array", "null"], "items": {"type": "string"}},
    },
    "required": ["city", "phones"],
}


@pytest.mark.parametrize("grounded_first", [True, False])
def test_a_null_the_model_abstained_to_yields_to_a_grounded_value(grounded_first: bool) -> None:
    # A piece with no source for the city gives null (abstained), keeping the confidence of
    # what it was sure of; a null list has no confidence at all. Neither has a source.
    empty = Found({"city": None, "phones": None}, {"/city": None, "/phones": None}, {"/city": 0.95})
    grounded = Found(
        {"city": "Oslo", "phones": ["555"]},
        {"/city": [13, 17], "/phones/0": [30, 33]},
        {"/city": 0.6, "/phones/0": 0.7},
    )
    merger = Merger(make_validator(CONTACT), confident=True)
    for found in (grounded, empty) if grounded_first else (empty, grounded):
        merger.add(found)
    assert merger.data == {"city": "Oslo", "phones": ["555"]}
    assert merger.evidence == {"/city": [13, 17], "/phones/0": [30, 33]}
    make_validator(CONTACT).validate(merger.data)


@pytest.mark.parametrize("root", [{"type": "string"}, {"type": ["integer", "array"]}])
def test_a_document_that_is_one_scalar_is_merged_as_a_field(root: dict[str, Any]) -> None:
    # The whole document is the value: a later piece that grounds it replaces it.
    first = "Intro" if root["type"] == "string" else 7
    merger = Merger(make_validator(root), confident=True)
    merger.add(Found(first, {"": [0, 5]}, {"": 0.2}, ("",)))
    merger.add(Found(first, {"": [40, 45]}, {"": 0.9}))
    assert merger.data == first and merger.evidence == {"": [40, 45]}
    assert merger.unsupported_in() == []


def test_a_member_from_a_later_piece_goes_where_the_schema_puts_it() -> None:
    merger = Merger(make_validator({"$ref": "#/$defs/p", "$defs": {"p": PERSON}}))
    merger.add(Found({"name": "Ann", "tags": ["x"]}, {"/name": [0, 3], "/tags/0": [5, 6]}))
    merger.add(Found({"city": "Oslo"}, {"/city": [10, 14]}))
    assert list(merger.data) == ["name", "city", "tags"]


def test_found_survives_its_json_form() -> None:
    found = Found({"a": [1.5, "x"]}, {"/a/0": [1, 4], "/a/1": None}, {"/a/0": 0.1 + 0.2}, ("/a/1",))
    assert Found.from_json(json.loads(json.dumps(found.to_json()))) == found


# -- the piece loop on the fake model ----------------------------------------------------------


def names_answer(text: str, _: int) -> str:
    """The fake's --each answer: every capitalised word of the piece is a person."""
    return json.dumps({"items": [{"name": n} for n in re.findall(r"\b[A-Z][a-z]+\b", text)]})


def test_each_person_of_a_long_text_once_in_order_with_whole_text_offsets() -> None:
    names = [f"{c}{v}n" for c in "BDFGHKLMNPRSTVZ" for v in "aeiou"][:60]
    text = "\n\n".join(f"Today {n} came." for n in names)
    fake = FakeModel(names_answer, context=600)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    options = ExtractOptions(max_tokens=100, evidence=True)
    runner = Runner(plan_for(schema, fake, options, RecordOptions(each=True)), fake)
    out: list[dict[str, Any]] = []
    runner.run(text, lambda line: out.append(json.loads(line)))
    assert len(fake.users) > 3  # really in pieces
    got = [x["data"]["name"] for x in out]
    # "Today" (in every piece) is one item, the first; each name once, in order.
    assert got == ["Today", *names]
    for item in out:
        start, end = item["evidence"]["/name"]
        assert text[start:end] == item["data"]["name"]


def test_progress_counts_every_piece_once_and_ends_at_the_total() -> None:
    text = "\n\n".join(f"Today {c}an came." for c in "BDFGHKLMNPRSTVZ" * 3)
    fake = FakeModel(names_answer, context=600)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    options = ExtractOptions(max_tokens=100)
    runner = Runner(plan_for(schema, fake, options, RecordOptions(each=True)), fake)
    seen: list[tuple[int, int]] = []
    runner.run(text, lambda _: None, pieces=PieceHooks(progress=lambda *c: seen.append(c)))
    pieces = len(fake.users)
    assert pieces > 3
    assert [done for done, _ in seen] == list(range(pieces + 1))
    assert seen[-1] == (pieces, pieces) and all(done < total for done, total in seen[:-1])


THREE_CEOS = "\n\n".join(
    f"{n} arrived as ceo. "
    + " ".join(f"the weather was mild and nothing happened on day {i}." for i in range(12))
    for n in ("Ann Lee", "Bob Moss", "Cyd Nash")
)


def people_answer(text: str, _: int) -> str:
    """The fake's answer: every "First Last" of the piece is a person, a ceo."""
    found = re.findall(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b", text)
    return json.dumps({"people": [{"name": n, "role": "ceo"} for n in found]})


def people_run(people: dict[str, Any]) -> tuple[Runner, FakeModel]:
    person = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
        "required": ["name"],
    }
    schema = {
        "type": "object",
        "properties": {"people": {"type": "array", "items": person, **people}},
        "required": ["people"],
    }
    fake = FakeModel(people_answer, context=1200)
    return Runner(plan_for(schema, fake, ExtractOptions(max_tokens=100, retries=0)), fake), fake


@pytest.mark.parametrize("least", [2, 3, 4])
def test_min_items_of_a_root_list_is_the_whole_texts_not_each_pieces(least: int) -> None:
    # A review (/tmp/rev-long/x7.py): three people, one a piece, under minItems 2 failed with
    # exit 5 (each piece's one-item list refused); read whole, all three were found.
    runner, fake = people_run({"minItems": least})
    text = THREE_CEOS
    out: list[str] = []
    if least > 3:  # the whole text has three: the merged document fails, nothing printed
        with pytest.raises(
            NoValidOutputError, match="merged from the pieces fails the schema"
        ) as e:
            runner.run(text, out.append)
        assert out == []
        # Said with counts (jsonschema's message prints the whole list).
        assert e.value.errors == [
            "/people: the whole text gave 3 item(s); the schema asks for at least 4 (minItems)"
        ]
    else:
        runner.run(text, out.append)
        (printed,) = out
        assert [p["name"] for p in json.loads(printed)["people"]] == [
            "Ann Lee",
            "Bob Moss",
            "Cyd Nash",
        ]
    assert len(fake.users) >= 3  # in pieces, one person each


def test_a_contains_is_the_whole_texts_but_a_max_contains_and_a_fixed_length_stay() -> None:
    # A review of the first version (/tmp/rev-s30e): freeing "contains" freed its maxContains
    # (exit 5 where the merge had left the extra ceos out), and a list of a fixed length was
    # stitched from two pieces.
    ceo = {"properties": {"role": {"const": "ceo"}}, "required": ["role"]}
    out: list[str] = []
    runner, _ = people_run({"contains": ceo, "minContains": 2})
    runner.run(THREE_CEOS, out.append)
    assert len(json.loads(out[-1])["people"]) == 3
    runner, _ = people_run({"contains": ceo, "maxContains": 1})
    runner.run(THREE_CEOS, out.append)
    assert [p["name"] for p in json.loads(out[-1])["people"]] == ["Ann Lee"]
    runner, _ = people_run({"contains": ceo, "minContains": 4})
    with pytest.raises(NoValidOutputError) as e:
        runner.run(THREE_CEOS, out.append)
    assert e.value.errors == [
        '/people: 3 of the whole text\'s 3 item(s) match its "contains"; the schema asks for at '
        "least 4"
    ]
    runner, _ = people_run({"minItems": 2, "maxItems": 2})  # a pair: each piece's own
    with pytest.raises(NoValidOutputError, match="no valid document after 1 attempt"):
        runner.run(THREE_CEOS, out.append)


def test_without_chunks_a_long_text_is_still_refused() -> None:
    fake = FakeModel(names_answer, context=600)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    record = RecordOptions(each=True, chunks=False)
    runner = Runner(plan_for(schema, fake, ExtractOptions(max_tokens=100), record), fake)
    with pytest.raises(Exception, match="the input is too long"):
        runner.run("Word. " * 200, lambda _: None)


def test_a_text_that_fits_is_read_whole_and_a_longer_one_in_pieces_of_the_default_size() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    options = ExtractOptions(max_tokens=100)
    short, long = "Word. " * 300, "Word. " * 600  # the fake's tokens are characters
    fits = FakeModel(names_answer, context=3000)
    Runner(plan_for(schema, fits, options, RecordOptions(each=True)), fits).run(
        short, lambda _: None
    )
    assert len(fits.users) == 1
    wrapper = len(fits.users[0]) - len(short.strip())  # the user message around the text
    longer = FakeModel(names_answer, context=3000)
    Runner(plan_for(schema, longer, options, RecordOptions(each=True)), longer).run(
        long, lambda _: None
    )
    assert len(longer.users) > len(long) // DEFAULT_PIECE_TOKENS
    assert all(len(user) - wrapper <= DEFAULT_PIECE_TOKENS for user in longer.users)


# -- resuming -----------------------------------------------------------------------------------


class Crash(KeyboardInterrupt):
    """Stands in for a kill at a chosen point (nothing in qwenjson catches it)."""


def document_run(
    tmp_path: Path,
    text: str,
    answer: Callable[[str, int], str],
    each: bool,
    name: str,
    lines: list[bytes] | None = None,
) -> tuple[BaseException | None, FakeModel]:
    """The long ``text`` as one document (or ``lines`` as a JSONL batch) through a fake with a
    small context, appended to ``name``, checkpointed in ``name``.ck."""
    fake = FakeModel(answer, context=600)
    schema = NAME if each else NAMES
    options = ExtractOptions(max_tokens=100)
    runner = Runner(plan_for(schema, fake, options, RecordOptions(each=each)), fake)
    checkpoint = Checkpoint(tmp_path / f"{name}.ck", "job")
    try:
        with (tmp_path / name).open("ab") as out:
            run_batch(
                [text.encode()] if lines is None else lines,
                runner,
                BatchOptions(document=lines is None),
                output=LineOutput(out),
                checkpoint=checkpoint,
            )
    except (Exception, KeyboardInterrupt) as e:
        return e, fake
    finally:
        checkpoint.close()
    return None, fake


NAME = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
NAMES = {
    "type": "object",
    "properties": {"first": {"type": "string"}, "names": {"type": "array", "items": NAME}},
    "required": ["names"],
}


@pytest.mark.parametrize("each", [True, False])
def test_a_document_killed_between_pieces_resumes_at_the_next_one(
    tmp_path: Path, each: bool
) -> None:
    names = [f"{c}{v}n" for c in "BDFGHKLMNPRSTVZ" for v in "aeiou"][:50]
    text = "\n\n".join(f"Today {n} came." for n in names)

    def answer(piece: str, _: int) -> str:
        found = [{"name": n} for n in re.findall(r"\b[A-Z][a-z]n\b", piece)]
        return json.dumps({"items": found} if each else {"first": found[0]["name"], "names": found})

    first, whole = document_run(tmp_path, text, answer, each, "whole")
    assert first is None and len(whole.users) > 4
    calls = 0

    def dies_at_the_fourth_piece(piece: str, attempt: int) -> str:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise Crash()
        return answer(piece, attempt)

    crashed, _ = document_run(tmp_path, text, dies_at_the_fourth_piece, each, "out")
    assert isinstance(crashed, Crash)
    if each:  # the items of three pieces are out (and logged), and the file says where
        assert 0 < len((tmp_path / "out").read_text().splitlines()) < len(names)
        with (tmp_path / "out").open("ab") as f:
            f.write(b'{"name":"half a li')  # what a kill in mid-write leaves
    again, rest = document_run(tmp_path, text, answer, each, "out")
    assert again is None
    assert rest.users == whole.users[3:]  # from the fourth piece on, nothing twice
    assert (tmp_path / "out").read_bytes() == (tmp_path / "whole").read_bytes()
    done, nothing = document_run(tmp_path, text, answer, each, "out")
    assert done is None and nothing.users == []  # a finished document is not done again
    assert (tmp_path / "out").read_bytes() == (tmp_path / "whole").read_bytes()
    lines = (tmp_path / "out").read_text().splitlines()
    got = (
        [json.loads(x)["name"] for x in lines]
        if each
        else [x["name"] for x in json.loads(lines[0])["names"]]
    )
    assert got == names


def test_a_checkpoint_of_another_version_or_with_a_stray_piece_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ck").write_text('{"qwenjson_checkpoint": 3, "job": "job"}\n')
    with pytest.raises(UsageError, match="another version of qwenjson"):
        Checkpoint(tmp_path / "ck", "job").open()
    piece = {"piece": 0, "of_line": 2, "span": [0, 5], "digest": "x", "found": {}}
    header = '{"qwenjson_checkpoint": 2, "job": "job"}\n'
    (tmp_path / "ck").write_text(header + json.dumps(piece) + "\n")
    with pytest.raises(UsageError, match="damaged at line 2"):
        Checkpoint(tmp_path / "ck", "job").open()


def test_a_jsonl_record_longer_than_the_context_is_done_in_pieces_and_resumed_inside(
    tmp_path: Path,
) -> None:
    names = [f"{c}{v}n" for c in "BDFGHKLMNPRSTVZ" for v in "aeiou"][:40]
    long = "\n\n".join(f"Today {n} came." for n in names)
    lines = [b"Today Ann came.", long.encode(), b"Today Zen came."]

    def answer(piece: str, _: int) -> str:
        return json.dumps({"items": [{"name": n} for n in re.findall(r"\b[A-Z][a-z]n\b", piece)]})

    first, whole = document_run(tmp_path, "", answer, True, "whole", lines)
    assert first is None and len(whole.users) > 5  # line 2 in pieces, not failed
    calls = 0

    def dies_in_line_2(piece: str, attempt: int) -> str:
        nonlocal calls
        calls += 1
        if calls == 4:  # line 1, two pieces of line 2, then the kill
            raise Crash()
        return answer(piece, attempt)

    crashed, _ = document_run(tmp_path, "", dies_in_line_2, True, "out", lines)
    assert isinstance(crashed, Crash)
    again, rest = document_run(tmp_path, "", answer, True, "out", lines)
    assert again is None and rest.users == whole.users[3:]
    assert (tmp_path / "out").read_bytes() == (tmp_path / "whole").read_bytes()
    got = [json.loads(x)["name"] for x in (tmp_path / "out").read_text().splitlines()]
    assert got == ["Ann", *names, "Zen"]


def test_a_piece_whose_document_runs_out_of_tokens_is_read_in_shorter_pieces() -> None:
    names = [f"{c}{v}n" for c in "BDFGHKLMNPRSTVZ" for v in "aeiou"][:40]
    text = "\n\n".join(f"Today {n} came." for n in names)
    fake = FakeModel(context=600)

    def answer(piece: str, _: int) -> str:
        found = re.findall(r"\b[A-Z][a-z]n\b", piece)
        fake.finish = "length" if len(found) > 4 else "stop"  # more would not fit
        return json.dumps({"items": [{"name": n} for n in found]})

    fake.answer = answer
    options = ExtractOptions(max_tokens=100)
    runner = Runner(plan_for(NAME, fake, options, RecordOptions(each=True)), fake)
    out: list[str] = []
    notices: list[str] = []
    runner.run(text, out.append, notice=notices.append)
    assert [json.loads(x)["name"] for x in out] == names
    assert notices and "did not fit --max-tokens" in notices[0]
    fake.answer = lambda piece, _: (setattr(fake, "finish", "length"), "{}")[1]
    with pytest.raises(NoValidOutputError, match="not complete after 100 tokens"):
        runner.run(text, out.append)  # never fits: halving stops, the error stands


def test_a_records_timeout_counts_its_steps_not_the_time_between_them() -> None:
    # On a cluster an actor returns after each piece and may run another record before the
    # next: that time is not the record's (5.7 s of work failed its --timeout 20 when 15 s of
    # another record came between two of its pieces).
    now = [0.0]

    def answer(text: str, attempt: int) -> str:
        now[0] += 1.0  # each piece takes a second
        return names_answer(text, attempt)

    text = "\n\n".join(f"Today {c}an came." for c in "BDFGHKLMNPRSTVZ" * 3)
    fake = FakeModel(answer, context=600)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    plan = plan_for(schema, fake, ExtractOptions(max_tokens=100), RecordOptions(each=True))
    steps = Runner(plan, fake, Limits(timeout=1000), clock=lambda: now[0]).begin(
        text, lambda _: None
    )
    while steps.result is None:
        steps.step()
        now[0] += 500.0  # another record ran on the actor, or the round trip was slow
    assert len(fake.users) > 3  # in pieces
    assert steps.spent == pytest.approx(len(fake.users))
    # The steps' own time still counts: the same record with less than it needs fails.
    now[0] = 0.0
    short = Runner(plan, fake, Limits(timeout=2.5), clock=lambda: now[0])
    with pytest.raises(TimeoutExpired, match=r"--timeout of 2\.5s ran out"):
        short.run(text, lambda _: None)
