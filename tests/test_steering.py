"""Budget steering's choices and the nesting it goes by, with no model."""

from __future__ import annotations

import numpy as np
import pytest

from qwenjson.steering import Nesting, choose_closing, closing_classes
from tests.fakes import FakeChecks

PIECES = [b"a", b"]", b"]}", b'"]', b'"', b"}]]", b"0", b"null", b" []", b"x]"]


def test_closing_classes_sort_pieces_by_where_they_close() -> None:
    ids = closing_classes(len(PIECES), PIECES.__getitem__)
    assert ids.in_string.tolist() == [3, 4]
    assert ids.closing.tolist() == [1, 2, 5]
    assert ids.short.tolist() == [4, 6, 7, 8]


def steer(allowed: list[int], in_string: bool, banned: frozenset[int] = frozenset()) -> int | None:
    grammar = np.zeros(len(PIECES), dtype=np.bool_)
    grammar[allowed] = True
    logits = np.arange(len(PIECES), dtype=np.float32)[::-1].copy()  # earlier ids more likely
    ids = closing_classes(len(PIECES), PIECES.__getitem__)
    return choose_closing(logits, ids, in_string, FakeChecks(grammar, banned), PIECES.__getitem__)


def test_steering_picks_the_token_that_closes_most() -> None:
    assert steer([0, 1, 2, 5, 6], in_string=False) == 5  # "}]]" over "]}" and "]"
    assert steer([0, 1, 2, 6], in_string=False) == 2


def test_steering_breaks_a_tie_in_length_by_logit() -> None:
    assert steer([1, 6], in_string=False) == 1  # "]" and "0" are in different groups
    assert steer([6, 7, 8], in_string=False) == 7  # "null" is longest among short values


def test_inside_a_string_only_a_closing_quote_is_steered_to() -> None:
    assert steer([1, 3, 4], in_string=True) == 3
    assert steer([1, 2, 5], in_string=True) is None


def test_steering_leaves_banned_tokens_and_gives_up_when_nothing_closes() -> None:
    assert steer([5, 2], in_string=False, banned=frozenset({5})) == 2
    assert steer([0, 9], in_string=False) is None


@pytest.mark.parametrize(
    ("text", "depth", "in_string", "reserve"),
    [
        (b"", 0, False, 8),
        (b'{"a": [1, {"b": "', 3, True, 18),
        (b'{"a": "x]}\\"{"', 1, False, 11),
        (b'{"a": "\\\\"}', 0, False, 8),
    ],
)
def test_nesting_follows_brackets_outside_strings(
    text: bytes, depth: int, in_string: bool, reserve: int
) -> None:
    nesting = Nesting()
    for byte in text:  # fed in pieces, as tokens come
        nesting.feed(bytes([byte]))
    assert (nesting.depth, nesting.in_string, nesting.reserve()) == (depth, in_string, reserve)
