"""The grammar's mask in slices, against the slow obvious method: one llama.cpp call over the
whole vocabulary, at every step of real documents (SmolLM2's vocabulary and llama.cpp's own
grammar engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import llama_cpp.llama_cpp as ll
import numpy as np
import pytest

import qwenjson.grammar_probe as gp
from qwenjson.plan import prepare_job, schema_of
from qwenjson.stats import GenerationStats
from qwenjson.vocab import Vocabulary

pytestmark = pytest.mark.model

CASES = [
    # inside strings (nearly every token admitted), keys, numbers, CJK and escapes
    ("name: full name of a person", True, {"items": [{"name": 'Quentin "Q" Sato'}]}),
    (
        "name, age int 0..150, hobbies [str]",
        False,
        {"name": "李明", "age": 28, "hobbies": ["读书"]},
    ),
]


@pytest.fixture(scope="module")
def vocab(smollm2: Path) -> Iterator[Vocabulary]:
    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = ll.llama_model_load_from_file(str(smollm2).encode(), params)
    yield Vocabulary(model)
    ll.llama_model_free(model)


@pytest.mark.parametrize(("schema", "each", "document"), CASES)
def test_the_mask_in_slices_is_the_mask_in_one_call(
    vocab: Vocabulary, monkeypatch: pytest.MonkeyPatch, schema: str, each: bool, document: object
) -> None:
    job = prepare_job(schema_of(schema)[0], each=each)
    grammar = gp.parse_grammar(vocab, job.prepared.compiled.grammar)
    probe = gp.GrammarProbe(vocab, GenerationStats)
    text = json.dumps(document, ensure_ascii=False, separators=(", ", ": "))
    tokens = vocab.tokenize(text.encode())
    assert vocab.n_vocab > gp._MASK_SLICE  # so that the slices are what is tested
    for token in tokens:
        sliced = probe.grammar_allows(grammar, probe.all_ids)
        monkeypatch.setattr(gp, "_MASK_SLICE", vocab.n_vocab)
        whole = probe.grammar_allows(grammar, probe.all_ids)
        monkeypatch.undo()
        assert np.array_equal(sliced, whole)
        assert sliced[token], vocab.piece(token)  # the document goes on
        odd = probe.all_ids[1::3]  # a subset, not aligned with the slices
        assert np.array_equal(probe.grammar_allows(grammar, odd), whole[1::3])
        ll.llama_sampler_accept(grammar, token)
    ll.llama_sampler_free(grammar)


def test_a_grammar_parsed_before_is_parsed_without_swapping_stderr(
    vocab: Vocabulary, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The swap is the whole process's: a library caller's threads lost their stderr lines
    # while every generation parsed its grammar.
    grammar = 'root ::= "a" [0-9]{1,3} "-once"'
    swaps: list[int] = []
    real_dup2 = gp.os.dup2

    def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        swaps.append(fd2)
        return real_dup2(fd, fd2, inheritable)

    monkeypatch.setattr(gp.os, "dup2", dup2)
    for _ in range(3):
        ll.llama_sampler_free(gp.parse_grammar(vocab, grammar))
    assert swaps == [2, 2]  # swapped and put back, the first time only
    with pytest.raises(gp.SchemaError, match="can't parse the grammar"):
        gp.parse_grammar(vocab, 'root ::= "a" (')  # a complaint is still caught, each time
    with pytest.raises(gp.SchemaError, match="can't parse the grammar"):
        gp.parse_grammar(vocab, 'root ::= "a" (')
