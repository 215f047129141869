"""The generation loop: constrained decoding on llama.cpp's low-level API.

Why not ``Llama.create_completion(grammar=…)``: its sampler chain runs the grammar over all
candidates (151,936 for Qwen2) at every step, which costs ~1.7× the decode itself. This loop:

* **samples first, checks one token**: the token is chosen from the raw logits (greedy, or drawn
  with temperature) and only that token is checked against the grammar; the whole vocabulary is
  masked only when it is rejected (see ``sampling.choose`` for why the result equals full
  masking);
* **fast-forwards forced text**: where the grammar admits exactly one continuation (fixed keys,
  ``":"``, closing brackets, the rest of an enum value) the text is fed in one batch, tokenized
  the way the model's tokenizer would tokenize it (see ``forced.ForcedText.fast_forward``), and
  a grammar that admits nothing but the end stops generation without asking the model for the
  end token;
* **drafts from the prompt**: where the output has been copying the input for a few tokens (a
  summary's sentence, an address), the input's next tokens are evaluated in the same call as
  the chosen token, and each is kept if the model then chooses it (``qwenjson.drafting``);
* **reuses the prompt prefix**: the KV cache of the previous call is kept and only the part of
  the new prompt after the longest common token prefix is evaluated; with a ``cache_dir`` the
  prefix shared by every record (system message + schema) is persisted to disk
  (``qwenjson.kvstate``, ``qwenjson.kvcache``).

The parts: ``vocab`` (tokens), ``chat`` (the chat template), ``grammar_probe`` (questions to the
grammar), ``kvstate`` (the KV cache), ``sampling`` (the choice), ``steering`` (the budget's end),
``forced`` (forced text), ``drafting`` (guesses); ``Engine`` composes them for one generation.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import llama_cpp.llama_cpp as ll
import numpy as np
import numpy.typing as npt

from qwenjson import callbacks, sampling
from qwenjson.buildcheck import model_params
from qwenjson.chat import CHATML_TEMPLATE, ChatTemplate
from qwenjson.cpu import CoreWatch, allowed_cpus, threads_for
from qwenjson.decode_loop import DecodeLoop, Parts, Settings
from qwenjson.drafting import LeadGuesses, PromptLookup
from qwenjson.errors import InputError, ModelError
from qwenjson.forced import ForcedText
from qwenjson.generation import Constraint, GenerationResult, Message, TokenTrace
from qwenjson.grammar_probe import GrammarProbe, StepChecks, parse_grammar
from qwenjson.kvcache import PrefixCache
from qwenjson.kvstate import KVState
from qwenjson.stats import GenerationStats
from qwenjson.vocab import Vocabulary

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["CHATML_TEMPLATE", "Engine", "GenerationStats", "default_threads"]

FloatArray = npt.NDArray[np.float32]


# -- llama.cpp logging ----------------------------------------------------------------------------
# llama.cpp and ggml log through one process-wide callback; we drop everything (stderr belongs to
# the CLI). The ctypes callback must stay referenced while llama.cpp may call it: module global.
@callbacks.shield  # called from C: a signal's error raised in it would be swallowed
def _drop_log(level: int, text: bytes | None, user_data: Any) -> None:
    return None


_LOG_CALLBACK = ll.llama_log_callback(_drop_log)
_backend_lock = threading.Lock()
_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        ll.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        if not _backend_ready:
            ll.llama_backend_init()
            _backend_ready = True


def default_threads() -> tuple[int, int]:
    """(decode threads, prompt-processing threads) for this machine.

    Decoding one token is memory-bandwidth bound: on 2-4 cores every core helps, beyond that the
    gain flattens and one core is left for the OS and the Python side of the loop (capped at 8).
    Prompt processing is compute bound and uses every core we may run on. (Cores that other
    processes keep busy are left out at run time: ``qwenjson.cpu``.)
    """
    cores = max(1, len(allowed_cpus()))
    decode = cores if cores <= 4 else min(8, cores - 1)
    return decode, cores


# Tokens of a scored continuation evaluated per batch (``continuation_logprobs``), at most:
# within the batch the engine sets up (``min(512, n_ctx)``) with rows for all of them.
_SCORE_SLICE = 256


def _one_at_a_time(
    method: Callable[Concatenate[Engine, P], R],
) -> Callable[Concatenate[Engine, P], R]:
    """``method`` with the engine's turn held, on an open engine: threads that share one take
    turns (llama.cpp aborts when two use its context at once), and a closed one is a
    ModelError (its model's memory is freed)."""

    @functools.wraps(method)
    def in_turn(self: Engine, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._turn:
            self._open()
            return method(self, *args, **kwargs)

    return in_turn


class Engine:
    """A GGUF model on llama.cpp that generates text under a GBNF grammar.

    Satisfies ``qwenjson.generation.Generator``. One generation at a time: threads that share
    an engine take turns (llama.cpp's context aborts the process when two use it at once).

    Example::

        with Engine("model.gguf") as engine:
            result = engine.generate(messages, grammar, max_tokens=256)
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        cache_dir: Path | None = None,
        model_sha256: str | None = None,
        fast_forward: bool = True,
    ) -> None:
        self._model: Any = None
        self._kvs: KVState | None = None
        self._turn = threading.RLock()  # held by the call running now, and by close()
        # As extract checks them: an Engine opened directly got none of its checks (100000
        # threads crashed the process at the first call; 2**32 + 1024 was a 1024-token context).
        # (Imported here: pipeline imports this module when it opens a model.)
        from qwenjson.pipeline import check_sizes

        check_sizes(n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch)
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            with path.open("rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise ModelError(f"can't read model file {path}: {e.strerror or e}") from e
        if magic != b"GGUF":
            raise ModelError(f"{path} is not a GGUF model file")
        self.model_path = path
        self._model_sha256 = model_sha256
        # Threads left to us follow what other processes use (qwenjson.cpu): the first
        # window is the model's loading, then each call to the next.
        self._watch = CoreWatch() if n_threads is None and n_threads_batch is None else None
        _init_backend()

        # Extra buffer types off on an AMX build, whose first decode they crash (buildcheck).
        mparams = model_params()
        self.extra_buffers = bool(mparams.use_extra_bufts)
        model = ll.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise ModelError(f"llama.cpp could not load {path} (damaged or unsupported GGUF?)")
        self._model = model
        try:
            self._start(model, path, n_ctx, n_threads, n_threads_batch, cache_dir, fast_forward)
        except BaseException:
            # Ctrl-C while the context is made or the vocabulary read: free what was made now,
            # not when the interpreter collects this half-made engine at exit (llama_free then
            # crashed the process: exit 139 instead of 130, 2 in about 140 interrupted runs).
            self.close()
            raise

    def _start(
        self,
        model: Any,
        path: Path,
        n_ctx: int,
        n_threads: int | None,
        n_threads_batch: int | None,
        cache_dir: Path | None,
        fast_forward: bool,
    ) -> None:
        """The vocabulary, the context and the helpers, for the loaded ``model``."""
        self._vocab = Vocabulary(model)
        self._n_vocab = self._vocab.n_vocab

        default_decode, default_batch = self._default_threads = default_threads()
        self.n_threads = n_threads or default_decode
        self.n_threads_batch = n_threads_batch or n_threads or default_batch
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        n_batch = min(512, n_ctx)
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads_batch
        cparams.no_perf = True
        prefix_cache = PrefixCache(cache_dir) if cache_dir is not None else None
        self._prefix_cache = prefix_cache
        self.last_stats = GenerationStats()

        def stats() -> GenerationStats:
            return self.last_stats

        # The context goes to its owner at once (KVState, which close() frees): nothing that
        # can fail stands between them, so it is never left alive beside a freed model.
        ctx = ll.llama_init_from_model(model, cparams)
        if not ctx:
            self.close()
            raise ModelError(f"llama.cpp could not create a {n_ctx}-token context for {path}")
        self._kvs = KVState(ctx, n_batch, self._n_vocab, prefix_cache, self._model_key, stats)
        self._n_ctx = int(ll.llama_n_ctx(ctx))
        self._chat = ChatTemplate(model, self._vocab)
        self._probe = GrammarProbe(self._vocab, stats)
        self._forced = ForcedText(self._probe, stats)
        self.fast_forward = fast_forward and self._vocab.byte_tokens is not None
        self._can_probe = self._probe.can_probe
        # Both evaluate tokens on a guess and take back the wrong ones, which recurrent
        # memories (Mamba, RWKV, hybrids) can't: llama_memory_seq_rm fails for a partial range.
        exact = not (ll.llama_model_is_recurrent(model) or ll.llama_model_is_hybrid(model))
        self.guess_lead = exact
        self.draft_from_prompt = exact
        self._guesses = LeadGuesses()

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context and the model (idempotent); waits for a call another thread is
        running (freed under it, llama.cpp would crash the process)."""
        with self._turn:
            if self._kvs is not None:
                self._kvs.close()
            if self._model is not None:
                ll.llama_model_free(self._model)
                self._model = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Best effort for engines nobody closed. Not while the interpreter shuts down: what
        # llama.cpp frees then may be gone already (the process ends anyway, its memory with it).
        if sys.is_finalizing():
            return
        with contextlib.suppress(Exception):
            self.close()

    def _state(self) -> KVState:
        if self._kvs is None:
            raise ModelError("the model has been closed")
        return self._kvs

    def _live_ctx(self) -> Any:
        return self._state().live_ctx()

    def _model_key(self) -> str:
        return self.model_sha256

    @property
    def model_sha256(self) -> str:
        """The sha256 of the model file (the registry's, else hashed once and remembered)."""
        if self._model_sha256 is None:
            from qwenjson.hub import file_sha256

            self._model_sha256 = file_sha256(self.model_path)
        return self._model_sha256

    # -- tokens, text and the chat template --------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """The context size in tokens."""
        return self._n_ctx

    @property
    def n_vocab(self) -> int:
        """The vocabulary size."""
        return self._n_vocab

    def _open(self) -> None:
        # The vocabulary and the chat template point into the model: used after close() they
        # would read freed memory (a segfault, not an error).
        if self._model is None:
            raise ModelError("the model has been closed")

    @_one_at_a_time
    def tokenize(self, text: bytes, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for ``text``; ``special`` parses special-token text such as ``<|im_start|>``."""
        return self._vocab.tokenize(text, special=special, add_bos=add_bos)

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes with this model's tokenizer (as plain text)."""
        return len(self.tokenize(text.encode("utf-8")))

    @_one_at_a_time
    def piece(self, token: int) -> bytes:
        """The bytes of ``token`` as it appears in generated text (control tokens: empty)."""
        return self._vocab.piece(token)

    @_one_at_a_time
    def chat_template(self) -> str:
        """The GGUF's ``tokenizer.chat_template``, or ChatML if the file has none."""
        return self._chat.source()

    @_one_at_a_time
    def render_chat(self, messages: Sequence[Message]) -> str:
        """The prompt for ``messages`` in the model's own chat template, ready for the reply."""
        return self._chat.render(messages)

    @_one_at_a_time
    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The tokens of the rendered prompt (BOS if the model wants one): see
        ``ChatTemplate.prompt_tokens`` for why contents are tokenized apart."""
        return self._chat.prompt_tokens(messages)

    # -- the parts, as tests and scripts reach them (the loop itself uses the parts directly) -----

    @property
    def _kv(self) -> list[int]:
        """The tokens whose state sits in the KV cache."""
        return self._state().tokens

    @property
    def _all_ids(self) -> npt.NDArray[np.int32]:
        return self._probe.all_ids

    def _forget_from(self, n: int) -> None:
        self._state().forget_from(n)

    def _decode(self, tokens: Sequence[int], *, logits: bool = True, outputs: int = 1) -> None:
        self._state().decode(tokens, logits=logits, outputs=outputs)

    def _logits(self, row: int = -1) -> FloatArray:
        return self._state().logits(row)

    def _prefill(self, tokens: list[int], shared: int, outputs: int = 1) -> None:
        self._state().prefill(tokens, shared, outputs)

    def _shared_prefix_len(self, messages: Sequence[Message], tokens: list[int]) -> int:
        return self._chat.shared_prefix_len(messages, tokens)

    def _init_grammar(self, grammar: str) -> Any:
        return parse_grammar(self._vocab, grammar)

    def _grammar_allows(self, grammar: Any, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        return self._probe.grammar_allows(grammar, ids)

    def _banned_mask(self) -> npt.NDArray[np.bool_]:
        return self._vocab.banned_mask()

    def _choose(
        self,
        logits: FloatArray,
        grammar: Any,
        temperature: float,
        top_p: float,
        rng: np.random.Generator,
        constraint: Constraint | None = None,
    ) -> int | None:
        """The next token from the grammar-masked distribution (``sampling.choose``)."""
        checks = StepChecks(self._probe, grammar, constraint)
        return sampling.choose(logits, checks, temperature, top_p, rng, self.last_stats)

    # -- generation --------------------------------------------------------------------------------

    @_one_at_a_time
    def generate(
        self,
        messages: Sequence[Message],
        grammar: str,
        *,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        on_text: Callable[[str], None] | None = None,
        constraint: Constraint | None = None,
        trace: bool = False,
    ) -> GenerationResult:
        """Generate the assistant's reply to ``messages``, every token allowed by ``grammar``.

        ``constraint`` (grounding) is checked beside the grammar and fed every output byte;
        ``trace`` records each emitted piece with the model's log-probability for the tokens
        it chose. Raises InputError when the prompt plus ``max_tokens`` doesn't fit the
        context, and SchemaError when llama.cpp can't parse ``grammar``.
        """
        self._live_ctx()
        tokens = self.prompt_tokens(messages)
        if len(tokens) + max_tokens > self._n_ctx:
            raise InputError(
                f"the prompt takes {len(tokens)} tokens and up to {max_tokens} more may be "
                f"generated, but the context holds {self._n_ctx} tokens "
                f"({len(tokens) + max_tokens - self._n_ctx} too many): shorten the input or "
                "lower --max-tokens"
            )
        if not tokens:
            raise InputError("the prompt is empty")
        gram = parse_grammar(self._vocab, grammar)
        if constraint is not None:
            constraint.measure_with(lambda text: len(self._vocab.tokenize(text)))
        self._adapt_threads()
        self.last_stats = stats = GenerationStats(
            prompt_tokens=len(tokens), threads=(self.n_threads, self.n_threads_batch)
        )
        try:
            t0 = time.perf_counter()
            shared = self._shared_prefix_len(messages, tokens)
            lead, whole, held = self._forced_start(gram, max_tokens)
            # Text the grammar forces before the model has any choice (``{"name":"`` with
            # fixed keys) is evaluated in the same prefill as the prompt, as its last part.
            guess = held if held is not None and self._lead_guess(held) else None
            lookup = (
                PromptLookup(tokens, [self.piece(t) for t in tokens], self._draftable)
                if self.draft_from_prompt and self._can_probe
                else None
            )
            # The reply's start is a part of its own: what the prompt's state is doesn't depend
            # on it (``KVState.prefill``), and scoring after this (``continuation_logprobs``)
            # keeps the prompt.
            cuts = (len(tokens),)
            # An empty chunk before each batch of the prompt: a caller that keeps --timeout by
            # the clock on each chunk keeps it while a long prompt is read too.
            tick = (lambda: on_text("")) if on_text is not None else None
            if guess is None:
                self._state().prefill(tokens + lead, shared, cuts=cuts, tick=tick)
            else:
                self._state().prefill(
                    tokens + lead + [guess], shared, outputs=2, cuts=cuts, tick=tick
                )
            stats.model_ms = 0.0  # from here on: the decode steps only
            t1 = time.perf_counter()
            traced: list[TokenTrace] | None = [] if trace else None
            settings = Settings(max_tokens, temperature, top_p, seed, self.fast_forward)
            loop = DecodeLoop(
                self._parts(),
                gram,
                settings,
                stats,
                constraint=constraint,
                trace=traced,
                on_text=on_text,
                lookup=lookup,
            )
            text, finish = loop.run(lead, whole, guess)
            t2 = time.perf_counter()
        finally:
            ll.llama_sampler_free(gram)
        return GenerationResult(
            text=text,
            prompt_tokens=len(tokens),
            generated_tokens=len(stats.tokens),
            prefill_ms=(t1 - t0) * 1000.0,
            decode_ms=(t2 - t1) * 1000.0,
            finish_reason=finish,
            trace=tuple(traced or ()),
        )

    @_one_at_a_time
    def continuation_logprobs(
        self,
        messages: Sequence[Message],
        head: str,
        tails: Sequence[str],
        *,
        max_tokens: int | None = None,
    ) -> list[float]:
        """log p(tail | the reply to ``messages`` begins with ``head``) for each of ``tails``,
        each alone after ``head``: the sum over its tokens (at most ``max_tokens`` of them) of
        the model's unconstrained log-probabilities. No grammar: this asks how likely the model
        finds a text, not what it may write (``qwenjson.labeling``)."""
        self._live_ctx()
        prompt = self.prompt_tokens(messages)
        base = prompt + self.tokenize(head.encode("utf-8"))
        tail_ids = [self.tokenize(t.encode("utf-8"))[:max_tokens] for t in tails]
        if len(base) + max((len(t) for t in tail_ids), default=0) > self._n_ctx:
            raise InputError("the text and its labels don't fit the context")
        self._adapt_threads()
        # The last generation's statistics stay its own (``-v`` reports them after the record).
        generation_stats = self.last_stats
        self.last_stats = GenerationStats(prompt_tokens=len(base))
        try:
            self._state().prefill(
                base, self._shared_prefix_len(messages, prompt), cuts=(len(prompt),)
            )
            first = self._logits(-1).copy()
            scores: list[float] = []
            for ids in tail_ids:
                total = sampling.logprob(first, ids[0]) if ids else 0.0
                if len(ids) > 1:
                    self._forget_from(len(base))
                    if len(self._kv) != len(base):
                        # A memory that can't drop part of a sequence (recurrent models) was
                        # cleared: the tail must still follow the prompt.
                        self._state().prefill(base, 0)
                    # The tail's tokens but its last, in slices that fit a batch: the row of
                    # each token predicts the next one.
                    fed, step = ids[:-1], min(_SCORE_SLICE, self._n_ctx)
                    for at in range(0, len(fed), step):
                        part = fed[at : at + step]
                        self._decode(part, outputs=len(part))
                        for j in range(len(part)):
                            total += sampling.logprob(self._logits(j - len(part)), ids[at + j + 1])
                scores.append(total)
        finally:
            self.last_stats = generation_stats
        return scores

    def _forced_start(self, grammar: Any, max_tokens: int) -> tuple[list[int], bool, int | None]:
        """The forced text before the first choice (``ForcedText.forced_start``), if probed."""
        if not (self._can_probe and self.fast_forward):
            return [], False, None
        return self._forced.forced_start(grammar, max_tokens)

    def _lead_guess(self, held: int) -> bool:
        """Whether to evaluate the held-back token with the prompt (``LeadGuesses``)."""
        return self.guess_lead and self._guesses.worth_trying(held)

    def _parts(self) -> Parts:
        return Parts(self._vocab, self._probe, self._state(), self._forced, self._guesses)

    def _draftable(self, token: int) -> bool:
        return not (self._vocab.is_banned(token) or self._vocab.is_eog(token))

    def _adapt_threads(self) -> None:
        """Use only the cores other processes leave free (unless threads were given)."""
        if self._watch is None:
            return
        busy = self._watch.others_busy()
        if busy is None:
            return
        n, nb = threads_for(len(self._watch.cpus) - busy, self._default_threads)
        if (n, nb) != (self.n_threads, self.n_threads_batch):
            ll.llama_set_n_threads(self._live_ctx(), n, nb)
            self.n_threads, self.n_threads_batch = n, nb
