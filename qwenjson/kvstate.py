"""The KV side of a llama.cpp context: evaluate tokens, take them back, prefill with reuse.

The KV cache of the previous call is kept and only the part of the new prompt after the longest
common token prefix is evaluated; with a ``PrefixCache`` the prefix shared by every record
(system message + schema) is persisted to disk (``qwenjson.kvcache``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import llama_cpp.llama_cpp as ll
import numpy as np
import numpy.typing as npt

from qwenjson.errors import ModelError
from qwenjson.kvcache import PrefixCache
from qwenjson.stats import GenerationStats

__all__ = ["KVState"]

# A prefix shorter than this is not worth a disk round trip.
_MIN_CACHED_PREFIX = 32

FloatArray = npt.NDArray[np.float32]


class KVState:
    """A context (``llama_context``, owned: ``close`` frees it) and the tokens in its cache."""

    def __init__(
        self,
        ctx: Any,
        n_batch: int,
        n_vocab: int,
        prefix_cache: PrefixCache | None,
        model_key: Callable[[], str],
        stats: Callable[[], GenerationStats],
    ) -> None:
        self.ctx: Any = ctx
        self._mem = ll.llama_get_memory(ctx)
        self._n_batch = n_batch
        self._n_vocab = n_vocab
        self._batch: Any = ll.llama_batch_init(n_batch, 0, 1)
        self._prefix_cache = prefix_cache
        self._model_key = model_key
        self._stats = stats
        self.tokens: list[int] = []  # the tokens whose state sits in the KV cache (sequence 0)
        # Where the parts ``prefill`` built the KV state from end (and 0): only the state up to
        # one of these is what a fresh evaluation of the same parts would give.
        self._built: set[int] = {0}

    def close(self) -> None:
        """Free the batch and the context (idempotent)."""
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx is not None:
            ll.llama_free(self.ctx)
            self.ctx = None

    def live_ctx(self) -> Any:
        """The context; ModelError once closed."""
        if self.ctx is None:
            raise ModelError("the model has been closed")
        return self.ctx

    def forget_from(self, n: int) -> None:
        """Drop the KV state of every token from position ``n`` on."""
        if n >= len(self.tokens):
            return
        if not ll.llama_memory_seq_rm(self._mem, 0, n, -1):
            # Some memory types can't drop a partial sequence; start over.
            ll.llama_memory_clear(self._mem, True)
            self.tokens = []
            self._built = {0}
            return
        del self.tokens[n:]
        self._built = {b for b in self._built if b <= n}

    def take_back(self, n: int) -> None:
        """Drop the KV state of the last ``n`` tokens, mid-generation (a guess that was wrong)."""
        keep = len(self.tokens) - n
        self.forget_from(keep)
        if len(self.tokens) != keep:  # the whole cache went: nothing to go on from
            raise ModelError("llama.cpp could not take guessed tokens back from the KV cache")

    def decode(
        self,
        tokens: Sequence[int],
        *,
        logits: bool = True,
        outputs: int = 1,
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Evaluate ``tokens`` after the KV cache, in batches; logits for the last one (for the
        last ``outputs`` ones: ``logits(-outputs)`` is then the first of them). ``tick`` is
        called before each batch: a time limit raises there, with ``tokens`` in step with the
        cache (a long prompt is many batches, seconds on a small CPU)."""
        ctx = self.live_ctx()
        batch = self._batch
        starts = list(range(0, len(tokens), self._n_batch))
        if logits and len(starts) > 1 and len(tokens) - starts[-1] < outputs:
            starts[-1] = len(tokens) - outputs  # the rows with logits go in one batch
        for n, start in enumerate(starts):
            if tick is not None:
                tick()
            end = starts[n + 1] if n + 1 < len(starts) else len(tokens)
            chunk = tokens[start:end]
            last_chunk = end == len(tokens)
            pos = len(self.tokens)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 0
            if logits and last_chunk:
                for i in range(max(0, len(chunk) - outputs), len(chunk)):
                    batch.logits[i] = 1
            batch.n_tokens = len(chunk)
            t0 = time.perf_counter()
            rc = ll.llama_decode(ctx, batch)
            self._stats().model_ms += (time.perf_counter() - t0) * 1000.0
            if rc != 0:
                # The cache may hold part of the batch: nothing in it can be trusted now.
                ll.llama_memory_clear(self._mem, True)
                self.tokens = []
                self._built = {0}
                raise ModelError(f"llama_decode failed (code {rc})")
            self.tokens.extend(chunk)

    def logits(self, row: int = -1) -> FloatArray:
        """The logits of the last evaluation's output ``row`` (-1: the last token's)."""
        ptr = ll.llama_get_logits_ith(self.live_ctx(), row)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def prefill(
        self,
        tokens: list[int],
        shared: int,
        outputs: int = 1,
        *,
        cuts: Sequence[int] = (),
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Bring the KV cache to ``tokens`` with logits for the last ``outputs`` of them.

        The tokens are evaluated in parts, each from its own first token: the prefix every
        text shares (``shared``), then one part per ``cuts`` position (the prompt's end, say).
        Only whole parts that were built the same way are kept from an earlier evaluation, or
        the prefix from the disk cache. So a text's KV state never depends on what the process
        evaluated before: llama.cpp's arithmetic depends on which rows share a batch, and a
        record that reused a longer common prefix with the record before gave another
        document than the same record run alone (or resumed from a checkpoint)."""
        stats = self._stats()
        limit = len(tokens) - outputs  # tokens with logits are always evaluated
        ends = sorted({b for b in (shared, *cuts) if 0 < b <= limit} | {len(tokens)})
        common = 0
        for a, b in zip(self.tokens, tokens, strict=False):
            if a != b:
                break
            common += 1
        keep = 0
        for end in ends:
            if end > min(common, limit) or end not in self._built:
                break
            keep = end
        self.forget_from(keep)
        keep = len(self.tokens)
        cache = self._prefix_cache
        if cache is not None and shared >= _MIN_CACHED_PREFIX and keep < shared <= limit:
            prefix = tokens[:shared]
            key = cache.key(self._model_key(), prefix)
            self.forget_from(0)
            if cache.load(self.live_ctx(), key, prefix):
                stats.disk_prefix = "hit"
                self.tokens = list(prefix)
            else:
                stats.disk_prefix = "miss"
                self.decode(prefix, logits=False, tick=tick)
                cache.save(self.live_ctx(), key, prefix)
            keep = shared
        stats.reused_tokens = keep
        start = keep
        for end in ends:
            if end <= keep:
                continue
            last = end == len(tokens)
            self.decode(tokens[start:end], logits=last, outputs=outputs if last else 1, tick=tick)
            start = end
        self._built = {0, *ends}
