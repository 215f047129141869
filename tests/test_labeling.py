"""Typing entity-list items again: the engine's continuation scores against a token-by-token
evaluation on SmolLM2, the move of items (with their evidence) on a scripted scorer, and the
rule end to end on the real model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import llama_cpp.llama_cpp as ll
import pytest

from qwenjson import sampling
from qwenjson.engine import Engine
from qwenjson.errors import InputError, ModelError
from qwenjson.evidence import Annotated
from qwenjson.generation import Message
from qwenjson.grounding import grounding_rules
from qwenjson.labeling import SHORTLIST, Scorer, entity_lists, relabel
from qwenjson.pipeline import Extractor

NER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "people": {"type": "array", "items": {"type": "string"}, "description": "person names"},
        "places": {"type": "array", "items": {"type": "string"}, "description": "place names"},
        "companies": {"type": "array", "items": {"type": "string"}},
        "title": {"type": "string"},
    },
    "required": ["people", "places", "companies"],
    "additionalProperties": False,
}
TEXT = "Maria Lopez flew from Lisbon to Oslo to meet the engineers of Siemens and Nokia."
MESSAGES: list[Message] = [
    {"role": "system", "content": "List the people, places and companies in the text as JSON."},
    {"role": "user", "content": TEXT},
]


def test_entity_lists_are_the_root_lists_of_grounded_text() -> None:
    assert entity_lists(grounding_rules(NER), NER) == ["people", "places", "companies"]
    one = {"type": "object", "properties": {"tags": NER["properties"]["people"]}}
    assert entity_lists(grounding_rules(one), one) == []  # nothing to choose between
    fixed = json.loads(json.dumps(NER))
    fixed["properties"]["places"]["items"]["enum"] = ["Oslo", "Lisbon"]
    assert entity_lists(grounding_rules(fixed), fixed) == ["people", "companies"]
    ungrounded = grounding_rules(NER, default=False)
    assert entity_lists(ungrounded, NER) == []


# -- the engine's scores ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(smollm2: Path) -> Iterator[Engine]:
    with Engine(smollm2, n_ctx=2048, n_threads=1) as e:
        yield e


def _one_by_one(engine: Engine, messages: list[Message], head: str, tail_ids: list[int]) -> float:
    """The obvious way: the whole sequence from an empty cache, one token at a time, summing
    log p of the tail's tokens."""
    prompt = engine.prompt_tokens(messages) + engine.tokenize(head.encode())
    engine._forget_from(0)
    total = 0.0
    for i, token in enumerate(prompt + tail_ids):
        if i >= len(prompt):
            total += sampling.logprob(engine._logits(-1).copy(), token)
        engine._decode([token])
    return total


@pytest.mark.model
def test_continuation_scores_equal_a_token_by_token_evaluation(engine: Engine) -> None:
    head = '{"people": ["'
    tails = ['Maria Lopez"', 'Lisbon"', 'Siemens"', 'Nokia"', '挪威 🙂"']
    fast = engine.continuation_logprobs(MESSAGES, head, tails)
    ids = [engine.tokenize(t.encode()) for t in tails]
    slow = [_one_by_one(engine, MESSAGES, head, i) for i in ids]
    # Batches of other sizes change the logits in their last bits, never more than this.
    assert fast == pytest.approx(slow, abs=0.05)
    assert fast.index(max(fast)) == 0  # a person's name is the likeliest first person
    firsts = engine.continuation_logprobs(MESSAGES, head, tails, max_tokens=1)
    assert firsts == pytest.approx(
        [_one_by_one(engine, MESSAGES, head, i[:1]) for i in ids], abs=0.05
    )
    assert all(f > s for f, s in zip(firsts, slow, strict=True))  # longer tails, less likely


@pytest.mark.model
def test_a_tail_longer_than_a_batch_is_scored_in_slices(engine: Engine) -> None:
    head = '{"people": ["'
    tail = "Maria Lopez, " * 200 + '"'
    ids = engine.tokenize(tail.encode())
    assert len(ids) > 512  # more than the engine's batch (min(512, n_ctx)): it took one before
    (fast,) = engine.continuation_logprobs(MESSAGES, head, [tail])
    # Over 600 tokens the batches' last-bit differences add up: within 1%.
    assert fast == pytest.approx(_one_by_one(engine, MESSAGES, head, ids), rel=0.01)


@pytest.mark.model
def test_a_memory_that_cant_drop_part_of_a_sequence_still_scores_after_the_prompt(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = '{"people": ["'
    tails = ['Maria Lopez"', 'Lisbon"', 'Siemens"']
    expected = engine.continuation_logprobs(MESSAGES, head, tails)
    # As a recurrent model's memory answers: a partial removal fails, and the cache is cleared.
    monkeypatch.setattr(ll, "llama_memory_seq_rm", lambda *args: False)
    assert engine.continuation_logprobs(MESSAGES, head, tails) == pytest.approx(expected, abs=0.05)


# -- moving items, on a scripted scorer ------------------------------------------------------------


class Scripted:
    """Scores from a table: (list, item) -> (first-token score, full score)."""

    def __init__(self, table: dict[tuple[str, str], tuple[float, float]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int | None, tuple[str, ...]]] = []

    def continuation_logprobs(
        self,
        messages: Sequence[Message],
        head: str,
        tails: Sequence[str],
        *,
        max_tokens: int | None = None,
    ) -> list[float]:
        name = json.loads(head[1:].split(":")[0])
        self.asked.append((name, max_tokens, tuple(tails)))
        items = [json.loads('"' + t) for t in tails]
        return [self.table.get((name, i), (-50.0, -50.0))[max_tokens is None] for i in items]


LISTS = ["people", "places", "companies"]


def _relabel(
    data: Any,
    scorer: Scorer,
    valid: bool = True,
    *,
    evidence: dict[str, list[int] | None] | None = None,
    confidence: dict[str, float] | None = None,
    unsupported: tuple[str, ...] = (),
    lists: list[str] = LISTS,
    tick: Callable[[], None] | None = None,
) -> Annotated:
    """``relabel`` on ``data``; by default each item's evidence is its index, confidence 0.5."""
    if evidence is None:
        pointers = _pointers(data)
        evidence = {f"/{k}/{i}": [n, n + 1] for n, (k, i) in enumerate(pointers) if k != "title"}
    if confidence is None:
        confidence = {p: 0.5 for p in evidence}
    return relabel(
        Annotated(data, evidence, confidence, unsupported),
        lists=lists,
        messages=MESSAGES,
        scorer=scorer,
        is_valid=lambda _: valid,
        tick=tick,
    )


def _pointers(data: dict[str, Any]) -> list[tuple[str, int]]:
    return [(k, i) for k, v in data.items() if isinstance(v, list) for i in range(len(v))]


def test_items_move_to_their_likeliest_list_with_their_evidence() -> None:
    data = {"people": ["Oslo", "Maria Lopez"], "places": ["Siemens"], "companies": []}
    scorer = Scripted(
        {
            ("places", "Oslo"): (-1.0, -2.0),
            ("people", "Maria Lopez"): (-1.0, -3.0),
            ("companies", "Siemens"): (-1.0, -2.5),
            ("places", "Siemens"): (-0.5, -4.0),  # likelier first token, less likely in full
        }
    )
    out = _relabel(data, scorer)
    assert out.data == {"people": ["Maria Lopez"], "places": ["Oslo"], "companies": ["Siemens"]}
    # Each value keeps its source and confidence, under its new pointer.
    assert out.evidence == {"/people/0": [1, 2], "/places/0": [0, 1], "/companies/0": [2, 3]}
    # In document order, as --evidence prints them (they came in the order items were read).
    assert list(out.evidence) == list(out.confidence) == ["/people/0", "/places/0", "/companies/0"]
    # One cheap look per list, then the full score only for shortlisted lists.
    assert [a[1] for a in scorer.asked[:3]] == [1, 1, 1]
    assert all(a[1] is None for a in scorer.asked[3:])


def test_only_the_shortlist_is_scored_in_full() -> None:
    lists = ["people", "places", "companies", "products"]
    table = {(name, "Nokia"): (-float(n), -9.0) for n, name in enumerate(lists)}
    table["products", "Nokia"] = (-9.0, -0.1)  # best in full, but its first token is last
    scorer = Scripted(table)
    out = _relabel(
        {name: [] for name in lists} | {"products": ["Nokia"]},
        scorer,
        evidence={"/products/0": [0, 5]},
        confidence={"/products/0": 0.9},
        lists=lists,
    )
    assert SHORTLIST == 3
    assert out.data["people"] == ["Nokia"]  # ties in full: the earlier list
    assert out.evidence == {"/people/0": [0, 5]}
    assert ("products", None, ('Nokia"',)) not in scorer.asked


def test_an_item_in_two_lists_is_listed_once() -> None:
    # Copies of one mention: the same words of the text under two lists.
    data = {"people": ["Nokia"], "places": [], "companies": ["Nokia"]}
    spans: dict[str, list[int] | None] = {"/people/0": [0, 5], "/companies/0": [0, 5]}
    out = _relabel(data, Scripted({("companies", "Nokia"): (-1.0, -1.0)}), evidence=spans)
    assert out.data == {"people": [], "places": [], "companies": ["Nokia"]}
    assert out.evidence == {"/companies/0": [0, 5]}


def test_the_texts_own_repeats_all_stay_wherever_the_model_put_them() -> None:
    # "The tour went Rome, Paris, Rome, Oslo and back to Rome. Our driver was Bob Smith.": the
    # three Romes, each from its own place, came out as one (every copy of a string but one
    # was dropped, repeats inside one list too).
    data = {"people": ["Rome", "Bob Smith"], "places": ["Rome", "Paris", "Rome"], "companies": []}
    evidence: dict[str, list[int] | None] = {
        "/people/0": [47, 51],
        "/people/1": [70, 79],
        "/places/0": [14, 18],
        "/places/1": [20, 25],
        "/places/2": [27, 31],
    }
    table = {("places", p): (-1.0, -1.0) for p in ("Rome", "Paris")}
    out = _relabel(
        data, Scripted(table | {("people", "Bob Smith"): (-1.0, -1.0)}), evidence=evidence
    )
    assert out.data["places"] == ["Rome", "Rome", "Paris", "Rome"]
    assert [out.evidence[f"/places/{i}"] for i in range(4)] == [
        [47, 51],
        [14, 18],
        [20, 25],
        [27, 31],
    ]
    # Copies of one mention are still one: the same words under two lists.
    same = {"people": ["Rome"], "places": ["Rome"], "companies": []}
    out = _relabel(same, Scripted(table), evidence={"/people/0": [14, 18], "/places/0": [14, 18]})
    assert out.data == {"people": [], "places": ["Rome"], "companies": []}


def test_values_with_no_source_are_named_at_their_new_place() -> None:
    data = {"people": ["Paris", "Anna"], "places": [], "companies": []}
    out = _relabel(
        data,
        Scripted({("places", "Paris"): (-1.0, -1.0), ("people", "Anna"): (-1.0, -1.0)}),
        evidence={"/people/0": None, "/people/1": [0, 4]},
        confidence={"/people/0": 0.2, "/people/1": 0.9},
        unsupported=("/people/0",),
    )
    assert out.data == {"people": ["Anna"], "places": ["Paris"], "companies": []}
    assert out.unsupported == ("/places/0",)
    assert out.evidence == {"/people/0": [0, 4], "/places/0": None}


def test_of_two_copies_the_one_with_a_source_is_kept() -> None:
    # The contest gave the words to one list; the other copy has no source.
    data = {"people": ["Paris"], "places": ["Paris"], "companies": []}
    out = _relabel(
        data,
        Scripted({("places", "Paris"): (-1.0, -1.0)}),
        evidence={"/people/0": None, "/places/0": [14, 19]},
        confidence={"/people/0": 0.3, "/places/0": 0.8},
        unsupported=("/people/0",),
    )
    assert out.data == {"people": [], "places": ["Paris"], "companies": []}
    assert out.evidence == {"/places/0": [14, 19]} and out.confidence == {"/places/0": 0.8}
    assert out.unsupported == ()


def test_a_time_limit_is_checked_before_each_evaluation() -> None:
    class TimeIsUp(Exception):
        pass

    calls: list[int] = []

    def tick() -> None:
        calls.append(len(scorer.asked))
        if len(calls) > 2:
            raise TimeIsUp

    scorer = Scripted({})
    data = {"people": ["Oslo"], "places": ["Nokia"], "companies": []}
    with pytest.raises(TimeIsUp):
        _relabel(data, scorer, evidence={}, tick=tick)
    assert calls == [0, 1, 2]  # before every call to the model, none after the limit


def test_a_document_that_would_not_validate_is_kept() -> None:
    data = {"people": ["Oslo"], "places": [], "companies": []}
    scorer = Scripted({("places", "Oslo"): (-1.0, -1.0)})
    assert _relabel(data, scorer, valid=False).data == data
    assert _relabel(data, scorer).data == {"people": [], "places": ["Oslo"], "companies": []}


# -- end to end on the real model ------------------------------------------------------------------


@pytest.mark.model
def test_extracted_items_sit_in_their_likeliest_shortlisted_list(engine: Engine) -> None:
    extractor = Extractor(NER, engine)
    chunks: list[str] = []
    found = extractor.run(TEXT, on_text=chunks.append)
    # The caller hears empty chunks while the items are typed (its clock check runs there).
    assert "" in chunks and "".join(chunks).startswith("{")
    # The engine's statistics are still the generation's, not the typing's.
    assert engine.last_stats.prompt_tokens == found.results[-1].prompt_tokens
    assert len(engine.last_stats.tokens) == found.results[-1].generated_tokens
    # (The typing's own prefill reuses the whole prompt; the generation's, from another text's
    # cache, could not.)
    assert engine.last_stats.reused_tokens < found.results[-1].prompt_tokens
    items = [(k, v) for k in ("people", "places", "companies") for v in found.data[k]]
    assert items, "the model found nothing to type"
    messages = extractor.messages(TEXT)
    lists = LISTS
    for name, item in items:
        tail = json.dumps(item)[1:]
        heads = {n: "{" + json.dumps(n) + ': ["' for n in lists}
        first = {
            n: engine.continuation_logprobs(messages, heads[n], [tail], max_tokens=1)[0]
            for n in lists
        }
        shortlist = sorted(lists, key=lambda n: -first[n])[:SHORTLIST]
        full = {n: engine.continuation_logprobs(messages, heads[n], [tail])[0] for n in shortlist}
        assert name == max(shortlist, key=lambda n: full[n]), (item, full)
        pointer = f"/{name}/{found.data[name].index(item)}"
        span = found.evidence[pointer]
        assert span is not None and TEXT[span[0] : span[1]] == item


@pytest.mark.model
@pytest.mark.parametrize("error", [InputError("too long"), ModelError("decode failed")])
def test_a_failure_while_typing_keeps_the_document(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def fail(*args: Any, **kwargs: Any) -> list[float]:
        raise error

    monkeypatch.setattr(engine, "continuation_logprobs", fail)
    found = Extractor(NER, engine).run(TEXT)
    assert found.data["people"] or found.data["places"] or found.data["companies"]
    for pointer, span in found.evidence.items():
        assert span is not None and TEXT[span[0] : span[1]] == _at(found.data, pointer)


def _at(data: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data
