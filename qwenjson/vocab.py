"""A model's vocabulary on llama.cpp: tokenizing, token texts, and what kind each token is."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp.llama_cpp as ll
import numpy as np
import numpy.typing as npt

from qwenjson import sampling, steering

__all__ = ["Vocabulary"]


class Vocabulary:
    """The tokenizer and token table of a loaded model (``llama_model``), with caches."""

    def __init__(self, model: Any) -> None:
        self.handle = ll.llama_model_get_vocab(model)
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.handle))
        self._pieces: dict[int, bytes] = {}
        self._eog_cache: dict[int, bool] = {}
        self._banned_cache: dict[int, bool] = {}
        self._banned_all: npt.NDArray[np.bool_] | None = None
        self._index: sampling.PieceIndex | None = None
        self._closers: steering.ClosingIds | None = None
        self.eos = int(ll.llama_vocab_eos(self.handle))
        if self.eos < 0:
            self.eos = int(ll.llama_vocab_eot(self.handle))
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.handle))
        self.bos_text = self._special_text(int(ll.llama_vocab_bos(self.handle)))
        self.eos_text = self._special_text(self.eos)
        self.byte_tokens = self._find_byte_tokens()

    def tokenize(self, text: bytes, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for ``text``; ``special`` parses special-token text such as ``<|im_start|>``."""
        size = len(text) + 8
        buf = (ll.llama_token * size)()
        n = ll.llama_tokenize(self.handle, text, len(text), buf, size, add_bos, special)
        if n < 0:
            size = -n
            buf = (ll.llama_token * size)()
            n = ll.llama_tokenize(self.handle, text, len(text), buf, size, add_bos, special)
        return [int(t) for t in buf[:n]]

    def piece(self, token: int) -> bytes:
        """The bytes of ``token`` as it appears in generated text (control tokens: empty)."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._token_bytes(token, special=False)
            self._pieces[token] = cached
        return cached

    def _token_bytes(self, token: int, *, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = ll.llama_token_to_piece(self.handle, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.handle, token, buf, len(buf), 0, special)
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
        for token in range(self.n_vocab):
            n = ll.llama_token_to_piece(self.handle, token, buf, len(buf), 0, False)
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

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (end of text, end of turn)."""
        known = self._eog_cache.get(token)
        if known is None:
            known = bool(ll.llama_vocab_is_eog(self.handle, token))
            self._eog_cache[token] = known
        return known

    def is_banned(self, token: int) -> bool:
        """Whether ``token`` may never be written: a control token that doesn't end generation."""
        # Control tokens other than end-of-generation (<|im_start|>, <|fim_prefix|>, …) spell
        # themselves as text to llama.cpp's grammar, so a JSON string could take one; they never
        # belong in an answer, so they are outside the allowed set on every path.
        known = self._banned_cache.get(token)
        if known is None:
            known = bool(ll.llama_vocab_is_control(self.handle, token)) and not self.is_eog(token)
            self._banned_cache[token] = known
        return known

    def banned_mask(self) -> npt.NDArray[np.bool_]:
        """``is_banned`` for the whole vocabulary."""
        if self._banned_all is None:
            self._banned_all = np.array(
                [self.is_banned(t) for t in range(self.n_vocab)], dtype=np.bool_
            )
        return self._banned_all

    def piece_index(self) -> sampling.PieceIndex:
        """Tokens by their text (for constraints beside the grammar), built on first use."""
        if self._index is None:
            self._index = sampling.index_pieces(self.n_vocab, self.piece, self.is_banned)
        return self._index

    def closing_ids(self) -> steering.ClosingIds:
        """The tokens budget steering may close with, built on first use."""
        if self._closers is None:
            self._closers = steering.closing_classes(self.n_vocab, self.piece)
        return self._closers
