"""Choosing the next token under the grammar, and under a constraint beside it (grounding).

Pure: the grammar, the banned control tokens and the constraint reach these functions only
through ``Checks``, so the choice rules are tested with a fake (``tests/test_sampling.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from qwenjson.generation import Constraint
from qwenjson.stats import GenerationStats

__all__ = [
    "Checks",
    "PieceIndex",
    "choose",
    "choose_grounded",
    "draw",
    "index_pieces",
    "logprob",
    "narrowed",
]

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]

# After this many rejected draws, mask the whole vocabulary instead of drawing again.
_MAX_REJECTED_DRAWS = 8
# Below this much weight left (the best token's is 1), the draws stop too: the weights are
# shifted by the best token's logit, and an allowed one 745 T below it is exactly 0 (T = 0.01:
# a gap of 7.5), so with the tokens above refused, one token 7.44 below came out every time
# where 7.46 below should have had 12% (a review's script). Above it, a weight that underflowed
# (under 1e-308) is under 1e-58 of what is left, far below the 2**-53 a draw resolves.
_EXACT_MASS = 1e-250
# Greedy: after the argmax is rejected, check this many next-best candidates in one grammar call.
_GREEDY_CANDIDATES = 64
# Pieces are looked up by prefix up to this length; the few longer ones (SmolLM2 has runs of
# "#", "=" or blanks up to 81 bytes) are always checked, as ``sensitive`` ones are, so the full
# mask refuses none the span check allows.
_LONGEST_PIECE = 48


class Checks(Protocol):
    """What a choice asks of the allowed set at one step (``grammar.StepChecks`` on a model)."""

    def allows(self, token: int) -> bool:
        """Whether ``token`` is not banned and the grammar admits it (one token)."""
        ...

    def grammar_allows(self, ids: IntArray) -> BoolArray:
        """Which of ``ids`` the grammar alone admits (one call for all of them)."""
        ...

    def banned(self, token: int) -> bool:
        """Whether ``token`` is a control token that never belongs in an answer."""
        ...

    def passes(self, token: int) -> bool:
        """Whether the constraint beside the grammar admits ``token`` (True without one)."""
        ...

    def mask(self) -> BoolArray:
        """Every token allowed next by the grammar, the ban and the constraint (slow path)."""
        ...


# The least temperature at which logits / T stays finite for every float32 logit (float32's
# largest over float64's largest, about 1.9e-270): one comparison, not a scan per token.
_COLDEST = float(np.finfo(np.float32).max) / float(np.finfo(np.float64).max)


def choose(
    logits: FloatArray,
    checks: Checks,
    temperature: float,
    top_p: float,
    rng: np.random.Generator,
    stats: GenerationStats,
) -> int | None:
    """The next token from the grammar-masked distribution, or None if nothing is allowed.

    Greedy: the argmax of the masked logits is the first token, in order of falling logit
    (ties: lowest id, like ``np.argmax``), that the grammar admits. So the argmax is checked
    alone; when refused, the next best candidates are checked in one grammar call; only if
    none of those passes is the whole vocabulary masked. Same answer as full masking.

    Temperature, top_p = 1: the target is p(x) ∝ softmax(logits/T)(x) · [x allowed]. A draw
    from the unmasked softmax that lands on an allowed token has exactly that distribution
    (rejection sampling with the mask as acceptance test); a refused token is known to have
    zero target mass, so it is removed before drawing again, which keeps the ratios between
    allowed tokens. After a few refusals the masked distribution is built and drawn from
    directly; either way each allowed x comes out with probability p(x) / Σ p(allowed).

    top_p < 1: the nucleus is taken over the masked distribution (as in a chain that masks
    first), which depends on the mass of every allowed token, so that case masks fully.

    A constraint beside the grammar (grounding) is one more acceptance test: "allowed" above
    then means allowed by both, and the full mask is narrowed by it (``narrowed``), so the same
    argument holds for the intersection.
    """
    n_vocab = len(logits)
    # A temperature so small that logits / T may overflow (1e-320), or NaN, is greedy: the
    # softmax's limit is the argmax. (NaN weights would draw a token the grammar forbids, and
    # llama.cpp aborts.)
    if not temperature >= _COLDEST:
        best = int(np.argmax(logits))
        if checks.allows(best) and checks.passes(best):
            return best
        stats.rejections += 1
        k = min(_GREEDY_CANDIDATES, n_vocab)
        top = np.argpartition(-logits, k - 1)[:k]
        order = top[np.lexsort((top, -logits[top]))].astype(np.int32)
        ok = checks.grammar_allows(order)
        for rank in np.flatnonzero(ok):
            token = int(order[rank])
            if checks.banned(token) or not checks.passes(token):
                continue
            # A tie with the k-th logit might hide a lower id outside the candidates.
            if k < n_vocab and logits[token] == logits[order[-1]]:
                break
            return token
        mask = checks.mask()
        if not mask.any():
            return None
        best = int(np.argmax(np.where(mask, logits, -np.inf)))
        # Every allowed logit -inf (a broken model file): argmax said 0, which may be refused.
        return best if mask[best] else int(np.flatnonzero(mask)[0])

    z = logits.astype(np.float64) / temperature
    # A NaN or +inf logit (a broken model file) leaves only the masked path below (-inf is a
    # weight of 0, as it should be).
    if top_p >= 1.0 and not (np.isnan(z).any() or np.isposinf(z).any()):
        p = np.exp(z - z.max())
        for _ in range(_MAX_REJECTED_DRAWS):
            token = draw(p, rng)
            if checks.allows(token) and checks.passes(token):
                return token
            stats.rejections += 1
            p[token] = 0.0
            if p.sum() < _EXACT_MASS:
                break
    mask = checks.mask()
    if not mask.any():
        return None
    # Shifted by the best *allowed* logit: by the best of all, every allowed weight underflowed
    # to 0 when they all sat ~745 T below it (T = 0.01, a gap of 7.5), and the document ended
    # cut off as if nothing were allowed. (The same distribution: a softmax is shift-free.)
    allowed = np.where(mask & ~np.isnan(z), z, -np.inf)
    best = allowed.max()
    if not np.isfinite(best):  # an allowed token certain, or every one impossible or NaN
        top = np.flatnonzero(mask & (allowed == np.inf))
        return int(top[0] if top.size else np.flatnonzero(mask)[0])
    p = np.exp(allowed - best)
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable").astype(np.int32)
        cum = np.cumsum(p[order])
        keep = int(np.searchsorted(cum, top_p * cum[-1])) + 1
        nucleus = np.zeros_like(p)
        nucleus[order[:keep]] = p[order[:keep]]
        p = nucleus
    return draw(p, rng)


@dataclass(frozen=True)
class PieceIndex:
    """Tokens by their text, and the ones every mask checks (``sensitive``): those holding a
    quote or a comma (the only ones a span constraint can refuse outside a value) and those
    longer than ``prefix_ids`` looks. Banned and empty pieces are left out."""

    by_piece: dict[bytes, list[int]]
    sensitive: IntArray

    def prefix_ids(self, data: bytes) -> list[int]:
        """The tokens whose text is a prefix of ``data``."""
        found: list[int] = []
        for n in range(1, min(len(data), _LONGEST_PIECE) + 1):
            found += self.by_piece.get(data[:n], ())
        return found


def index_pieces(
    n_vocab: int, piece: Callable[[int], bytes], banned: Callable[[int], bool]
) -> PieceIndex:
    """The ``PieceIndex`` of a vocabulary."""
    by_piece: dict[bytes, list[int]] = {}
    sensitive: list[int] = []
    for t in range(n_vocab):
        text = piece(t)
        if not text or banned(t):
            continue
        by_piece.setdefault(text, []).append(t)
        if b'"' in text or b"," in text or len(text) > _LONGEST_PIECE:
            sensitive.append(t)
    return PieceIndex(by_piece, np.array(sensitive, dtype=np.int32))


def narrowed(
    mask: BoolArray,
    constraint: Constraint | None,
    piece: Callable[[int], bytes],
    index: Callable[[], PieceIndex],
) -> BoolArray:
    """The grammar's full ``mask`` narrowed by ``constraint`` (if any)."""
    if constraint is None:
        return mask
    pieces = index()
    refined: BoolArray = constraint.refine(mask, piece, pieces.prefix_ids, pieces.sensitive)
    return refined


def choose_grounded(
    logits: FloatArray,
    token: int,
    constraint: Constraint,
    checks: Checks,
    pieces: PieceIndex,
    piece: Callable[[int], bytes],
    again: Callable[[], int | None],
) -> tuple[int, int]:
    """The token to write when ``constraint`` refused the model's choice ``token``, and the
    token whose probability it is credited with.

    A choice refused only for the case of its letters is written in the text's case (the
    longest token spelling the start of ``Grounding.respelled`` that the grammar admits) and
    credited with the model's own choice: the model chose those letters (the value then keeps
    a source only while the model stays with the text: ``case_changed``). A refused first
    choice for a value that may be left out closes it empty (the best such token by logit);
    a refused blank where the text breaks the line is written as the text's line break
    (``Grounding.blank_continuations``); otherwise the choice is made again under both
    constraints (``again``: a draw from the grammar's distribution followed
    by a draw from the narrower one, when the first is refused, is a draw from the narrower
    one; at ``top_p`` below 1 it is not, and the decode loop draws under both whatever the
    first draw was). If nothing satisfies both, the grammar alone decides: the constraint never
    makes a document impossible.
    """
    text = piece(token)

    def best(ids: IntArray, keep: Callable[[bytes], bool], longest: bool = False) -> int | None:
        """The highest-logit token of ``ids`` (the longest first, if ``longest``) the grammar
        admits and ``keep`` accepts. ``ids`` come from ``pieces``: no banned token."""
        admitted = [int(t) for t in ids[checks.grammar_allows(ids)]] if len(ids) else []
        kept = [t for t in admitted if keep(piece(t))]
        rank = [((len(piece(t)) if longest else 0), logits[t], -t, t) for t in kept]
        return max(rank)[-1] if rank else None

    # The text's own line break, where it has one, before another occurrence in another case.
    blanks = constraint.blank_continuations(text)
    respelled = None if blanks else constraint.respelled(text)
    if respelled is not None:
        ids = np.array(pieces.prefix_ids(respelled), dtype=np.int32)
        spelling = best(ids, constraint.allows, longest=True)
        if spelling is not None:
            constraint.case_changed()
            return spelling, token
    constraint.refused(text)

    if constraint.would_abstain(text):
        closer = best(pieces.sensitive, constraint.closes_empty)
        if closer is not None:
            return closer, closer
    if blanks:
        # The line break's escape is two bytes: only pieces that spell all of it.
        spelled = {t for ahead in blanks for t in pieces.prefix_ids(ahead) if len(piece(t)) >= 2}
        line_break = best(np.array(sorted(spelled), dtype=np.int32), constraint.allows)
        if line_break is not None:
            return line_break, line_break
    chosen = again()
    return (token, token) if chosen is None else (chosen, chosen)


def logprob(logits: FloatArray, token: int) -> float:
    """log p(token) under the model's unconstrained softmax over ``logits``."""
    top = float(logits.max())
    return float(logits[token]) - top - float(np.log(np.exp(logits - top).sum()))


def draw(p: npt.NDArray[np.float64], rng: np.random.Generator) -> int:
    """One index drawn with probability proportional to ``p`` (non-negative, not all zero)."""
    cum = np.cumsum(p)
    u = rng.random() * cum[-1]
    at = int(np.searchsorted(cum, u, side="right"))
    # u rounded up to the total: the last index with a weight, not the vocabulary's last id.
    return at if at < len(p) else int(np.flatnonzero(p)[-1])
