"""Fast-forward of forced text: where the grammar admits one continuation, feed it in one batch.

Forced text (fixed keys, ``":"``, closing brackets, the rest of an enum value) is tokenized the
way the model's tokenizer would tokenize it, and its last token is held back wherever the next,
not yet chosen, character could merge with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qwenjson.grammar_probe import GrammarProbe
from qwenjson.stats import GenerationStats
from qwenjson.utf8 import REPRESENTATIVE, utf8_prefix

__all__ = ["ForcedText"]

Emit = Callable[[bytes], None]


class ForcedText:
    """Turns forced bytes into tokens at the tokenizer's boundaries, and feeds them."""

    def __init__(self, probe: GrammarProbe, stats: Callable[[], GenerationStats]) -> None:
        self._probe = probe
        self._vocab = probe.vocab
        self._stats = stats
        self._stable_cache: dict[tuple[tuple[int, ...], bytes], bool] = {}

    def _text(self, tokens: list[int]) -> bytes:
        return b"".join(self._vocab.piece(t) for t in tokens)

    def forced_start(self, grammar: Any, max_tokens: int) -> tuple[list[int], bool, int | None]:
        """The tokens of text the grammar forces before the first choice, accepted by it,
        whether that text is the whole output (the grammar admits only the end after it), and
        the token held back at its end (None if none was).

        Same boundary rules as ``fast_forward``: the last token is held back unless every
        admitted next character leaves it intact (the chat template ends the prompt with a
        newline, where the tokenizer splits anyway).
        """
        if max_tokens <= 0:
            return [], False, None
        forced, complete, after = self._probe.probe(grammar, True)
        text = utf8_prefix(forced)
        if not text:
            return [], False, None
        lead = self._vocab.tokenize(text)
        if self._text(lead) != text:
            return [], False, None
        whole = complete and text == forced and len(lead) <= max_tokens
        held = None
        if not whole and not (text == forced and self.stable_end(lead, after)):
            held = lead[-1] if text == forced else None
            lead = lead[:-1]
        if len(lead) >= max_tokens:
            lead, held = lead[:max_tokens], None
        self._probe.accept_bytes(grammar, self._text(lead))
        return lead, whole, held

    def respell(self, token: int, forced: bytes) -> list[int] | None:
        """The tokenizer's tokens for the chosen token's text plus the forced text after it.

        Forced text that ends inside a UTF-8 character is cut back to the character boundary.
        None when there is no clean spelling: the chosen token ends inside a character begun by
        an earlier token (already in the KV cache), or nothing is left after the cut.
        """
        head = self._vocab.piece(token)
        text = utf8_prefix(head + forced)
        if len(text) <= len(head):
            return None
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return None
        joint = self._vocab.tokenize(text)
        if self._text(joint) != text:
            return None
        return joint

    def replace_last(self, grammar: Any, token: int, tokens: list[int], emit: Emit) -> bool:
        """Put ``tokens`` (which spell the chosen token's text and more) in its place.

        The text beyond the chosen token is forced, so the grammar accepts it byte by byte.
        False, and nothing changed, if ``tokens`` don't start with that token's text.
        """
        stats = self._stats()
        head = self._vocab.piece(token)
        text = self._text(tokens)
        if len(text) < len(head) or not text.startswith(head):
            return False
        self._probe.accept_bytes(grammar, text[len(head) :])
        emit(text[len(head) :])
        stats.tokens.pop()
        stats.sampled_tokens -= 1
        # The first token is the model's choice if the tokenizer kept it, else a respelling.
        for i, t in enumerate(tokens):
            chosen = i == 0 and t == token
            stats.tokens.append((t, not chosen))
            if chosen:
                stats.sampled_tokens += 1
            else:
                stats.forced_tokens += 1
        return True

    def fast_forward(
        self,
        grammar: Any,
        token: int,
        forced: bytes,
        after: list[int],
        max_tokens: int,
        emit: Emit,
    ) -> list[int] | None:
        """The tokens to feed instead of ``token`` alone when forced text follows it, or None.

        Token boundaries, where the model's own spelling could differ from ours:

        * Start: the forced text is tokenized *together with the token just chosen* (which is
          not in the KV cache yet), so a merge across that boundary (``"`` + ``,"`` → ``",``)
          comes out as the tokenizer makes it.
        * End: what follows the forced text is not chosen yet, and the last forced token might
          merge with it (``[`` + ``"`` → ``["``). So the forced text is tokenized once more with
          each character the grammar admits next appended (``after``, one representative per
          UTF-8 lead byte); only if every one of those keeps all our tokens intact is the last
          token fed too. Otherwise it is held back and the model chooses it, under the grammar,
          at the next step (it may then pick the merged token).
        * Forced text that ends inside a UTF-8 character is cut back to the character boundary,
          and the rest is left to the model for the same reason.

        Documented difference from step-by-step greedy decoding: where the model would have
        spelled forced text with other tokens than its tokenizer does, the KV cache holds the
        tokenizer's spelling; the text is the same, later choices can differ.
        """
        joint = self.respell(token, forced)
        if joint is None:
            return None
        text = self._vocab.piece(token) + forced
        whole = sum(len(self._vocab.piece(t)) for t in joint) == len(text)
        if not (whole and self.stable_end(joint, after)):
            joint = joint[:-1]
        room = max_tokens - len(self._stats().tokens) + 1  # the chosen token counts once
        feed = joint[:room]
        if len(feed) < 2 or not self.replace_last(grammar, token, feed, emit):
            return None
        return feed

    def stable_end(self, joint: list[int], after: list[int]) -> bool:
        """Whether ``joint`` stays the tokenizer's spelling whatever admitted byte comes next."""
        if not after:
            return False
        key = (tuple(joint), bytes(after))
        known = self._stable_cache.get(key)
        if known is None:
            # Records of one run share keys and brackets: remember the verdicts (bounded).
            if len(self._stable_cache) > 4096:
                self._stable_cache.clear()
            known = self._stable_cache[key] = self._check_stable_end(joint, after)
        return known

    def _check_stable_end(self, joint: list[int], after: list[int]) -> bool:
        # The last two tokens decide a merge at the end; tokenizing just them is cheaper than
        # the whole forced text, and is used only when it reproduces them on its own.
        tail = joint[-2:]
        tail_text = self._text(tail)
        if self._vocab.tokenize(tail_text) != tail:
            tail = joint
            tail_text = self._text(tail)
        for byte in after:
            char = REPRESENTATIVE.get(byte)
            if char is None:
                return False  # mid-character: no boundary to judge
            if self._vocab.tokenize(tail_text + char)[: len(tail)] != tail:
                return False
        return True
