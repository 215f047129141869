"""Drafts from the prompt (qwenjson.drafting): which prompt tokens are proposed, and when."""

from __future__ import annotations

from qwenjson.drafting import LONG, MIN_MATCH, SHORT, LeadGuesses, PromptLookup, paying

# A toy vocabulary: token id -> bytes; 0 is a control token (the end of the user's turn).
PIECES = {
    0: b"",  # a control token's piece is empty
    1: b" The",
    2: b" river",
    3: b" flooded",
    4: b" the",
    5: b" old",
    6: b" town",
    7: b" on",
    8: b" Monday",
    9: b" night",
    10: b".",
    11: b"The",
    12: b' "',
    13: b" Shops",
    14: b" closed",
    15: b" early",
}
SENTENCE = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 10]


def lookup(tokens: list[int]) -> PromptLookup:
    return PromptLookup(tokens, [PIECES[t] for t in tokens], usable=lambda t: t != 0)


def pieces(tokens: list[int]) -> list[bytes]:
    return [PIECES[t] for t in tokens]


def test_a_long_enough_copy_proposes_what_followed_in_the_prompt() -> None:
    # The output spells the copy's first word without the prompt's blank ('"The' against
    # ' The'); the match is on bytes, so 'The' still counts as covered.
    out = [12, 11, 2, 3, 4, 5]  # ' "The river flooded the old': 5 tokens covered
    assert MIN_MATCH == 5
    assert lookup([*SENTENCE, 0]).propose(5, pieces(out)) == SENTENCE[5 : 5 + SHORT]
    # One token less is one short of the minimum.
    assert lookup([*SENTENCE, 0]).propose(4, pieces(out[:-1])) == []


def test_a_short_match_proposes_nothing() -> None:
    out = [12, 4, 5]  # ' "the old': 2 tokens, a name or a date as often as a copy
    assert lookup(SENTENCE).propose(5, pieces(out)) == []


def test_a_longer_match_proposes_a_longer_draft() -> None:
    out = [12, 11, 2, 3, 4, 5, 6]  # 6 tokens covered
    assert lookup(SENTENCE).propose(6, pieces(out)) == SENTENCE[6 : 6 + LONG]


def test_the_draft_stops_at_a_control_token_and_at_the_prompt_end() -> None:
    prompt = [1, 2, 3, 4, 5, 6, 0, 7, 8]
    out = [11, 2, 3, 4, 5]
    assert lookup(prompt).propose(5, pieces(out)) == [6]
    assert lookup(prompt[:5]).propose(5, pieces(out)) == []


def test_of_several_occurrences_the_longest_match_wins() -> None:
    # ' the old' occurs twice; only the first follows ' river flooded'.
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 4, 5, 13, 14, 15]
    out = [11, 2, 3, 4, 5]
    assert lookup(prompt).propose(5, pieces(out)) == [6, 7, 8]


def test_a_match_never_runs_across_a_control_token() -> None:
    # ' river flooded' <control> ' the old': the control token has no text, yet the output's
    # ' river flooded the old' must not match across it.
    prompt = [11, 2, 3, 0, 4, 5, 6, 7, 8]
    assert lookup(prompt).propose(5, pieces([11, 2, 3, 4, 5])) == []


def test_tokens_without_text_are_no_evidence() -> None:
    prompt = [1, 2, 3, 4, 5, 6, 7, 8]
    out = [0, 0, 0, 4, 5]  # only ' the old' has text: two tokens covered
    assert lookup(prompt).propose(5, pieces(out)) == []
    assert lookup(prompt).propose(5, pieces([1, 2, 0, 3, 4, 5])) == [6, 7, 8]


def test_a_token_that_never_occurs_in_the_prompt_proposes_nothing() -> None:
    assert lookup(SENTENCE).propose(15, pieces([11, 2, 3, 4, 15])) == []


def test_a_draft_is_cut_to_a_length_that_pays() -> None:
    assert (SHORT, LONG) == (3, 5)
    assert paying([1, 2]) == []
    assert paying([1, 2, 3, 4]) == [1, 2, 3]
    assert paying([1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5]


def test_a_lead_guess_is_tried_while_its_record_is_at_least_even() -> None:
    guesses = LeadGuesses()
    assert guesses.worth_trying(7)  # never tried: even
    guesses.record(7, right=False)
    assert not guesses.worth_trying(7)  # 0 of 1
    assert guesses.worth_trying(8)  # each token has its own record
    guesses.record(7, right=True)
    guesses.record(7, right=True)
    assert guesses.worth_trying(7)  # 2 of 3
    guesses.record(7, right=False)
    assert guesses.worth_trying(7)  # 2 of 4: even
    guesses.record(7, right=False)
    assert not guesses.worth_trying(7)  # 2 of 5
