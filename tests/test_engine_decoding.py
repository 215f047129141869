"""The fast paths of the generation loop against plain full masking, on SmolLM2-135M.

The reference here is the textbook loop, written independently of ``qwenjson.engine`` on
llama.cpp's low-level API: at every step the grammar masks the whole vocabulary and the best
remaining token is taken. The engine must give exactly its tokens with fast-forward off, and
with fast-forward on may differ only where documented (a forced text respelled by the tokenizer).
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp.llama_cpp as ll
import numpy as np
import pytest

from qwenjson.buildcheck import model_params
from qwenjson.engine import Engine
from qwenjson.errors import ModelError
from qwenjson.generation import Message
from tests.grammar_engine import GrammarEngine, default_model_path
from tests.helpers import PERSON_GRAMMAR, PERSON_MESSAGES

pytestmark = pytest.mark.model

STRING = r"""string ::= "\"" char{0,60} "\""
char ::= [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})"""

CASES: dict[str, tuple[list[Message], str]] = {
    "person": (PERSON_MESSAGES, PERSON_GRAMMAR),
    "enums-and-numbers": (
        [
            {"role": "system", "content": "Classify the order. Answer in JSON."},
            {"role": "user", "content": "Order 1182: two red bicycles, paid by card, urgent."},
        ],
        r"""root ::= "{\"order_id\":" int ",\"colour\":" colour ",\"payment\":" pay rest
rest ::= ",\"priority\":" prio ",\"quantity\":" int "}"
colour ::= "\"red\"" | "\"green\"" | "\"blue\"" | "\"yellow\""
pay ::= "\"credit card\"" | "\"bank transfer\"" | "\"cash on delivery\""
prio ::= "\"urgent\"" | "\"normal\"" | "\"low\""
int ::= "0" | [1-9] [0-9]{0,5}
""",
    ),
    "free-text": (
        [
            {"role": "system", "content": "Summarise the text in JSON with a title and summary."},
            {
                "role": "user",
                "content": "The river flooded the old town on Monday night. Shops on Main "
                "Street were damaged and volunteers spent two days clearing the mud.",
            },
        ],
        r"""root ::= "{\"title\":" string ",\"summary\":" string ",\"tags\":[" string "]}"
"""
        + STRING,
    ),
}


def reference_greedy(messages: list[Message], grammar: str, max_tokens: int) -> list[int]:
    """Greedy decoding with the whole vocabulary masked by the grammar at every step."""
    with Engine(default_model_path(), n_ctx=1024, n_threads=1) as e:
        tokens = e.prompt_tokens(messages)  # rendering and tokenizing are not under test here
    params = model_params()  # loaded as the engine loads it (buildcheck)
    model = ll.llama_model_load_from_file(str(default_model_path()).encode(), params)
    vocab = ll.llama_model_get_vocab(model)
    n_vocab = ll.llama_vocab_n_tokens(vocab)
    cparams = ll.llama_context_default_params()
    cparams.n_ctx = 1024
    cparams.n_batch = 512
    cparams.n_ubatch = 512
    cparams.n_threads = cparams.n_threads_batch = 1
    ctx = ll.llama_init_from_model(model, cparams)
    batch = ll.llama_batch_init(512, 0, 1)
    grammar_smpl = ll.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    cand = (ll.llama_token_data * n_vocab)()
    array = ll.llama_token_data_array(
        data=ctypes.cast(cand, ll.llama_token_data_p), size=n_vocab, selected=-1, sorted=False
    )
    # Control tokens other than end-of-generation are never allowed (the engine's rule too).
    view = np.frombuffer(
        memoryview(cand).cast("B"), dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]
    )
    banned = np.array(
        [
            ll.llama_vocab_is_control(vocab, t) and not ll.llama_vocab_is_eog(vocab, t)
            for t in range(n_vocab)
        ]
    )

    def decode(toks: list[int], start: int) -> None:
        for i, t in enumerate(toks):
            batch.token[i] = t
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = int(i == len(toks) - 1)
        batch.n_tokens = len(toks)
        assert ll.llama_decode(ctx, batch) == 0

    out: list[int] = []
    try:
        decode(tokens, 0)
        while len(out) < max_tokens:
            logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            view["id"] = np.arange(n_vocab)
            view["logit"] = np.where(banned, -np.inf, logits)
            array.size = n_vocab
            ll.llama_sampler_apply(grammar_smpl, ctypes.byref(array))
            best = int(np.argmax(view["logit"]))  # the first of equal maxima: the lowest id
            if ll.llama_vocab_is_eog(vocab, best):
                break
            ll.llama_sampler_accept(grammar_smpl, best)
            out.append(best)
            decode([best], len(tokens) + len(out) - 1)
    finally:
        ll.llama_sampler_free(grammar_smpl)
        ll.llama_batch_free(batch)
        ll.llama_free(ctx)
        ll.llama_model_free(model)
    return out


@pytest.fixture(scope="module")
def references() -> dict[str, list[int]]:
    return {name: reference_greedy(m, g, 120) for name, (m, g) in CASES.items()}


def fresh_generate(
    messages: list[Message],
    grammar: str,
    *,
    fast_forward: bool = True,
    guess: bool = True,
    drafts: bool = True,
    temperature: float = 0.0,
    seed: int = 0,
    max_tokens: int = 120,
) -> tuple[str, list[tuple[int, bool]], Any]:
    """(text, tokens, stats) of one generation, with the engine's fast paths as given."""
    # A fresh engine per run: reusing a KV prefix evaluates the prompt in other batch sizes,
    # which changes logits in the last bits and would make exact comparisons meaningless.
    with Engine(default_model_path(), n_ctx=1024, n_threads=1, fast_forward=fast_forward) as e:
        e.guess_lead = guess
        e.draft_from_prompt = drafts
        result = e.generate(
            messages, grammar, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
        return result.text, e.last_stats.tokens, e.last_stats


@pytest.mark.parametrize("case", sorted(CASES))
def test_sample_first_greedy_equals_full_masking(
    case: str, references: dict[str, list[int]], grammar_engine: GrammarEngine
) -> None:
    messages, grammar = CASES[case]
    text, tokens, stats = fresh_generate(messages, grammar, fast_forward=False)
    # Budget steering (the last few tokens of a budget the document would overrun) is the one
    # documented departure from plain greedy; the reference doesn't steer.
    same = len(tokens) if stats.steered_from is None else stats.steered_from
    assert [t for t, _ in tokens][:same] == references[case][:same]
    assert same == len(tokens) or same >= 120 - 20
    assert not any(forced for _, forced in tokens)
    assert grammar_engine.accepts(grammar, text)
    assert stats.full_masks <= stats.rejections  # masking the vocabulary only after a refusal


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_forward_changes_greedy_output_only_by_respelling_forced_text(
    case: str, grammar_engine: GrammarEngine, smollm2: Path
) -> None:
    messages, grammar = CASES[case]
    plain_text, plain, _ = fresh_generate(messages, grammar, fast_forward=False)
    ff_text, ff, stats = fresh_generate(messages, grammar, fast_forward=True)
    assert grammar_engine.accepts(grammar, ff_text)
    json.loads(ff_text)
    assert stats.forced_tokens > 0
    assert stats.decode_calls < len(ff)  # forced text saved decode steps
    # Up to the first token where the two runs differ, the texts agree; that token must be one
    # fast-forward fed (a respelling of forced text), never a different choice by the model.
    first = next((i for i, (a, b) in enumerate(zip(plain, ff, strict=False)) if a[0] != b[0]), None)
    if first is None:
        assert ff_text == plain_text
        return
    assert ff[first][1], f"token {first} differs but was chosen by the model, not forced"
    with Engine(smollm2, n_ctx=256, n_threads=1) as e:
        agreed = b"".join(e.piece(t) for t, _ in ff[:first]).decode("utf-8", "replace")
    assert plain_text.startswith(agreed) and ff_text.startswith(agreed)


@pytest.fixture(scope="module")
def engine(smollm2: Path) -> Iterator[Engine]:
    with Engine(smollm2, n_ctx=1024, n_threads=1) as e:
        yield e


def test_forced_enum_tails_and_keys_are_fed_not_decoded(engine: Engine) -> None:
    grammar = r"""root ::= "{\"colour\":" ("\"ultramarine blue\"" | "\"vermilion red\"") "}" """
    result = engine.generate(CASES["enums-and-numbers"][0], grammar, max_tokens=50)
    assert result.text in ('{"colour":"ultramarine blue"}', '{"colour":"vermilion red"}')
    stats = engine.last_stats
    # The model chooses the opening and the first letters; the key, the rest of the value and
    # the closing brace are forced, and the final "}" costs no decode at all.
    assert stats.sampled_tokens <= 3
    assert stats.forced_tokens >= 3
    assert stats.decode_calls <= 3 < len(stats.tokens)


def test_forced_start_is_evaluated_with_the_prompt(engine: Engine) -> None:
    messages = CASES["enums-and-numbers"][0]
    whole = engine.generate(messages, r'root ::= "{\"a\":[1,2]}"', max_tokens=50)
    assert whole.text == '{"a":[1,2]}'
    assert whole.finish_reason == "stop"
    assert engine.last_stats.sampled_tokens == engine.last_stats.decode_calls == 0
    grammar = r"""root ::= "{\"colour\":" ("\"red\"" | "\"blue\"") "}" """
    result = engine.generate(messages, grammar, max_tokens=50)
    assert result.text in ('{"colour":"red"}', '{"colour":"blue"}')
    stats = engine.last_stats
    assert stats.tokens[0][1]  # the opening was fed, not chosen
    assert stats.decode_calls <= 2


def test_forced_text_in_multibyte_characters(engine: Engine, grammar_engine: GrammarEngine) -> None:
    grammar = r"""root ::= "{\"城市\":" city ",\"备注\":\"无\"}"
city ::= "\"北京市海淀区\"" | "\"上海市浦东新区\"" """
    result = engine.generate([{"role": "user", "content": "我住在北京。"}], grammar, max_tokens=60)
    assert grammar_engine.accepts(grammar, result.text)
    assert result.finish_reason == "stop"


@pytest.mark.slow
def test_sampling_has_the_masked_distribution(engine: Engine) -> None:
    # Lowercase letters only: the model's favourite tokens (with a leading space, capitals)
    # are refused, so rejection draws and the full-mask fallback both run.
    grammar = "root ::= [a-z]+"
    gram = engine._init_grammar(grammar)
    try:
        tokens = engine.prompt_tokens(PERSON_MESSAGES)
        engine._prefill(tokens, 0)
        logits = engine._logits().copy()
        temperature = 1.3
        mask = engine._grammar_allows(gram, engine._all_ids) & ~engine._banned_mask()
        z = logits.astype(np.float64) / temperature
        p = np.exp(z - z.max()) * mask
        expected = p / p.sum()
        rng = np.random.default_rng(1234)
        draws = 2500
        counts = np.zeros(engine.n_vocab)
        engine.last_stats.rejections = engine.last_stats.full_masks = 0
        for _ in range(draws):
            token = engine._choose(logits, gram, temperature, 1.0, rng)
            assert token is not None and mask[token]
            counts[token] += 1
        assert engine.last_stats.rejections > 0
        assert engine.last_stats.full_masks > 0
    finally:
        ll.llama_sampler_free(gram)
    # Pearson's chi-square over the tokens expected at least 5 times, the rest pooled.
    big = expected * draws >= 5
    observed = np.append(counts[big], counts[~big].sum())
    wanted = np.append(expected[big], expected[~big].sum()) * draws
    keep = wanted > 0
    chi2 = float((((observed - wanted) ** 2)[keep] / wanted[keep]).sum())
    dof = int(keep.sum()) - 1
    assert dof >= 5
    # Mean dof, sd sqrt(2 dof): 6 sd above the mean is far beyond chance (p < 1e-6).
    assert chi2 < dof + 6 * (2 * dof) ** 0.5, (chi2, dof)


def test_top_p_keeps_only_the_masked_nucleus(engine: Engine) -> None:
    gram = engine._init_grammar("root ::= [a-z]+")
    try:
        engine._prefill(engine.prompt_tokens(PERSON_MESSAGES), 0)
        logits = engine._logits().copy()
        mask = engine._grammar_allows(gram, engine._all_ids) & ~engine._banned_mask()
        masked = np.where(mask, logits, -np.inf)
        p = np.exp(masked - masked.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")
        nucleus = set(order[: int(np.searchsorted(np.cumsum(p[order]), 0.5)) + 1].tolist())
        rng = np.random.default_rng(7)
        seen = {engine._choose(logits, gram, 1.0, 0.5, rng) for _ in range(300)}
    finally:
        ll.llama_sampler_free(gram)
    assert seen <= nucleus
    assert len(nucleus) == 1 or len(seen) > 1


def test_seeded_sampling_is_reproducible(engine: Engine) -> None:
    grammar = CASES["person"][1]
    a = engine.generate(PERSON_MESSAGES, grammar, max_tokens=80, temperature=0.9, seed=5)
    b = engine.generate(PERSON_MESSAGES, grammar, max_tokens=80, temperature=0.9, seed=5)
    assert a.text == b.text


def test_prompt_prefix_is_reused_across_calls(engine: Engine) -> None:
    grammar = CASES["person"][1]
    first = [PERSON_MESSAGES[0], {"role": "user", "content": "Anna is 41 and paints."}]
    second = [PERSON_MESSAGES[0], {"role": "user", "content": "Bo is 9 and plays chess."}]
    engine.generate(first, grammar, max_tokens=80)
    result = engine.generate(second, grammar, max_tokens=80)
    json.loads(result.text)
    shared = engine._shared_prefix_len(second, engine.prompt_tokens(second))
    assert shared > 10
    assert engine.last_stats.reused_tokens >= shared
    assert engine.last_stats.reused_tokens < result.prompt_tokens


def _schema_grammar(schema: dict[str, Any], spaced: bool) -> str:
    from qwenjson.schema import compile_schema

    return compile_schema(schema, closed_objects=True, spaced=spaced)


PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.mark.parametrize(
    ("spaced", "right"),
    [
        (True, True),  # `{"name": "`: the held-back ` "` is what the model writes
        (False, False),  # `{"name":"`: held-back `":"`, the model writes `":` then `"`
    ],
)
def test_the_lead_guess_never_changes_the_output(spaced: bool, right: bool) -> None:
    grammar = _schema_grammar(PERSON_SCHEMA, spaced)
    text, tokens, stats = fresh_generate(PERSON_MESSAGES, grammar, guess=True, max_tokens=60)
    plain_text, plain_tokens, plain_stats = fresh_generate(
        PERSON_MESSAGES, grammar, guess=False, max_tokens=60
    )
    assert (text, tokens) == (plain_text, plain_tokens)
    assert plain_stats.lead_guess is None
    assert stats.lead_guess is right
    # A right guess saves the decode of the token; a wrong one is dropped and costs none.
    assert stats.decode_calls == plain_stats.decode_calls - (1 if right else 0)


def test_a_lead_guess_that_keeps_missing_is_no_longer_tried(smollm2: Path) -> None:
    grammar = _schema_grammar(PERSON_SCHEMA, spaced=False)
    tried = []
    with Engine(smollm2, n_ctx=1024, n_threads=1) as e:  # its own record of guesses
        for _ in range(3):
            first = e.generate(PERSON_MESSAGES, grammar, max_tokens=60)
            tried.append(e.last_stats.lead_guess)
            json.loads(first.text)
    assert tried == [False, None, None]  # wrong once: the record is no longer even


COPY_MESSAGES: list[Message] = [
    {
        "role": "system",
        "content": "Copy the first sentence of the text into JSON, word for word, and name who "
        "wrote it.",
    },
    {
        "role": "user",
        "content": "We will rebuild the old bridge before the winter comes, and the river path "
        "will open again in spring. Written by Mayor Ana Lopez.",
    },
]
COPY_GRAMMAR = r"""root ::= "{\"sentence\":" string ",\"speaker\":" string "}"
""" + STRING.replace("{0,60}", "{0,120}")


def _copy(*, drafts: bool, fast_forward: bool, temperature: float = 0.0) -> tuple[str, Any]:
    text, _, stats = fresh_generate(
        COPY_MESSAGES,
        COPY_GRAMMAR,
        drafts=drafts,
        fast_forward=fast_forward,
        temperature=temperature,
        # A seed whose samples copy the prompt at 0.7 (so drafts are made), with and without
        # fast-forward; 3 was one until the prompt's parts were evaluated apart (KVState).
        seed=5,
    )
    return text, stats


def test_drafts_from_the_prompt_keep_the_greedy_output(grammar_engine: GrammarEngine) -> None:
    # Without fast-forward every token is the model's choice: compare with full masking.
    text, stats = _copy(drafts=True, fast_forward=False)
    reference = reference_greedy(COPY_MESSAGES, COPY_GRAMMAR, 120)
    assert [t for t, _ in stats.tokens] == reference
    assert grammar_engine.accepts(COPY_GRAMMAR, text)
    assert "We will rebuild the old bridge before the winter comes" in text
    # Drafts were made, most were right, and a wrong one was dropped from the KV cache (the
    # tokens after it still equal the reference's).
    assert stats.draft_hits > stats.draft_misses > 0
    assert stats.decode_calls < stats.sampled_tokens - stats.draft_hits // 2


@pytest.mark.parametrize(("fast_forward", "temperature"), [(True, 0.0), (True, 0.7), (False, 0.7)])
def test_drafts_change_nothing_with_fast_forward_or_sampling(
    fast_forward: bool, temperature: float
) -> None:
    # Sampling draws from each row's own distribution whether or not a draft sits after it,
    # so the same seed gives the same text.
    text, stats = _copy(drafts=True, fast_forward=fast_forward, temperature=temperature)
    plain, plain_stats = _copy(drafts=False, fast_forward=fast_forward, temperature=temperature)
    assert text == plain
    json.loads(text)
    assert plain_stats.drafted == 0 and stats.drafted > 0
    assert stats.decode_calls < plain_stats.decode_calls


def test_a_draft_chosen_before_forced_text_is_fed_again_with_it(smollm2: Path) -> None:
    # The input is the record itself: the draft runs on past the sentence's closing quote into
    # `","speaker":"`, text the grammar forces. The chosen closing token is then taken back,
    # with the drafts after it, and fed again with the forced text, as without drafts.
    messages: list[Message] = [
        COPY_MESSAGES[0],
        {
            "role": "user",
            "content": '{"sentence":"We will rebuild the old bridge before the winter comes, '
            'and the river path will open again in spring.","speaker":"Mayor Ana Lopez"}',
        },
    ]
    outputs = []
    for drafts in (True, False):
        with Engine(smollm2, n_ctx=1024, n_threads=1) as e:
            e.draft_from_prompt = drafts
            result = e.generate(messages, COPY_GRAMMAR, max_tokens=120)
            outputs.append((result.text, e.last_stats))
            # The KV cache holds the prompt and the output's tokens in order, nothing taken
            # back left in it (the last token or two are never evaluated: the end is forced).
            evaluated = e.prompt_tokens(messages) + [t for t, _ in e.last_stats.tokens]
            assert len(e._kv) >= len(evaluated) - 2
            assert e._kv[: len(evaluated) - 2] == evaluated[: len(evaluated) - 2]
    (text, stats), (plain, _) = outputs
    assert text == plain
    assert "We will rebuild the old bridge" in json.loads(text)["sentence"]
    assert stats.draft_respelled > 0
    assert stats.draft_hits > stats.draft_misses


def test_a_guess_that_cant_be_taken_back_stops_generation(
    monkeypatch: pytest.MonkeyPatch, smollm2: Path
) -> None:
    # A memory that can't drop a partial range (llama.cpp's recurrent ones; such models get
    # no guesses) would lose the whole context: that must be an error, never output.
    with Engine(smollm2, n_ctx=1024, n_threads=1) as e:
        monkeypatch.setattr(ll, "llama_memory_seq_rm", lambda *args: False)
        with pytest.raises(ModelError, match="take guessed tokens back"):
            e.generate(COPY_MESSAGES, COPY_GRAMMAR, max_tokens=120)
