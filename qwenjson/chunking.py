"""Splitting a text longer than the context into overlapping pieces, by tokens.

A piece is the longest stretch from its start that takes at most ``budget`` tokens, ended at
the last paragraph break in its second half, else the last sentence end (``. ! ?`` and
``。！？；``), else the last line break, else the last comma (``, ，、``), else the last blank,
else anywhere (Chinese needs no blank between words). The next piece starts about ``overlap``
tokens before the previous one ends, at the first of those in the same order, so a sentence
cut at a piece's end is whole in the next one::

    for piece in split(text, engine.count_tokens, budget=1500, overlap=150):
        text[piece.start:piece.end]

Only a window of ``budget × 16`` characters from a piece's start is ever tokenized (a 10 MB
text tokenized whole took 12 s and 580 MB), so memory stays flat however long the text is.
Offsets are code points, as ``SourceText`` and evidence use them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Piece", "next_start", "piece_end", "split"]

Counter = Callable[[str], int]

# A token is rarely longer than this many characters (as ``batch._CHARS_PER_TOKEN``): a window
# this many times the budget always holds at least the budget's worth of tokens.
CHARS_PER_TOKEN = 16

# Where a piece may end, best first: the position right after the match.
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE = re.compile(r"(?:[.!?…]+[\"'”’)\]]*\s+|[。！？；;]+[”’」』）)]*\s*)")
# A line break before a blank, a comma before a blank: a piece cut at a blank inside a CSV row,
# a log line or a list of names ("…, Pam Nash, Quin | Orr, …") gave the cut form ("Quin"),
# and the merge keeps the first of two mentions it takes for one (a review: /tmp/rev-long).
_LINE = re.compile(r"\n\s*")
_CLAUSE = re.compile(r"[,，、]\s*")  # (not inside 1,234,567: ``_inside_a_number``)
_BLANK = re.compile(r"\s+")
_BOUNDARIES = (_PARAGRAPH, _SENTENCE, _LINE, _CLAUSE, _BLANK)


@dataclass(frozen=True)
class Piece:
    """Code point offsets ``[start, end)`` of one piece of the text; ``index`` from 0."""

    index: int
    start: int
    end: int


def split(
    text: str, count: Counter, budget: int, overlap: int, start: int = 0, index: int = 0
) -> Iterator[Piece]:
    """The pieces of ``text`` from ``start`` on (``index`` numbers the first), lazily.

    ``count`` gives a string's tokens; every piece takes at most ``budget`` of them and the
    next starts at most ``overlap`` tokens before the previous one ends.
    """
    past = 0
    while start < len(text):
        end = piece_end(text, count, start, budget, past)
        piece = Piece(index, start, end)
        yield piece
        if end >= len(text):
            return
        start = next_start(text, count, piece, overlap)
        past = end
        index += 1


def piece_end(text: str, count: Counter, start: int, budget: int, past: int = 0) -> int:
    """Where the piece starting at ``start`` ends: at the best boundary in the second half of
    the longest stretch that takes at most ``budget`` tokens, and after ``past`` (the previous
    piece's end) where the stretch reaches beyond it."""
    reach = min(len(text), start + max(budget, 1) * CHARS_PER_TOKEN)
    limit = _longest_fit(text, count, start, reach, budget)
    if limit >= len(text):
        return len(text)
    # The half is of characters, not tokens: after an overlap of dense text (emoji, CJK) it
    # could end at or before the previous piece's end, and the same text was read again
    # (40 of 360 pieces inside the one before, 1.9 times the text read, in a review's test).
    half = max(start + (limit - start) // 2, min(past, limit))
    for boundary in _BOUNDARIES:
        end = _last_end(boundary, text, half, limit)
        if end is not None:
            return end
    return max(limit, start + 1)


def next_start(text: str, count: Counter, piece: Piece, overlap: int) -> int:
    """Where the piece after ``piece`` starts: the first sentence start (else word start) among
    the last ``overlap`` tokens of ``piece`` (at most half of it). When there is none: the
    piece's end if the piece ended at a blank (no word is cut), else the start of those last
    ``overlap`` tokens, so that a word the cut went through (Chinese, which has no blanks, or
    one giant word) is whole in the next piece."""
    # At most half of the piece (one shortened to fit --max-tokens can be short).
    overlap = min(overlap, count(text[piece.start : piece.end]) // 2)
    if overlap <= 0:
        return piece.end
    floor = max(piece.start + 1, piece.end - overlap * CHARS_PER_TOKEN)
    # The earliest place from which the rest of the piece takes at most ``overlap`` tokens.
    lo, hi = floor, piece.end
    while lo < hi:
        mid = (lo + hi) // 2
        if count(text[mid : piece.end]) <= overlap:
            hi = mid
        else:
            lo = mid + 1
    for boundary in _BOUNDARIES:
        found = _first_end(boundary, text, lo, piece.end)
        if found is not None:
            return found
    return piece.end if _after_boundary(text, piece.end) else lo


def _after_boundary(text: str, at: int) -> bool:
    """Whether ``at`` is right after a place a piece may end (``piece_end``'s boundaries)."""
    # A boundary match is short: a sentence end and its quotes, a run of blanks (of which a
    # piece may end inside, hence the match is only asked to end at ``at``).
    window = max(0, at - 64)
    return any(_last_end(b, text, window, at) == at for b in _BOUNDARIES)


def _longest_fit(text: str, count: Counter, start: int, reach: int, budget: int) -> int:
    """The largest ``n`` in ``(start, reach]`` with ``text[start:n]`` within ``budget``
    tokens (``start + 1`` when not even one character fits)."""
    if count(text[start:reach]) <= budget:
        return reach
    lo, hi = start + 1, reach  # the answer lies in [lo, hi)
    while lo < hi - 1:
        mid = (lo + hi) // 2
        if count(text[start:mid]) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def _last_end(boundary: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    """The last position in ``(lo, hi]`` right after a ``boundary`` match that ends by
    ``hi``."""
    last = None
    for m in boundary.finditer(text, lo, hi):
        if m.end() > lo and not _inside_a_number(text, m.start()):
            last = m.end()
    return last


def _first_end(boundary: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    """The first position in ``[lo, hi)`` right after a ``boundary`` match."""
    for m in boundary.finditer(text, lo, hi):
        if lo <= m.end() < hi and not _inside_a_number(text, m.start()):
            return m.end()
    return None


def _inside_a_number(text: str, at: int) -> bool:
    """Whether ``text[at]`` is a comma with a digit right after it (``1,234``, ``3,5``): not
    a clause's end. Asked of the whole text: a search that stops at ``at + 1`` can't see it."""
    return text[at] == "," and text[at + 1 : at + 2].isdigit()
