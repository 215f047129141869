"""One generation after the prompt: choose a token, check it, emit it, feed what follows.

``Engine.generate`` prepares the prompt and the forced start, then hands the rest to a
``DecodeLoop``: each step chooses on one row of logits (``sampling``; ``steering`` near the end
of the budget; the constraint beside the grammar), then fast-forwards the text the grammar
forces after it (``forced``) or evaluates a draft from the prompt with it (``drafting``).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import llama_cpp.llama_cpp as ll
import numpy as np

from qwenjson import drafting, sampling, steering
from qwenjson.drafting import LeadGuesses, PromptLookup
from qwenjson.forced import ForcedText
from qwenjson.generation import Constraint, TokenTrace
from qwenjson.grammar_probe import GrammarProbe, StepChecks
from qwenjson.kvstate import KVState
from qwenjson.sampling import FloatArray
from qwenjson.stats import GenerationStats
from qwenjson.steering import Nesting
from qwenjson.vocab import Vocabulary

__all__ = ["DecodeLoop", "Parts", "Settings"]

Finish = Literal["stop", "length"]


@dataclass(frozen=True)
class Parts:
    """The engine's parts a generation works with."""

    vocab: Vocabulary
    probe: GrammarProbe
    kv: KVState
    forced: ForcedText
    guesses: LeadGuesses


@dataclass(frozen=True)
class Settings:
    """How one generation chooses: its budget, its sampling, and whether forced text is fed."""

    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    fast_forward: bool


class DecodeLoop:
    """The decode steps of one generation, on a grammar whose forced start is accepted."""

    def __init__(
        self,
        parts: Parts,
        grammar: Any,
        settings: Settings,
        stats: GenerationStats,
        *,
        constraint: Constraint | None,
        trace: list[TokenTrace] | None,
        on_text: Callable[[str], None] | None,
        lookup: PromptLookup | None,
    ) -> None:
        self._parts = parts
        self._grammar = grammar
        self._settings = settings
        self._stats = stats
        self._constraint = constraint
        self._trace = trace
        self._on_text = on_text
        self._lookup = lookup

    def run(self, lead: list[int], whole: bool, guess: int | None) -> tuple[str, Finish]:
        """The output text and why it ended, from the forced start ``lead`` (all of the output
        when ``whole``) and the held-back token evaluated on a ``guess`` (None: no guess)."""
        settings, grammar = self._settings, self._grammar
        max_tokens = settings.max_tokens
        stats, vocab, probe = self._stats, self._parts.vocab, self._parts.probe
        kv, ff = self._parts.kv, self._parts.forced
        on_text = self._on_text
        piece = vocab.piece
        rng = np.random.default_rng(settings.seed)
        out = bytearray()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        constraint, trace = self._constraint, self._trace

        depth = Nesting()

        def emit(data: bytes, logprob: float | None = None) -> None:
            if trace is not None:
                trace.append(TokenTrace(len(out), len(out) + len(data), logprob))
            out.extend(data)
            depth.feed(data)
            if constraint is not None:
                constraint.accept(data)
            if on_text is not None:
                chunk = decoder.decode(data)
                if chunk:
                    on_text(chunk)

        def finish(reason: Finish) -> tuple[str, Finish]:
            if on_text is not None:
                tail = decoder.decode(b"", final=True)
                if tail:
                    on_text(tail)
            return out.decode("utf-8", "replace"), reason

        if lead:
            stats.tokens.extend((t, True) for t in lead)
            stats.forced_tokens += len(lead)
            emit(b"".join(piece(t) for t in lead))
        if whole:
            return finish("stop")
        # Tokens evaluated past the last choice on a guess (the lead guess, a draft from the
        # prompt), each with its row of logits: one stays in the KV cache only if the model
        # chooses it at its place, on the row before it.
        ahead: list[int] = [guess] if guess is not None else []
        while len(stats.tokens) < max_tokens:
            logits = kv.logits(-1 - len(ahead))
            token = credited = None
            reserve = depth.reserve()
            if constraint is not None:
                reserve += constraint.closing_reserve()
            if max_tokens - len(stats.tokens) <= reserve:
                token = credited = self._choose_closing(logits, depth.in_string)
            if token is None:
                token = credited = self._choose(logits, rng, None)
                if constraint is not None and token is not None and not vocab.is_eog(token):
                    if not constraint.allows(piece(token)):
                        token, credited = self._choose_grounded(logits, token, constraint, rng)
                    elif self._settings.top_p < 1.0 and self._settings.temperature > 0.0:
                        # A nucleus is no longer one after rejection: drawing from the
                        # grammar's nucleus, then (if refused) from the narrower one, is not a
                        # draw from the narrower nucleus. The first draw only tells whether
                        # the model wanted something the text lacks; the choice is made
                        # under both constraints.
                        token = credited = self._choose(logits, rng, constraint)
                left = max_tokens - len(stats.tokens) - 1
                if token is not None and _opens_too_late(piece(token), depth, constraint, left):
                    closing = self._choose_closing(logits, depth.in_string)
                    if closing is not None:
                        token = credited = closing
            logprob = None
            if trace is not None and token is not None:
                logprob = sampling.logprob(logits, token if credited is None else credited)
            # The chosen token is in the KV cache already, with its logits: a guess was right.
            evaluated = bool(ahead) and token == ahead[0]
            drafted = evaluated and guess is None  # ... drafted from the prompt
            if guess is not None:
                self._record_guess(guess, evaluated)
                guess = None
            elif ahead:
                stats.draft_hits += int(evaluated)
                stats.draft_misses += int(not evaluated)
            if evaluated:
                ahead.pop(0)
            elif ahead:
                kv.take_back(len(ahead))
                ahead = []
            if token is None or vocab.is_eog(token):
                return finish("stop")
            ll.llama_sampler_accept(grammar, token)
            stats.sampled_tokens += 1
            stats.tokens.append((token, False))
            emit(piece(token), logprob)
            if not probe.can_probe:
                if len(stats.tokens) >= max_tokens:
                    break
                stats.decode_calls += 1
                kv.decode([token])
                continue
            forced, complete, after = probe.probe(grammar, settings.fast_forward)
            if complete:
                # Nothing but the end can follow: no decode, not even for the end token. The
                # forced tail is emitted as text, counted as the tokens the tokenizer makes of it.
                room = max_tokens - len(stats.tokens) + 1  # the chosen token counts once
                joint = ff.respell(token, forced) if forced else None
                if not forced:
                    return finish("stop")
                if joint is not None and ff.replace_last(grammar, token, joint[:room], emit):
                    return finish("length" if len(joint) > room else "stop")
                # No clean spelling (the token ends inside a character whose start was decoded
                # earlier): let the model spell the rest, one checked token at a time.
            if len(stats.tokens) >= max_tokens:
                break
            if evaluated:
                if not forced:
                    continue  # the next logits are there already: no decode at all
                # Forced text follows: respell it together with the token, as always.
                stats.draft_respelled += int(drafted)
                kv.take_back(1 + len(ahead))
                ahead = []
            stats.decode_calls += 1
            if forced:
                fed = ff.fast_forward(grammar, token, forced, after, max_tokens, emit)
                kv.decode(fed or [token])
                continue
            ahead = self._draft(token, max_tokens - len(stats.tokens) - reserve)
            kv.decode([token, *ahead], outputs=1 + len(ahead))
        return finish("length")

    def _choose(
        self, logits: FloatArray, rng: np.random.Generator, constraint: Constraint | None
    ) -> int | None:
        checks = StepChecks(self._parts.probe, self._grammar, constraint)
        settings = self._settings
        return sampling.choose(
            logits, checks, settings.temperature, settings.top_p, rng, self._stats
        )

    def _choose_grounded(
        self, logits: FloatArray, token: int, constraint: Constraint, rng: np.random.Generator
    ) -> tuple[int, int]:
        return sampling.choose_grounded(
            logits,
            token,
            constraint,
            StepChecks(self._parts.probe, self._grammar, constraint),
            self._parts.vocab.piece_index(),
            self._parts.vocab.piece,
            lambda: self._choose(logits, rng, constraint),
        )

    def _choose_closing(self, logits: FloatArray, in_string: bool) -> int | None:
        vocab = self._parts.vocab
        checks = StepChecks(self._parts.probe, self._grammar, self._constraint)
        token = steering.choose_closing(logits, vocab.closing_ids(), in_string, checks, vocab.piece)
        if token is not None:
            stats = self._stats
            if stats.steered_from is None:
                stats.steered_from = len(stats.tokens)
            stats.steered += 1
        return token

    def _record_guess(self, guess: int, right: bool) -> None:
        self._parts.guesses.record(guess, right)
        self._stats.lead_guess = right

    def _draft(self, token: int, room: int) -> list[int]:
        """Tokens to evaluate after the chosen ``token`` on the guess that the model copies
        on from the prompt (``qwenjson.drafting``), cut where the grammar refuses one.

        Only draft lengths that pay are used (see the measurements in ``qwenjson.drafting``);
        none near the end of the token budget, where budget steering may choose otherwise.

        Each choice is still made on its own row of logits, so a draft never decides a token.
        Documented difference from one-token-at-a-time decoding: a batch's logits and KV state
        differ in their last bits (llama.cpp sums in another order), so a near-tie can go the
        other way, as with a prompt prefix reused from the cache. ``scripts/bench_drafting.py``
        shows it once in bench.py's five cases ("Ceramic coffee mug" for "Ceramic Coffee Mug").
        """
        if self._lookup is None or room <= drafting.LONG:
            return []
        stats, piece = self._stats, self._parts.vocab.piece
        recent = [piece(t) for t, _ in stats.tokens[-drafting.LOOKBACK :]]
        proposed = self._lookup.propose(token, recent)
        if not proposed:
            return []
        clone = ll.llama_sampler_clone(self._grammar)
        # The constraint has seen ``token`` already (it was emitted): fork it as it stands.
        fork = self._constraint.fork() if self._constraint is not None else None
        kept: list[int] = []
        try:
            for t in proposed:
                if not self._parts.probe.allows(clone, t):
                    break
                if fork is not None:
                    if not fork.allows(piece(t)):
                        break
                    fork.accept(piece(t))
                ll.llama_sampler_accept(clone, t)
                kept.append(t)
        finally:
            ll.llama_sampler_free(clone)
        kept = drafting.paying(kept)
        stats.drafted += len(kept)
        return kept


def _opens_too_late(data: bytes, depth: Nesting, constraint: Constraint | None, left: int) -> bool:
    """Whether writing ``data`` (a ``{``, ``[`` or ``,``: an object, a list, an item) would
    leave ``left`` tokens or fewer for what closing then costs: steering, which looks at the
    reserve before each choice, would start too late. A budget 3 tokens larger failed where
    the smaller one passed: with 25 tokens left against a reserve of 21, the model wrote
    ``}, {"`` and the new item's three required members raised the reserve to 39 (a review's
    scan, SmolLM2 and the bench model). Only such tokens are checked; others can't raise it
    by more than the token they are."""
    if not any(byte in b"{[," for byte in data):
        return False
    after = depth.copy()
    after.feed(data)
    reserve = after.reserve()
    if constraint is not None:
        twin = constraint.fork()
        twin.accept(data)
        reserve += twin.closing_reserve()
    # Less steering's fixed margin: the reserve is an upper bound, and as a gate on one more
    # item it refused items that fitted (a review: 9 of 11 budgets of the bench model's scan
    # below gave one person fewer than before the gate). Measured on that scan (SmolLM2,
    # budgets 10-199, and the bench model, 20-130): no budget failed with the margin taken off
    # up to 16 tokens, and from 20 they failed again; 8 keeps half of that headroom, and gave
    # fewer items than before the gate at 5 of 11 and 15 of 34 budgets.
    return left <= reserve - steering.MARGIN
