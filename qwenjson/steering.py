"""Budget steering: near the end of the token budget, head for the shortest completion.

Pure: ``Nesting`` follows the JSON written so far, ``closing_classes`` sorts a vocabulary's
pieces once, and ``choose_closing`` picks among them through ``sampling.Checks``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from qwenjson.sampling import Checks, FloatArray

__all__ = ["ClosingIds", "Nesting", "choose_closing", "closing_classes"]

IntArray = npt.NDArray[np.int32]

MARGIN = 8  # tokens the reserve keeps beyond the structure's own cost (``Nesting.reserve``)


class ClosingIds(NamedTuple):
    """Tokens that only close things, by where they may be written."""

    in_string: IntArray  # a quote, then only ``]``/``}``
    closing: IntArray  # only ``]``/``}``
    short: IntArray  # the shortest values: ``0``, ``""``, ``[]``, ``{}``, ``null`` and openers


def closing_classes(n_vocab: int, piece: Callable[[int], bytes]) -> ClosingIds:
    """Sort the vocabulary's pieces into ``ClosingIds`` (once per model)."""
    in_str: list[int] = []
    closing: list[int] = []
    short: list[int] = []
    values = {b"0", b'""', b"[]", b"{}", b"null", b'"', b"[", b"{"}
    values |= {b" " + v for v in values}  # after a spaced separator's held-back blank
    for t in range(n_vocab):
        text = piece(t)
        if not text:
            continue
        if text[0] == 0x22 and all(b in b"]}" for b in text[1:]):
            in_str.append(t)
        if all(b in b"]}" for b in text):
            closing.append(t)
        elif text in values:
            short.append(t)
    return ClosingIds(*(np.array(ids, dtype=np.int32) for ids in (in_str, closing, short)))


def choose_closing(
    logits: FloatArray,
    ids: ClosingIds,
    in_string: bool,
    checks: Checks,
    piece: Callable[[int], bytes],
) -> int | None:
    """Near the end of the token budget: the token that heads for the shortest completion.

    A document cut off by ``max_tokens`` is never printed, so when the budget runs low the
    loop steers to the end instead: among the tokens the grammar admits that only close
    things (inside a string: its quote, then any ``]``/``}``; outside: ``]``/``}``), the one
    closing most, ties by logit; failing that, outside a string, the shortest values
    (``0``, ``""``, ``[]``, ``{}``, ``null``). None when none is admitted (the model then
    chooses as usual). This changes output only in the last few tokens of a budget the
    document would otherwise overrun.
    """
    for group in (ids.in_string,) if in_string else (ids.closing, ids.short):
        allowed = [int(t) for t in group[checks.grammar_allows(group)]]
        allowed = [t for t in allowed if not checks.banned(t) and checks.passes(t)]
        if allowed:
            return max(allowed, key=lambda t: (len(piece(t)), logits[t]))
    return None


class Nesting:
    """How deep the JSON generated so far is nested, fed byte by byte (string-aware).

    Sets the token reserve for budget steering: closing takes about a token per level, and
    fast-forwarded keys of required properties a few more.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, data: bytes) -> None:
        """Follow ``data``, the next bytes of the output."""
        for byte in data:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif byte == 0x5C:  # backslash
                    self.escaped = True
                elif byte == 0x22:  # quote
                    self.in_string = False
            elif byte == 0x22:
                self.in_string = True
            elif byte in b"[{":
                self.depth += 1
            elif byte in b"]}":
                self.depth -= 1

    def copy(self) -> Nesting:
        """An independent copy (to look one token ahead)."""
        twin = Nesting()
        twin.depth, twin.in_string, twin.escaped = self.depth, self.in_string, self.escaped
        return twin

    def reserve(self) -> int:
        """Tokens to keep for closing what is open."""
        return MARGIN + 3 * self.depth + (1 if self.in_string else 0)
