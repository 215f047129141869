"""The generation loop: constrained decoding on llama.cpp's low-level API.

Why not ``Llama.create_completion(grammar=…)``: its sampler chain runs the grammar over all
candidates (151,936 for Qwen2) at every step, which costs ~1.7× the decode itself. This loop:

* **samples first, checks one token**: the token is chosen from the raw logits (greedy, or drawn
  with temperature) and only that token is checked against the grammar; the whole vocabulary is
  masked only when it is rejected (see ``_choose`` for why the result equals full masking);
* **fast-forwards forced text**: where the grammar admits exactly one continuation (fixed keys,
  ``":"``, closing brackets, the rest of an enum value) the text is fed in one batch, tokenized
  the way the model's tokenizer would tokenize it (see ``_fast_forward``), and a grammar that
  admits nothing but the end stops generation without asking the model for the end token;
* **drafts from the prompt**: where the output has been copying the input for a few tokens (a
  summary's sentence, an address), the input's next tokens are evaluated in the same call as
  the chosen token, and each is kept if the model then chooses it (``qwenjson.drafting``);
* **reuses the prompt prefix**: the KV cache of the previous call is kept and only the part of
  the new prompt after the longest common token prefix is evaluated; with a ``cache_dir`` the
  prefix shared by every record (system message + schema) is persisted to disk
  (``qwenjson.kvcache``), so a cron job's next run skips that prefill.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import jinja2
import jinja2.ext
import llama_cpp.llama_cpp as ll
import numpy as np
import numpy.typing as npt
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qwenjson import drafting, sampling, steering
from qwenjson.cpu import CoreWatch, allowed_cpus, threads_for
from qwenjson.drafting import PromptLookup
from qwenjson.errors import InputError, ModelError, SchemaError
from qwenjson.generation import Constraint, GenerationResult, Message, TokenTrace
from qwenjson.kvcache import PrefixCache, model_fingerprint
from qwenjson.stats import GenerationStats
from qwenjson.steering import Nesting
from qwenjson.utf8 import REPRESENTATIVE, utf8_prefix

__all__ = ["CHATML_TEMPLATE", "Engine", "GenerationStats", "default_threads"]

# Used when the GGUF carries no `tokenizer.chat_template` (ChatML is what Qwen2 and SmolLM2 use).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Longest forced text looked ahead in one go (bytes); longer runs are fed in several batches.
_MAX_FORCED_BYTES = 256
# A prefix shorter than this is not worth a disk round trip.
_MIN_CACHED_PREFIX = 32

FloatArray = npt.NDArray[np.float32]


# -- llama.cpp logging ----------------------------------------------------------------------------
# llama.cpp and ggml log through one process-wide callback; we drop everything (stderr belongs to
# the CLI). The ctypes callback must stay referenced while llama.cpp may call it: module global.
def _drop_log(level: int, text: bytes | None, user_data: Any) -> None:
    return None


_LOG_CALLBACK = ll.llama_log_callback(_drop_log)
_backend_lock = threading.Lock()
_backend_ready = False
# The grammar parser prints its complaint with fprintf(stderr): while it runs, fd 2 is swapped
# for a file so the complaint ends up in the SchemaError and not on the user's terminal.
_stderr_lock = threading.Lock()


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


class Engine:
    """A GGUF model on llama.cpp that generates text under a GBNF grammar.

    Satisfies ``qwenjson.generation.Generator``. Not thread-safe: one generation at a time.

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
        self._ctx: Any = None
        self._batch: Any = None
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

        mparams = ll.llama_model_default_params()
        model = ll.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise ModelError(f"llama.cpp could not load {path} (damaged or unsupported GGUF?)")
        self._model = model
        self._vocab = ll.llama_model_get_vocab(model)
        self._n_vocab = int(ll.llama_vocab_n_tokens(self._vocab))

        default_decode, default_batch = self._default_threads = default_threads()
        self.n_threads = n_threads or default_decode
        self.n_threads_batch = n_threads_batch or n_threads or default_batch
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        self._n_batch = min(512, n_ctx)
        cparams.n_batch = self._n_batch
        cparams.n_ubatch = self._n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads_batch
        cparams.no_perf = True
        ctx = ll.llama_init_from_model(model, cparams)
        if not ctx:
            self.close()
            raise ModelError(f"llama.cpp could not create a {n_ctx}-token context for {path}")
        self._ctx = ctx
        self._n_ctx = int(ll.llama_n_ctx(ctx))
        self._mem = ll.llama_get_memory(ctx)
        self._batch = ll.llama_batch_init(self._n_batch, 0, 1)
        self._kv: list[int] = []  # the tokens whose state sits in the KV cache (sequence 0)

        # One candidate buffer for the whole vocabulary, reused for every grammar check; the
        # numpy view writes ids and logits into it without a Python loop.
        self._cand = (ll.llama_token_data * self._n_vocab)()
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
        self._all_ids = np.arange(self._n_vocab, dtype=np.int32)
        self._closers: steering.ClosingIds | None = None
        self._pieces: dict[int, bytes] = {}
        self._eog_cache: dict[int, bool] = {}
        self._banned_cache: dict[int, bool] = {}
        self._banned_all: npt.NDArray[np.bool_] | None = None
        # For constraints beside the grammar (grounding): tokens by their text, and the ones
        # holding a quote or a comma (the only ones a span constraint can refuse outside a value).
        self._pieces_index: sampling.PieceIndex | None = None
        self._eos = int(ll.llama_vocab_eos(self._vocab))
        if self._eos < 0:
            self._eos = int(ll.llama_vocab_eot(self._vocab))
        self._add_bos = bool(ll.llama_vocab_get_add_bos(self._vocab))
        self._bos_text = self._special_text(int(ll.llama_vocab_bos(self._vocab)))
        self._eos_text = self._special_text(self._eos)

        self._byte_tokens = self._find_byte_tokens()
        # The byte probe (``_probe``) sees every possible next byte only if each byte some token
        # starts with has a one-byte token; otherwise forced text can't be detected soundly.
        self.fast_forward = fast_forward and self._byte_tokens is not None
        self._can_probe = self._byte_tokens is not None and self._eos >= 0
        if self._byte_tokens is not None:
            probe = sorted(self._byte_tokens.items())
            self._probe_bytes = [b for b, _ in probe]
            self._probe_ids = np.array([t for _, t in probe] + [self._eos], dtype=np.int32)
            likely = b'"ae01,}] tn-.' + bytes([0xE4, 0xE5, 0xE6])
            self._quick_ids = np.array(
                [self._byte_tokens[b] for b in likely if b in self._byte_tokens], dtype=np.int32
            )

        self._template: jinja2.Template | None = None
        self._stable_cache: dict[tuple[tuple[int, ...], bytes], bool] = {}
        # Per held-back token: [right, tried] guesses so far (see ``_lead_guess``).
        self._guesses: dict[int, list[int]] = {}
        # Both evaluate tokens on a guess and take back the wrong ones, which recurrent
        # memories (Mamba, RWKV, hybrids) can't: llama_memory_seq_rm fails for a partial range.
        exact = not (ll.llama_model_is_recurrent(model) or ll.llama_model_is_hybrid(model))
        self.guess_lead = exact
        self.draft_from_prompt = exact
        self._lookup: PromptLookup | None = None
        self._constraint: Constraint | None = None
        self._trace: list[TokenTrace] | None = None
        self._prefix_cache = PrefixCache(cache_dir) if cache_dir is not None else None
        self._fingerprint: str | None = None
        self.last_stats = GenerationStats()

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context and the model (idempotent)."""
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            ll.llama_free(self._ctx)
            self._ctx = None
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
        # Best effort for engines nobody closed; interpreter shutdown may have torn ll down.
        with contextlib.suppress(Exception):
            self.close()

    def _live_ctx(self) -> Any:
        if self._ctx is None:
            raise ModelError("the model has been closed")
        return self._ctx

    # -- tokens and text ---------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """The context size in tokens."""
        return self._n_ctx

    @property
    def n_vocab(self) -> int:
        """The vocabulary size."""
        return self._n_vocab

    def tokenize(self, text: bytes, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for ``text``; ``special`` parses special-token text such as ``<|im_start|>``."""
        size = len(text) + 8
        buf = (ll.llama_token * size)()
        n = ll.llama_tokenize(self._vocab, text, len(text), buf, size, add_bos, special)
        if n < 0:
            size = -n
            buf = (ll.llama_token * size)()
            n = ll.llama_tokenize(self._vocab, text, len(text), buf, size, add_bos, special)
        return [int(t) for t in buf[:n]]

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes with this model's tokenizer (as plain text)."""
        return len(self.tokenize(text.encode("utf-8")))

    def piece(self, token: int) -> bytes:
        """The bytes of ``token`` as it appears in generated text (control tokens: empty)."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._token_bytes(token, special=False)
            self._pieces[token] = cached
        return cached

    def _token_bytes(self, token: int, *, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._token_bytes(token, special=True).decode("utf-8", "replace")

    def _find_byte_tokens(self) -> dict[int, int] | None:
        """A one-byte token for every byte that begins some token, or None if one is missing."""
        single: dict[int, int] = {}
        firsts: set[int] = set()
        buf = ctypes.create_string_buffer(256)
        for token in range(self._n_vocab):
            n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n <= 0:
                continue
            first = buf.raw[0]
            firsts.add(first)
            if n == 1:
                single.setdefault(first, token)
            if len(single) == 256:
                break  # byte-level BPE vocabularies (Qwen2) have all bytes among the first ids
        single.pop(0, None)  # llama.cpp's grammar never admits a piece starting with NUL
        firsts.discard(0)
        if firsts - single.keys():
            return None
        return single

    def _is_eog(self, token: int) -> bool:
        known = self._eog_cache.get(token)
        if known is None:
            known = bool(ll.llama_vocab_is_eog(self._vocab, token))
            self._eog_cache[token] = known
        return known

    def _is_banned(self, token: int) -> bool:
        # Control tokens other than end-of-generation (<|im_start|>, <|fim_prefix|>, …) spell
        # themselves as text to llama.cpp's grammar, so a JSON string could take one; they never
        # belong in an answer, so they are outside the allowed set on every path.
        known = self._banned_cache.get(token)
        if known is None:
            known = bool(ll.llama_vocab_is_control(self._vocab, token)) and not self._is_eog(token)
            self._banned_cache[token] = known
        return known

    def _banned_mask(self) -> npt.NDArray[np.bool_]:
        if self._banned_all is None:
            self._banned_all = np.array(
                [self._is_banned(t) for t in range(self._n_vocab)], dtype=np.bool_
            )
        return self._banned_all

    # -- chat template -----------------------------------------------------------------------------

    def chat_template(self) -> str:
        """The GGUF's ``tokenizer.chat_template``, or ChatML if the file has none."""
        key = b"tokenizer.chat_template"
        size = 1 << 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = ll.llama_model_meta_val_str(self._model, key, buf, size)
            if n < 0:
                return CHATML_TEMPLATE
            if n < size:
                return buf.raw[:n].decode("utf-8", "replace")
            size = n + 1

    def render_chat(self, messages: Sequence[Message]) -> str:
        """The prompt for ``messages`` in the model's own chat template, ready for the reply."""
        if self._template is None:
            env = ImmutableSandboxedEnvironment(
                loader=jinja2.BaseLoader(),
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=[jinja2.ext.loopcontrols],
            )
            try:
                self._template = env.from_string(self.chat_template())
            except jinja2.TemplateError as e:
                raise ModelError(f"the model's chat template doesn't parse: {e}") from e

        def raise_exception(message: str) -> None:
            raise ModelError(f"the model's chat template refused the messages: {message}")

        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=True,
                bos_token=self._bos_text,
                eos_token=self._eos_text,
                raise_exception=raise_exception,
                strftime_now=lambda fmt: time.strftime(fmt),
            )
        except jinja2.TemplateError as e:
            raise ModelError(f"the model's chat template failed: {e}") from e

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The tokens of the rendered prompt (BOS if the model wants one).

        The template's own text is tokenized with special tokens parsed; the messages' contents
        are not: they are data, and a record saying ``<|im_end|>`` must not end its turn (a
        prompt injection). The template is rendered with a marker for each content, and the
        pieces between markers are tokenized each in its own way.
        """
        markers = [f"\x00qwenjson-content-{i}\x00" for i in range(len(messages))]
        rendered = self.render_chat(
            [{**m, "content": marker} for m, marker in zip(messages, markers, strict=True)]
        )
        contents = {marker: m["content"] for m, marker in zip(messages, markers, strict=True)}
        pattern = "(" + "|".join(re.escape(m) for m in markers) + ")" if markers else "(?!)"
        add_bos = self._add_bos and not (self._bos_text and rendered.startswith(self._bos_text))
        tokens: list[int] = []
        for part in re.split(pattern, rendered):
            if not part:
                continue
            if part in contents:
                text, special = contents[part], False
            else:
                text, special = part, True
            tokens += self.tokenize(text.encode("utf-8"), special=special, add_bos=add_bos)
            add_bos = False
        return tokens

    def _shared_prefix_len(self, messages: Sequence[Message], tokens: list[int]) -> int:
        """How many leading prompt tokens don't depend on the last message (the cacheable part).

        The template is rendered twice with different last contents; the common text is what
        every record shares (system message, schema, the user turn's header). Only tokens that
        lie entirely inside it and match its own tokenization count, so a merge across the
        boundary can never be cached as if it were shared.
        """
        if not messages:
            return 0
        last = dict(messages[-1])
        probes = []
        for filler in ("a", "b"):
            probes.append(self.render_chat([*messages[:-1], {**last, "content": filler}]))
        common = os.path.commonprefix(probes)  # noqa: RUF071 -- strings, not paths
        shared = self.tokenize(common.encode("utf-8"), special=True, add_bos=False)
        offset = 1 if tokens and shared and tokens[0] != shared[0] else 0  # a BOS we added
        n = 0
        for a, b in zip(tokens[offset:], shared, strict=False):
            if a != b:
                break
            n += 1
        # The last shared token may merge with the record's first characters: leave it out.
        return max(0, offset + n - 1)

    # -- grammar -----------------------------------------------------------------------------------

    def _init_grammar(self, grammar: str) -> Any:
        if not grammar.strip():
            raise SchemaError("empty grammar")
        if "\x00" in grammar:
            raise SchemaError("grammar contains a NUL character")
        with _stderr_lock, tempfile.TemporaryFile() as sink:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                smpl = ll.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            if smpl:
                return smpl
            sink.seek(0)
            said = sink.read().decode("utf-8", "replace")
        why = said.strip()[:300]
        for line in said.splitlines():
            if "error parsing grammar" in line:
                why = line.split("error parsing grammar:", 1)[-1].strip()
                break
        raise SchemaError(f"llama.cpp can't parse the grammar: {why or 'no reason given'}")

    def _grammar_allows(self, grammar: Any, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        """Which of ``ids`` the grammar admits next (one llama.cpp call, nothing accepted)."""
        n = len(ids)
        view = self._cand_view[:n]
        view["id"] = ids
        view["logit"] = 0.0
        self._cand_array.size = n
        self._cand_array.selected = -1
        self._cand_array.sorted = False
        ll.llama_sampler_apply(grammar, ctypes.byref(self._cand_array))
        # The grammar sets the logit of every refused candidate to -inf and leaves the order.
        allowed: npt.NDArray[np.bool_] = np.isfinite(view["logit"])
        return allowed

    def _allows(self, grammar: Any, token: int) -> bool:
        if self._is_banned(token):
            return False
        return bool(self._grammar_allows(grammar, np.array([token], dtype=np.int32))[0])

    def _allowed_mask(self, grammar: Any) -> npt.NDArray[np.bool_]:
        """The full mask: every token the grammar admits next (the slow path)."""
        self.last_stats.full_masks += 1
        return self._grammar_allows(grammar, self._all_ids) & ~self._banned_mask()

    def _probe(self, grammar: Any) -> tuple[bytes, bool, list[int]]:
        """The bytes the grammar forces next, whether it admits only the end after them, and
        the bytes it admits after them (where the model has a choice again).

        Each step applies the grammar to one token per possible first byte plus the end token
        (~256 candidates instead of the vocabulary): exactly one byte admitted and no end means
        that byte is forced. llama.cpp's grammar admits a lone UTF-8 lead byte when some
        character starting with it may follow, so multi-byte characters are forced byte by byte.
        """
        forced = bytearray()
        clone: Any = None
        state = grammar
        # Most steps are free choices (inside a string or a number): a dozen likely bytes show
        # that cheaply before the full probe of every byte.
        quick = self._grammar_allows(grammar, self._quick_ids)
        if int(quick.sum()) >= 2:
            return b"", False, []
        try:
            while True:
                ok = self._grammar_allows(state, self._probe_ids)
                end_ok = bool(ok[-1])
                admitted = [self._probe_bytes[int(i)] for i in np.flatnonzero(ok[:-1])]
                if not admitted:
                    return bytes(forced), end_ok, []
                if len(admitted) > 1 or end_ok or not self.fast_forward:
                    return bytes(forced), False, admitted
                if len(forced) >= _MAX_FORCED_BYTES:
                    return bytes(forced), False, []
                if clone is None:
                    clone = ll.llama_sampler_clone(grammar)
                    state = clone
                assert self._byte_tokens is not None
                ll.llama_sampler_accept(clone, self._byte_tokens[admitted[0]])
                forced.append(admitted[0])
        finally:
            if clone is not None:
                ll.llama_sampler_free(clone)

    def _accept_bytes(self, grammar: Any, data: bytes) -> None:
        # Only bytes the probe found forced come here, so the grammar admits each of them.
        assert self._byte_tokens is not None
        for byte in data:
            ll.llama_sampler_accept(grammar, self._byte_tokens[byte])

    # -- sampling ----------------------------------------------------------------------------------

    def _checks(self, grammar: Any, constraint: Constraint | None = None) -> _StepChecks:
        return _StepChecks(self, grammar, constraint)

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
        checks = self._checks(grammar, constraint)
        return sampling.choose(logits, checks, temperature, top_p, rng, self.last_stats)

    def _mask(self, grammar: Any, constraint: Constraint | None) -> npt.NDArray[np.bool_]:
        """Every token the grammar (and the constraint, if any) admits next."""
        return sampling.narrowed(
            self._allowed_mask(grammar), constraint, self.piece, self._piece_index
        )

    def _piece_index(self) -> sampling.PieceIndex:
        if self._pieces_index is None:
            self._pieces_index = sampling.index_pieces(self._n_vocab, self.piece, self._is_banned)
        return self._pieces_index

    def _choose_grounded(
        self,
        logits: FloatArray,
        grammar: Any,
        token: int,
        constraint: Constraint,
        temperature: float,
        top_p: float,
        rng: np.random.Generator,
    ) -> int:
        """The token to write when ``constraint`` refused ``token`` (``choose_grounded``)."""
        return sampling.choose_grounded(
            logits,
            token,
            constraint,
            self._checks(grammar, constraint),
            self._piece_index(),
            self.piece,
            lambda: self._choose(logits, grammar, temperature, top_p, rng, constraint),
        )

    def _choose_closing(
        self,
        logits: FloatArray,
        grammar: Any,
        in_string: bool,
        constraint: Constraint | None = None,
    ) -> int | None:
        """The token that heads for the shortest completion (``steering.choose_closing``)."""
        if self._closers is None:
            self._closers = steering.closing_classes(self._n_vocab, self.piece)
        checks = self._checks(grammar, constraint)
        token = steering.choose_closing(logits, self._closers, in_string, checks, self.piece)
        if token is not None:
            stats = self.last_stats
            if stats.steered_from is None:
                stats.steered_from = len(stats.tokens)
            stats.steered += 1
        return token

    # -- KV cache ----------------------------------------------------------------------------------

    def _forget_from(self, n: int) -> None:
        """Drop the KV state of every token from position ``n`` on."""
        if n >= len(self._kv):
            return
        if not ll.llama_memory_seq_rm(self._mem, 0, n, -1):
            # Some memory types can't drop a partial sequence; start over.
            ll.llama_memory_clear(self._mem, True)
            self._kv = []
            return
        del self._kv[n:]

    def _take_back(self, n: int) -> None:
        """Drop the KV state of the last ``n`` tokens, mid-generation (a guess that was wrong)."""
        keep = len(self._kv) - n
        self._forget_from(keep)
        if len(self._kv) != keep:  # the whole cache went: nothing to go on from
            raise ModelError("llama.cpp could not take guessed tokens back from the KV cache")

    def _decode(self, tokens: Sequence[int], *, logits: bool = True, outputs: int = 1) -> None:
        """Evaluate ``tokens`` after the KV cache, in batches; logits for the last one (for the
        last ``outputs`` ones: ``_logits(-outputs)`` is then the first of them)."""
        ctx = self._live_ctx()
        batch = self._batch
        starts = list(range(0, len(tokens), self._n_batch))
        if logits and len(starts) > 1 and len(tokens) - starts[-1] < outputs:
            starts[-1] = len(tokens) - outputs  # the rows with logits go in one batch
        for n, start in enumerate(starts):
            end = starts[n + 1] if n + 1 < len(starts) else len(tokens)
            chunk = tokens[start:end]
            last_chunk = end == len(tokens)
            pos = len(self._kv)
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
            self.last_stats.model_ms += (time.perf_counter() - t0) * 1000.0
            if rc != 0:
                # The cache may hold part of the batch: nothing in it can be trusted now.
                ll.llama_memory_clear(self._mem, True)
                self._kv = []
                raise ModelError(f"llama_decode failed (code {rc})")
            self._kv.extend(chunk)

    def _logits(self, row: int = -1) -> FloatArray:
        """The logits of the last evaluation's output ``row`` (-1: the last token's)."""
        ptr = ll.llama_get_logits_ith(self._live_ctx(), row)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def _model_key(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = self._model_sha256 or model_fingerprint(self.model_path)
        return self._fingerprint

    def _prefill(self, tokens: list[int], shared: int, outputs: int = 1) -> None:
        """Bring the KV cache to ``tokens`` with logits for the last ``outputs`` of them,
        reusing what it can."""
        stats = self.last_stats
        keep = 0
        for a, b in zip(self._kv, tokens, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - outputs)  # tokens with logits are always evaluated
        self._forget_from(keep)
        keep = len(self._kv)
        shared = min(shared, len(tokens) - outputs)
        cache = self._prefix_cache
        if cache is not None and shared >= _MIN_CACHED_PREFIX and keep < shared:
            prefix = tokens[:shared]
            key = cache.key(self._model_key(), prefix)
            self._forget_from(0)
            if cache.load(self._live_ctx(), key, prefix):
                stats.disk_prefix = "hit"
                self._kv = list(prefix)
            else:
                stats.disk_prefix = "miss"
                self._decode(prefix, logits=False)
                cache.save(self._live_ctx(), key, prefix)
            keep = shared
        stats.reused_tokens = keep
        self._decode(tokens[keep:], outputs=outputs)

    # -- generation --------------------------------------------------------------------------------

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
        gram = self._init_grammar(grammar)
        self._adapt_threads()
        self.last_stats = stats = GenerationStats(
            prompt_tokens=len(tokens), threads=(self.n_threads, self.n_threads_batch)
        )
        try:
            t0 = time.perf_counter()
            shared = (
                self._shared_prefix_len(messages, tokens) if self._prefix_cache is not None else 0
            )
            lead, whole, held = self._forced_start(gram, max_tokens)
            # Text the grammar forces before the model has any choice (``{"name":"`` with
            # fixed keys) is evaluated with the prompt, in the same batches.
            guess = held if held is not None and self._lead_guess(held) else None
            self._lookup = (
                PromptLookup(tokens, [self.piece(t) for t in tokens], self._draftable)
                if self.draft_from_prompt and self._can_probe
                else None
            )
            if guess is None:
                self._prefill(tokens + lead, shared)
            else:
                self._prefill(tokens + lead + [guess], shared, outputs=2)
            stats.model_ms = 0.0  # from here on: the decode steps only
            t1 = time.perf_counter()
            self._constraint = constraint
            self._trace = [] if trace else None
            text, finish = self._run(
                gram, max_tokens, temperature, top_p, seed, on_text, lead, whole, guess
            )
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
            trace=tuple(self._trace or ()),
        )

    def _run(
        self,
        grammar: Any,
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        on_text: Callable[[str], None] | None,
        lead: list[int],
        whole: bool,
        guess: int | None = None,
    ) -> tuple[str, Literal["stop", "length"]]:
        stats = self.last_stats
        rng = np.random.default_rng(seed)
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

        def finish(reason: Literal["stop", "length"]) -> tuple[str, Literal["stop", "length"]]:
            if on_text is not None:
                tail = decoder.decode(b"", final=True)
                if tail:
                    on_text(tail)
            return out.decode("utf-8", "replace"), reason

        if lead:
            stats.tokens.extend((t, True) for t in lead)
            stats.forced_tokens += len(lead)
            emit(b"".join(self.piece(t) for t in lead))
        if whole:
            return finish("stop")
        # Tokens evaluated past the last choice on a guess (the lead guess, a draft from the
        # prompt), each with its row of logits: one stays in the KV cache only if the model
        # chooses it at its place, on the row before it.
        ahead: list[int] = [guess] if guess is not None else []
        while len(stats.tokens) < max_tokens:
            logits = self._logits(-1 - len(ahead))
            token = None
            reserve = depth.reserve()
            if constraint is not None:
                reserve += constraint.closing_reserve()
            if max_tokens - len(stats.tokens) <= reserve:
                token = self._choose_closing(logits, grammar, depth.in_string, constraint)
            if token is None:
                token = self._choose(logits, grammar, temperature, top_p, rng)
                if (
                    constraint is not None
                    and token is not None
                    and not self._is_eog(token)
                    and not constraint.allows(self.piece(token))
                ):
                    token = self._choose_grounded(
                        logits, grammar, token, constraint, temperature, top_p, rng
                    )
            logprob = None
            if trace is not None and token is not None:
                logprob = sampling.logprob(logits, token)
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
                self._take_back(len(ahead))
                ahead = []
            if token is None or self._is_eog(token):
                return finish("stop")
            ll.llama_sampler_accept(grammar, token)
            stats.sampled_tokens += 1
            stats.tokens.append((token, False))
            emit(self.piece(token), logprob)
            if not self._can_probe:
                if len(stats.tokens) >= max_tokens:
                    break
                stats.decode_calls += 1
                self._decode([token])
                continue
            forced, complete, after = self._probe(grammar)
            if complete:
                # Nothing but the end can follow: no decode, not even for the end token. The
                # forced tail is emitted as text, counted as the tokens the tokenizer makes of it.
                room = max_tokens - len(stats.tokens) + 1  # the chosen token counts once
                joint = self._respell(token, forced) if forced else None
                if not forced:
                    return finish("stop")
                if joint is not None and self._replace_last(grammar, token, joint[:room], emit):
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
                self._take_back(1 + len(ahead))
                ahead = []
            stats.decode_calls += 1
            if forced:
                fed = self._fast_forward(grammar, token, forced, after, max_tokens, emit)
                self._decode(fed or [token])
                continue
            ahead = self._draft(grammar, token, max_tokens - len(stats.tokens) - reserve)
            self._decode([token, *ahead], outputs=1 + len(ahead))
        return finish("length")

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

    def _forced_start(self, grammar: Any, max_tokens: int) -> tuple[list[int], bool, int | None]:
        """The tokens of text the grammar forces before the first choice, accepted by it,
        whether that text is the whole output (the grammar admits only the end after it), and
        the token held back at its end (None if none was).

        Same boundary rules as ``_fast_forward``: the last token is held back unless every
        admitted next character leaves it intact (the chat template ends the prompt with a
        newline, where the tokenizer splits anyway).
        """
        if not (self._can_probe and self.fast_forward) or max_tokens <= 0:
            return [], False, None
        forced, complete, after = self._probe(grammar)
        text = utf8_prefix(forced)
        if not text:
            return [], False, None
        lead = self.tokenize(text)
        if b"".join(self.piece(t) for t in lead) != text:
            return [], False, None
        whole = complete and text == forced and len(lead) <= max_tokens
        held = None
        if not whole and not (text == forced and self._stable_end(lead, after)):
            held = lead[-1] if text == forced else None
            lead = lead[:-1]
        if len(lead) >= max_tokens:
            lead, held = lead[:max_tokens], None
        self._accept_bytes(grammar, b"".join(self.piece(t) for t in lead))
        return lead, whole, held

    def _lead_guess(self, held: int) -> bool:
        """Whether to evaluate the held-back token with the prompt, guessing the model picks it.

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
        if not self.guess_lead:
            return False
        right, tried = self._guesses.get(held, (0, 0))
        return 2 * (right + 1) >= tried + 2

    def _record_guess(self, guess: int, right: bool) -> None:
        """Count a lead guess for the record ``_lead_guess`` goes by."""
        record = self._guesses.setdefault(guess, [0, 0])
        record[0] += int(right)
        record[1] += 1
        self.last_stats.lead_guess = right

    def _draftable(self, token: int) -> bool:
        return not (self._is_banned(token) or self._is_eog(token))

    def _draft(self, grammar: Any, token: int, room: int) -> list[int]:
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
        stats = self.last_stats
        recent = [self.piece(t) for t, _ in stats.tokens[-drafting.LOOKBACK :]]
        proposed = self._lookup.propose(token, recent)
        if not proposed:
            return []
        clone = ll.llama_sampler_clone(grammar)
        # The constraint has seen ``token`` already (it was emitted): fork it as it stands.
        fork = self._constraint.fork() if self._constraint is not None else None
        kept: list[int] = []
        try:
            for t in proposed:
                if not self._allows(clone, t):
                    break
                if fork is not None:
                    if not fork.allows(self.piece(t)):
                        break
                    fork.accept(self.piece(t))
                ll.llama_sampler_accept(clone, t)
                kept.append(t)
        finally:
            ll.llama_sampler_free(clone)
        kept = drafting.paying(kept)
        stats.drafted += len(kept)
        return kept

    def _respell(self, token: int, forced: bytes) -> list[int] | None:
        """The tokenizer's tokens for the chosen token's text plus the forced text after it.

        Forced text that ends inside a UTF-8 character is cut back to the character boundary.
        None when there is no clean spelling: the chosen token ends inside a character begun by
        an earlier token (already in the KV cache), or nothing is left after the cut.
        """
        head = self.piece(token)
        text = utf8_prefix(head + forced)
        if len(text) <= len(head):
            return None
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return None
        joint = self.tokenize(text)
        if b"".join(self.piece(t) for t in joint) != text:
            return None
        return joint

    def _replace_last(
        self, grammar: Any, token: int, tokens: list[int], emit: Callable[[bytes], None]
    ) -> bool:
        """Put ``tokens`` (which spell the chosen token's text and more) in its place.

        The text beyond the chosen token is forced, so the grammar accepts it byte by byte.
        False, and nothing changed, if ``tokens`` don't start with that token's text.
        """
        stats = self.last_stats
        head = self.piece(token)
        text = b"".join(self.piece(t) for t in tokens)
        if len(text) < len(head) or not text.startswith(head):
            return False
        self._accept_bytes(grammar, text[len(head) :])
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

    def _fast_forward(
        self,
        grammar: Any,
        token: int,
        forced: bytes,
        after: list[int],
        max_tokens: int,
        emit: Callable[[bytes], None],
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
        joint = self._respell(token, forced)
        if joint is None:
            return None
        text = self.piece(token) + forced
        whole = sum(len(self.piece(t)) for t in joint) == len(text)
        if not (whole and self._stable_end(joint, after)):
            joint = joint[:-1]
        room = max_tokens - len(self.last_stats.tokens) + 1  # the chosen token counts once
        feed = joint[:room]
        if len(feed) < 2 or not self._replace_last(grammar, token, feed, emit):
            return None
        return feed

    def _stable_end(self, joint: list[int], after: list[int]) -> bool:
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
        tail_text = b"".join(self.piece(t) for t in tail)
        if self.tokenize(tail_text) != tail:
            tail = joint
            tail_text = b"".join(self.piece(t) for t in tail)
        for byte in after:
            char = REPRESENTATIVE.get(byte)
            if char is None:
                return False  # mid-character: no boundary to judge
            if self.tokenize(tail_text + char)[: len(tail)] != tail:
                return False
        return True


class _StepChecks:
    """``sampling.Checks`` on this engine's grammar state, with ``constraint`` beside it."""

    def __init__(self, engine: Engine, grammar: Any, constraint: Constraint | None) -> None:
        self._engine = engine
        self._grammar = grammar
        self._constraint = constraint

    def allows(self, token: int) -> bool:
        return self._engine._allows(self._grammar, token)

    def grammar_allows(self, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        return self._engine._grammar_allows(self._grammar, ids)

    def banned(self, token: int) -> bool:
        return self._engine._is_banned(token)

    def passes(self, token: int) -> bool:
        return self._constraint is None or self._constraint.allows(self._engine.piece(token))

    def mask(self) -> npt.NDArray[np.bool_]:
        return self._engine._mask(self._grammar, self._constraint)
