"""llama.cpp's grammar asked about tokens: which are admitted, and which bytes are forced."""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import llama_cpp.llama_cpp as ll
import numpy as np
import numpy.typing as npt

from qwenjson import sampling
from qwenjson.errors import SchemaError
from qwenjson.generation import Constraint
from qwenjson.stats import GenerationStats
from qwenjson.vocab import Vocabulary

__all__ = ["GrammarProbe", "StepChecks", "parse_grammar"]

# Longest forced text looked ahead in one go (bytes); longer runs are fed in several batches.
_MAX_FORCED_BYTES = 256

# Candidates per llama.cpp grammar call. The mask over the whole vocabulary inside a JSON
# string, in one call, raised peak RSS by 85 MiB with Qwen2.5's 151,936 tokens (35 MiB with
# SmolLM2's 49,152), which malloc then kept; in slices of 8,192: +5.6 MiB, and 102 -> 74 ms a
# mask (4,096: +2.7 MiB, 78 ms): scripts/bench_mask.py, load average 3.6. It was the step up
# in scripts/bench_long_memory.py's long run (+30 MiB at its third piece, SmolLM2).
_MASK_SLICE = 8192
_CAND_SIZE = ctypes.sizeof(ll.llama_token_data)

# The grammar parser prints its complaint with fprintf(stderr): while it runs, fd 2 is swapped
# for a file so the complaint ends up in the SchemaError and not on the user's terminal. Only
# the first time a grammar is parsed: the swap is the whole process's, and a library caller's
# other threads lost what they wrote to stderr meanwhile (every generation swapped it).
_stderr_lock = threading.Lock()
_PARSED_MAX = 256  # the digests of grammars that parsed, kept (the last used)
_parsed: OrderedDict[bytes, None] = OrderedDict()


def parse_grammar(vocab: Vocabulary, grammar: str) -> Any:
    """A llama.cpp grammar sampler for the GBNF text ``grammar`` (free it with
    ``llama_sampler_free``); SchemaError with llama.cpp's reason when it doesn't parse."""
    if not grammar.strip():
        raise SchemaError("empty grammar")
    if "\x00" in grammar:
        raise SchemaError("grammar contains a NUL character")
    key = hashlib.sha256(grammar.encode()).digest()
    with _stderr_lock:
        known = key in _parsed
        if known:
            _parsed.move_to_end(key)
    if known:
        smpl = ll.llama_sampler_init_grammar(vocab.handle, grammar.encode(), b"root")
        if smpl:
            return smpl
    with _stderr_lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            smpl = ll.llama_sampler_init_grammar(vocab.handle, grammar.encode(), b"root")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if smpl:
            _parsed[key] = None
            while len(_parsed) > _PARSED_MAX:
                _parsed.popitem(last=False)
            return smpl
        sink.seek(0)
        said = sink.read().decode("utf-8", "replace")
    why = said.strip()[:300]
    for line in said.splitlines():
        if "error parsing grammar" in line:
            why = line.split("error parsing grammar:", 1)[-1].strip()
            break
    raise SchemaError(f"llama.cpp can't parse the grammar: {why or 'no reason given'}")


class GrammarProbe:
    """Questions to a grammar's current state, each one llama.cpp call over a candidate set."""

    def __init__(self, vocab: Vocabulary, stats: Callable[[], GenerationStats]) -> None:
        self.vocab = vocab
        self._stats = stats
        n_vocab = vocab.n_vocab
        # One candidate buffer for the whole vocabulary, reused for every grammar check; the
        # numpy view writes ids and logits into it without a Python loop.
        self._cand = (ll.llama_token_data * n_vocab)()
        self._cand_view = np.frombuffer(
            memoryview(self._cand).cast("B"),
            dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]),
        )
        self._cand_array = ll.llama_token_data_array(
            data=ctypes.cast(self._cand, ll.llama_token_data_p),
            size=0,
            selected=-1,
            sorted=False,
        )
        self.all_ids = np.arange(n_vocab, dtype=np.int32)
        byte_tokens = vocab.byte_tokens
        # The byte probe (``probe``) sees every possible next byte only if each byte some token
        # starts with has a one-byte token; otherwise forced text can't be detected soundly.
        self.can_probe = byte_tokens is not None and vocab.eos >= 0
        if byte_tokens is not None:
            probe = sorted(byte_tokens.items())
            self._probe_bytes = [b for b, _ in probe]
            self._probe_ids = np.array([t for _, t in probe] + [vocab.eos], dtype=np.int32)
            likely = b'"ae01,}] tn-.' + bytes([0xE4, 0xE5, 0xE6])
            self._quick_ids = np.array(
                [byte_tokens[b] for b in likely if b in byte_tokens], dtype=np.int32
            )

    def grammar_allows(self, grammar: Any, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        """Which of ``ids`` the grammar admits next (nothing accepted): one llama.cpp call per
        ``_MASK_SLICE`` of them.

        The slices give exactly the verdicts of one call over all of ``ids``: llama.cpp judges
        each candidate on its own (``llama_grammar_reject_candidates`` walks the grammar's
        stacks with that candidate's bytes alone and sets its logit to -inf when no stack
        takes them; no candidate's verdict reads another's). What one call costs is memory:
        it decodes every candidate to code points at once and keeps, per stack, the
        candidates still alive at each character, freed only when the call returns.
        """
        n = len(ids)
        view = self._cand_view[:n]
        view["id"] = ids
        view["logit"] = 0.0
        array: Any = self._cand_array  # its ``data`` is moved along the buffer
        for start in range(0, n, _MASK_SLICE):
            size = min(_MASK_SLICE, n - start)
            array.data = ctypes.cast(
                ctypes.byref(self._cand, start * _CAND_SIZE), ll.llama_token_data_p
            )
            array.size = size
            array.selected = -1
            array.sorted = False
            ll.llama_sampler_apply(grammar, ctypes.byref(array))
        # The grammar sets the logit of every refused candidate to -inf and leaves the order.
        allowed: npt.NDArray[np.bool_] = np.isfinite(view["logit"])
        return allowed

    def allows(self, grammar: Any, token: int) -> bool:
        """Whether ``token`` may come next: not banned, and admitted by the grammar."""
        if self.vocab.is_banned(token):
            return False
        return bool(self.grammar_allows(grammar, np.array([token], dtype=np.int32))[0])

    def allowed_mask(self, grammar: Any) -> npt.NDArray[np.bool_]:
        """The full mask: every token the grammar admits next (the slow path)."""
        self._stats().full_masks += 1
        return self.grammar_allows(grammar, self.all_ids) & ~self.vocab.banned_mask()

    def probe(self, grammar: Any, fast_forward: bool) -> tuple[bytes, bool, list[int]]:
        """The bytes the grammar forces next, whether it admits only the end after them, and
        the bytes it admits after them (where the model has a choice again).

        Each step applies the grammar to one token per possible first byte plus the end token
        (~256 candidates instead of the vocabulary): exactly one byte admitted and no end means
        that byte is forced. llama.cpp's grammar admits a lone UTF-8 lead byte when some
        character starting with it may follow, so multi-byte characters are forced byte by byte.
        Without ``fast_forward`` only the first step is taken.
        """
        forced = bytearray()
        clone: Any = None
        state = grammar
        # Most steps are free choices (inside a string or a number): a dozen likely bytes show
        # that cheaply before the full probe of every byte.
        quick = self.grammar_allows(grammar, self._quick_ids)
        if int(quick.sum()) >= 2:
            return b"", False, []
        try:
            while True:
                ok = self.grammar_allows(state, self._probe_ids)
                end_ok = bool(ok[-1])
                admitted = [self._probe_bytes[int(i)] for i in np.flatnonzero(ok[:-1])]
                if not admitted:
                    return bytes(forced), end_ok, []
                if len(admitted) > 1 or end_ok or not fast_forward:
                    return bytes(forced), False, admitted
                if len(forced) >= _MAX_FORCED_BYTES:
                    return bytes(forced), False, []
                if clone is None:
                    clone = ll.llama_sampler_clone(grammar)
                    state = clone
                self.accept_bytes(clone, bytes(admitted[:1]))
                forced.append(admitted[0])
        finally:
            if clone is not None:
                ll.llama_sampler_free(clone)

    def accept_bytes(self, grammar: Any, data: bytes) -> None:
        """Advance ``grammar`` over ``data``, byte by byte."""
        # Only bytes the probe found forced come here, so the grammar admits each of them.
        byte_tokens = self.vocab.byte_tokens
        assert byte_tokens is not None
        for byte in data:
            ll.llama_sampler_accept(grammar, byte_tokens[byte])


class StepChecks:
    """``sampling.Checks`` on a grammar's current state, with ``constraint`` beside it."""

    def __init__(self, probe: GrammarProbe, grammar: Any, constraint: Constraint | None) -> None:
        self._probe = probe
        self.vocab = probe.vocab
        self._grammar = grammar
        self._constraint = constraint

    def allows(self, token: int) -> bool:
        return self._probe.allows(self._grammar, token)

    def grammar_allows(self, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        return self._probe.grammar_allows(self._grammar, ids)

    def banned(self, token: int) -> bool:
        return self.vocab.is_banned(token)

    def passes(self, token: int) -> bool:
        return self._constraint is None or self._constraint.allows(self.vocab.piece(token))

    def mask(self) -> npt.NDArray[np.bool_]:
        mask = self._probe.allowed_mask(self._grammar)
        vocab = self.vocab
        return sampling.narrowed(mask, self._constraint, vocab.piece, vocab.piece_index)
