"""Drafts from the prompt: extraction copies spans of its input (names, addresses, a summary's
sentences), so once the output's end matches the input, the input's next tokens are a good guess
at the output's next ones (prompt lookup decoding). The engine evaluates such a draft in the same
llama_decode call as the chosen token and keeps what the model then chooses itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# When to draft and how much. Measured on Qwen2 0.5B, 2 cores (AVX2), with
# ``scripts/bench_drafting.py``: llama_decode of k tokens with logits for all of them costs, in
# single-token decodes, about 1.9 (k=2), 2.9 (3), 2.8 (4), 3.7 (5), 3.6 (6), 4.4 (7), 4.5 (8),
# and more at long contexts (k=4: 2.9, k=8: 4.9 after 1,700 tokens). So a draft pays only when
# nearly all of it is right, and only in batches of 4 or 6 (3 or 5 drafted tokens). Drafts
# after shorter matches are right too seldom: a 3-4 token match is as often a name or a date
# that ends there, or a paraphrase that turns away (the script's ``--min-match 3``: 26 of 57
# drafted tokens kept on its long-input case and 49 of 70 on long-free-text, against 17 of 22
# and 42 of 50 with 5; decode 1.01x and 0.91x of no drafts, against 0.96x and 0.85x).
MIN_MATCH = 5
SHORT, LONG = 3, 5
_LONG_MATCH = 6
_CANDIDATES = 16  # occurrences of the last token looked at (the latest ones)
LOOKBACK = 16  # output tokens passed to ``propose``


def paying(draft: list[int]) -> list[int]:
    """The longest start of ``draft`` whose length pays (LONG or SHORT tokens), or []."""
    size = max((n for n in (LONG, SHORT) if n <= len(draft)), default=0)
    return draft[:size]


class PromptLookup:
    """Proposes the prompt tokens that followed the text the output ends with.

    Example::

        lookup = PromptLookup(tokens, pieces, usable=lambda t: not is_control(t))
        draft = lookup.propose(last_token, last_pieces)
    """

    def __init__(
        self, tokens: Sequence[int], pieces: Sequence[bytes], usable: Callable[[int], bool]
    ) -> None:
        self._tokens = list(tokens)
        # Control tokens (the end of the user's turn) end a draft: the output never has them.
        # Their pieces are empty, so a NUL stands in for them: a match can't run across one
        # (JSON text has no raw NUL).
        self._usable = [usable(t) for t in self._tokens]
        text = [p if ok else b"\x00" for p, ok in zip(pieces, self._usable, strict=True)]
        self._text = b"".join(text)
        self._ends: list[int] = []
        end = 0
        for piece in text:
            end += len(piece)
            self._ends.append(end)
        self._where: dict[int, list[int]] = {}
        for i, token in enumerate(self._tokens):
            self._where.setdefault(token, []).append(i)

    def propose(self, last: int, recent: Sequence[bytes]) -> list[int]:
        """The draft after the output's last token ``last``, or [] when the match is too short.

        ``recent`` are the byte pieces of the output's last tokens, ``last``'s piece at the end.
        The match is on bytes, not tokens, so a copy whose first token the output spells
        differently (``"The`` against the input's `` The``) still counts its later tokens.
        """
        best, covered = -1, 0
        for i in self._where.get(last, ())[-_CANDIDATES:]:
            n = self._covered(i, recent)
            if n > covered:
                best, covered = i, n
        if covered < MIN_MATCH:
            return []
        size = LONG if covered >= _LONG_MATCH else SHORT
        draft: list[int] = []
        for j in range(best + 1, min(best + 1 + size, len(self._tokens))):
            if not self._usable[j]:
                break
            draft.append(self._tokens[j])
        return draft

    def _covered(self, i: int, recent: Sequence[bytes]) -> int:
        """How many of ``recent``'s last tokens the prompt's text up to token ``i`` ends with."""
        end = self._ends[i]
        count = 0
        for piece in reversed(recent):
            if not piece:
                continue  # no text, no evidence
            start = end - len(piece)
            if start < 0 or self._text[start:end] != piece:
                break
            count += 1
            end = start
        return count


class LeadGuesses:
    """Whether to evaluate the forced start's held-back token with the prompt, guessing the
    model picks it, by the record of earlier guesses for that token.

    The forced start usually ends with a value's opening (`` "`` after ``{"name":``): held
    back because a few next characters would merge with it, though the model nearly always
    writes it on its own. Evaluated with the prompt, a right guess saves a whole decode
    call (22 ms on Qwen2 0.5B, 2 cores) for one more prompt token and one more row of
    logits (about 12 ms); a wrong one is dropped from the KV cache and costs those 12.
    Measured on seed-person, in one process: 1035 ms per extraction against 1057 without
    (medians of 6); on short records after a reused prefix, about even.
    The choice itself is made on the logits before the guess, so the output is the same
    either way. Guessed while the token's record of guesses is at least even (starting
    even), so a token the model keeps merging stops being tried.
    """

    def __init__(self) -> None:
        self._record: dict[int, list[int]] = {}  # per held-back token: [right, tried]

    def worth_trying(self, held: int) -> bool:
        """Whether to guess ``held`` this time."""
        right, tried = self._record.get(held, (0, 0))
        return 2 * (right + 1) >= tried + 2

    def record(self, guess: int, right: bool) -> None:
        """Count a guess of ``guess`` that was ``right`` or not."""
        record = self._record.setdefault(guess, [0, 0])
        record[0] += int(right)
        record[1] += 1
