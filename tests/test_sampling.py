"""The choice rules of ``qwenjson.sampling`` against their oracles, with no model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from qwenjson.sampling import choose, choose_grounded, draw, index_pieces, logprob
from qwenjson.stats import GenerationStats
from tests.fakes import FakeChecks


def oracle(logits: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> int | None:
    """Greedy decoding the textbook way: mask everything, then the argmax."""
    if not mask.any():
        return None
    return int(np.argmax(np.where(mask, logits, -np.inf)))


def random_case(seed: int, n_vocab: int = 300) -> tuple[npt.NDArray[np.float32], FakeChecks]:
    rng = np.random.default_rng(seed)
    # Rounded logits make ties, among them ties with the 64th candidate.
    logits = np.round(rng.normal(size=n_vocab) * 3).astype(np.float32)
    density = rng.choice([0.0, 0.002, 0.01, 0.1, 0.5, 1.0])
    grammar = rng.random(n_vocab) < density
    banned = frozenset(int(t) for t in rng.choice(n_vocab, size=5, replace=False))
    passing = (
        None
        if seed % 3 == 0
        else frozenset(int(t) for t in np.flatnonzero(rng.random(n_vocab) < 0.3))
    )
    return logits, FakeChecks(grammar, banned, passing)


@pytest.mark.parametrize("seed", range(300))
def test_greedy_choice_equals_the_full_mask_argmax(seed: int) -> None:
    logits, checks = random_case(seed)
    got = choose(logits, checks, 0.0, 1.0, np.random.default_rng(0), GenerationStats())
    assert got == oracle(logits, checks.allowed())


@pytest.mark.parametrize("seed", range(40))
def test_a_temperature_too_small_to_divide_by_is_greedy(seed: int) -> None:
    # logits / 1e-320 overflows: its softmax weights were NaN, and the draw then picked a token
    # the grammar forbids (llama.cpp aborted). Its limit, the argmax, is what it means.
    logits, checks = random_case(seed)
    got = choose(logits, checks, 1e-320, 1.0, np.random.default_rng(0), GenerationStats())
    assert got == oracle(logits, checks.allowed())


def test_greedy_checks_only_the_argmax_when_the_grammar_admits_it() -> None:
    logits = np.array([0.0, 5.0, 1.0, 2.0], dtype=np.float32)
    checks = FakeChecks(np.ones(4, dtype=np.bool_))
    stats = GenerationStats()
    assert choose(logits, checks, 0.0, 1.0, np.random.default_rng(0), stats) == 1
    assert checks.calls == ["allows"]
    assert stats.rejections == 0


def test_greedy_refusal_is_counted_and_found_among_the_candidates_without_a_full_mask() -> None:
    logits = np.array([0.0, 5.0, 1.0, 2.0], dtype=np.float32)
    checks = FakeChecks(np.array([True, False, True, False]))
    stats = GenerationStats()
    assert choose(logits, checks, 0.0, 1.0, np.random.default_rng(0), stats) == 2
    assert "mask" not in checks.calls
    assert stats.rejections == 1


def test_ties_go_to_the_lowest_id_like_argmax() -> None:
    logits = np.zeros(200, dtype=np.float32)  # all tied: the 64 candidates can't decide
    grammar = np.zeros(200, dtype=np.bool_)
    grammar[[150, 7]] = True
    got = choose(logits, FakeChecks(grammar), 0.0, 1.0, np.random.default_rng(0), GenerationStats())
    assert got == 7


def test_nothing_allowed_is_none_greedy_and_sampled() -> None:
    logits = np.zeros(10, dtype=np.float32)
    checks = FakeChecks(np.zeros(10, dtype=np.bool_))
    for temperature in (0.0, 1.0):
        rng = np.random.default_rng(0)
        assert choose(logits, checks, temperature, 1.0, rng, GenerationStats()) is None


@pytest.mark.parametrize("top_p", [1.0, 0.999])
def test_sampling_follows_the_masked_softmax(top_p: float) -> None:
    logits = np.array([3.0, 2.0, 1.0, 0.5, 0.0, -1.0], dtype=np.float32)
    grammar = np.array([False, True, True, False, True, True])
    checks = FakeChecks(grammar, banned_ids=frozenset({5}))
    rng = np.random.default_rng(7)
    n = 6000
    seen = np.zeros(6)
    for _ in range(n):
        token = choose(logits, checks, 1.0, top_p, rng, GenerationStats())
        assert token is not None
        seen[token] += 1
    p = np.where(checks.allowed(), np.exp(logits.astype(np.float64)), 0.0)
    p /= p.sum()
    assert np.abs(seen / n - p).max() < 0.025
    assert seen[[0, 3, 5]].sum() == 0


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_a_cold_temperature_samples_the_allowed_tokens_far_below_the_best(top_p: float) -> None:
    # Allowed tokens 10 and 11 below the best logit at T = 0.01: their weights, shifted by the
    # best of all, underflowed to 0, and the document ended cut off as if none were allowed.
    logits = np.zeros(10, dtype=np.float32)
    logits[[0, 5, 6]] = [20.0, 10.0, 9.0]
    checks = FakeChecks(np.isin(np.arange(10), [5, 6]))
    rng = np.random.default_rng(0)
    seen = {choose(logits, checks, 0.01, top_p, rng, GenerationStats()) for _ in range(50)}
    assert seen == {5}  # the softmax at T = 0.01: token 6 has e**-100 of token 5's weight


def test_a_cold_draw_past_refused_tokens_keeps_the_ratio_of_the_allowed_ones() -> None:
    # Allowed tokens 7.44 and 7.46 below a refused best, T = 0.01: shifted by the refused
    # token's logit, token 2's weight underflowed to exactly 0 and token 1 came out every time.
    logits = np.array([10.0, 10.0 - 7.44, 10.0 - 7.46], dtype=np.float32)
    checks = FakeChecks(np.array([False, True, True]))
    rng, n = np.random.default_rng(0), 4000
    seen = np.zeros(3)
    for _ in range(n):
        token = choose(logits, checks, 0.01, 1.0, rng, GenerationStats())
        assert token is not None
        seen[token] += 1
    z = logits[1:].astype(np.float64) / 0.01
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # the oracle: the masked softmax
    assert np.abs(seen[1:] / n - p).max() < 0.025


@pytest.mark.parametrize(
    "logits",
    [
        [0.0, -np.inf, -np.inf, 0.0, 0.0],  # every allowed token impossible (greedy: 0)
        [np.inf, 0.0, 0.0, 0.0, 0.0],  # a refused token certain
        [0.0, np.nan, 0.0, 0.0, 0.0],
    ],
)
def test_infinite_or_nan_logits_still_give_an_allowed_token(logits: list[float]) -> None:
    # The masked weights became NaN and a refused token was drawn (llama.cpp aborts on one).
    checks = FakeChecks(np.isin(np.arange(5), [1, 2]))
    rng, stats = np.random.default_rng(0), GenerationStats()
    for temperature in (0.0, 1.0):  # greedy and sampled
        for top_p in (1.0, 0.9):
            array = np.array(logits, dtype=np.float32)
            assert choose(array, checks, temperature, top_p, rng, stats) in (1, 2)


def test_a_draw_at_the_very_top_is_a_token_with_weight() -> None:
    class Top:
        def random(self) -> float:
            return 1.0  # what rounding u up to the total amounts to

    assert draw(np.array([0.0, 1.0, 0.0]), Top()) == 1  # type: ignore[arg-type]


def test_top_p_keeps_the_nucleus_of_the_masked_distribution() -> None:
    logits = np.array([9.0, 3.0, 2.9, 0.0], dtype=np.float32)
    checks = FakeChecks(np.array([False, True, True, True]))
    rng = np.random.default_rng(1)
    seen = {choose(logits, checks, 1.0, 0.5, rng, GenerationStats()) for _ in range(200)}
    assert seen == {1}  # token 1 alone holds more than half of the allowed mass


def test_draw_and_logprob() -> None:
    rng = np.random.default_rng(0)
    assert {draw(np.array([0.0, 1.0, 0.0]), rng) for _ in range(50)} == {1}
    logits = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    expected = np.log(np.exp(2.0) / np.exp([1.0, 2.0, 3.0]).sum())
    assert logprob(logits, 1) == pytest.approx(expected)


PIECES = [b"", b"a", b'"', b'",', b"ab", b"<|x|>", b"b"]


def test_piece_index_leaves_out_empty_and_banned_pieces() -> None:
    index = index_pieces(len(PIECES), PIECES.__getitem__, lambda t: t == 5)
    assert index.by_piece == {b"a": [1], b'"': [2], b'",': [3], b"ab": [4], b"b": [6]}
    assert index.sensitive.tolist() == [2, 3]
    assert index.prefix_ids(b"abc") == [1, 4]


@dataclass
class FakeConstraint:
    """A grounding constraint that abstains: the value may be closed empty with ``"``."""

    abstain: bool
    refusals: list[bytes] = field(default_factory=list)

    def refused(self, piece: bytes) -> None:
        self.refusals.append(piece)

    def would_abstain(self, piece: bytes) -> bool:
        return self.abstain

    def closes_empty(self, piece: bytes) -> bool:
        return piece.startswith(b'"')

    def blank_continuations(self, piece: bytes) -> list[bytes]:
        return []

    def respelled(self, piece: bytes) -> bytes | None:
        return None

    def case_changed(self) -> None:
        raise AssertionError("nothing was respelled")

    def allows(self, piece: bytes) -> bool:
        return True


@pytest.mark.parametrize("abstain", [True, False])
def test_a_refused_first_choice_closes_the_value_empty_or_is_chosen_again(abstain: bool) -> None:
    index = index_pieces(len(PIECES), PIECES.__getitem__, lambda t: t == 5)
    logits = np.array([0, 9, 1, 2, 8, 0, 0], dtype=np.float32)
    checks = FakeChecks(np.ones(len(PIECES), dtype=np.bool_))
    constraint = FakeConstraint(abstain)
    got = choose_grounded(
        logits,
        1,
        constraint,  # type: ignore[arg-type]
        checks,
        index,
        PIECES.__getitem__,
        lambda: 6,
    )
    # Of the closers '"' and '",', the higher logit; either way credited with its own logit.
    assert got == ((3, 3) if abstain else (6, 6))
    assert constraint.refusals == [b"a"]


def _refused_in(
    text: str, written: bytes, pieces: list[bytes], logits: list[float]
) -> tuple[Any, FakeChecks, npt.NDArray[np.float32], Callable[[], tuple[int, int]]]:
    """A grounding of ``text`` for one field ``a`` after ``written``, and the choice made
    when it refuses the model's token 0 (any other token the grammar admits is 5)."""
    from qwenjson.grounding import Grounding, SourceText, grounding_rules

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    grounding = Grounding(SourceText(text), grounding_rules(schema))
    grounding.accept(written)
    index = index_pieces(len(pieces), pieces.__getitem__, lambda t: False)
    row = np.array(logits, dtype=np.float32)
    checks = FakeChecks(np.ones(len(pieces), dtype=np.bool_))

    def choice() -> tuple[int, int]:
        return choose_grounded(row, 0, grounding, checks, index, pieces.__getitem__, lambda: 5)

    return grounding, checks, row, choice


def test_a_refused_blank_where_the_text_breaks_the_line_is_written_as_the_break() -> None:
    # The model wants " SHAH"; the text breaks the line there. Of the pieces spelling the
    # text's escaped line break whole ("\\" alone doesn't), the one with the higher logit.
    pieces = [b" SHAH", b"\\", b"\\n", b"\\nSH", b'"', b"x"]
    _, _, logits, choice = _refused_in("LOT 3,\nSHAH", b'{"a": "LOT 3,', pieces, [9, 8, 1, 3, 7, 0])
    assert choice() == (3, 3)
    logits[2] = 4.0
    assert choice() == (2, 2)


def test_a_choice_refused_for_its_case_is_written_in_the_texts_case() -> None:
    pieces = [b"Greg", b"g", b"gr", b"greg", b'"', b"x"]
    grounding, checks, _, choice = _refused_in(
        "play greg raposo songs", b'{"a": "', pieces, [9, 5, 4, 1, 8, 0]
    )
    # Not closed empty (its first choice is in the text, in another case): the longest piece
    # spelling the text's "greg", credited with the model's own "Greg".
    assert choice() == (3, 0)
    checks.grammar[3] = False  # the grammar refuses "greg": the next longest
    assert choice() == (2, 0)
    grounding.accept(b'greg"}')
    assert [r.status for r in grounding.records] == ["grounded"]  # not marked as refused


def test_a_respelled_value_the_model_then_leaves_has_no_source() -> None:
    pieces = [b"The", b"the", b" Beatles", b'"', b"x", b" greg"]
    grounding, _, _, choice = _refused_in(
        "play the greg raposo songs", b'{"a": "', pieces, [9, 1, 0, 8, 0, 5]
    )
    assert choice() == (1, 0)
    grounding.accept(b"the")
    # "The Beatles", said the model: " Beatles" is refused inside the respelled value.
    assert choose_grounded(
        np.array([0, 0, 9, 1, 0, 5], dtype=np.float32),
        2,
        grounding,
        FakeChecks(np.ones(len(pieces), dtype=np.bool_)),
        index_pieces(len(pieces), pieces.__getitem__, lambda t: False),
        pieces.__getitem__,
        lambda: 5,
    ) == (5, 5)
    grounding.accept(b' greg"}')
    assert [r.status for r in grounding.records] == ["unsupported"]


def test_a_blank_where_the_text_breaks_the_line_is_not_respelled_elsewhere() -> None:
    # " Raposo" fits " raposo" in another case, but here the text breaks the line: the break.
    pieces = [b" Raposo", b"\\n", b" raposo", b'"', b"x"]
    _, _, _, choice = _refused_in(
        "greg\nRaposo, greg raposo", b'{"a": "greg', pieces, [9, 3, 8, 1, 0]
    )
    assert choice() == (1, 1)
