"""The prompt-prefix KV cache on disk, so a cron job's next run skips the shared prefill.

One file per (model, prefix tokens): ``<key>.kv`` in the cache directory, where the key hashes
the model file's sha256 (the one a job's ``Plan`` holds) and the prefix tokens. Not the Plan's
whole fingerprint: the KV state of a prefix depends on nothing else, and a run with another
``--max-tokens`` or ``--retries`` should reuse it. A file holds a header that repeats the key
and the tokens, then llama.cpp's sequence state (``llama_state_seq_get_data``) and its sha256.
Nothing in a file is trusted before all of that checks out: a truncated, corrupt, stale or
foreign file is ignored (and replaced by the next save). Writes go to a temporary file in the
same directory and are renamed into place, so readers never see half a file and concurrent
writers each install a whole one.

The directory is kept to the ``_KEEP_FILES`` prefixes used last; only files with the names this
module gives (``<64 hex digits>.kv``, and temporary files an hour old: a killed writer's) are
ever deleted, since ``--cache-dir`` may name a directory that holds other files.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import stat
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as ll

__all__ = ["PrefixCache", "default_cache_dir"]

_MAGIC = b"QJKV\x01\n"
# magic, key (64 hex chars), token count, payload length, payload sha256
_HEADER = struct.Struct("<6s64sIQ32s")
_KEEP_FILES = 32  # the prefixes used last kept per directory
_OWN_NAME = re.compile(r"[0-9a-f]{64}\.kv")
_TMP_PREFIX, _TMP_SUFFIX = ".qwenjson-kv-", ".tmp"
# A temporary file older than this is a killed writer's: a save takes seconds at most.
_STALE_TMP_SECONDS = 3600


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qwenjson/kv`` (``~/.cache/qwenjson/kv`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qwenjson" / "kv"


def _tokens_bytes(tokens: list[int]) -> bytes:
    return struct.pack(f"<{len(tokens)}i", *tokens)


class PrefixCache:
    """Saves and restores the KV state of sequence 0 for a token prefix."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def key(self, model_key: str, tokens: list[int]) -> str:
        """The file key for ``tokens`` evaluated by the model ``model_key``."""
        h = hashlib.sha256()
        # The llama.cpp version is part of the key: its state format may change between releases.
        h.update(f"qwenjson-kv-1|{llama_cpp.__version__}|{model_key}|".encode())
        h.update(_tokens_bytes(tokens))
        return h.hexdigest()

    def path(self, key: str) -> Path:
        """Where the state for ``key`` lives."""
        return self.directory / f"{key}.kv"

    def load(self, ctx: Any, key: str, tokens: list[int]) -> bool:
        """Restore the state for ``tokens`` into sequence 0 of an empty cache; False if unusable.

        On False the KV cache is left empty.
        """
        path = self.path(key)
        data = _read_regular(path)
        if data is None:
            return False
        expected_tokens = _tokens_bytes(tokens)
        if len(data) < _HEADER.size + len(expected_tokens):
            return False
        magic, file_key, n_tokens, n_payload, digest = _HEADER.unpack_from(data)
        body = _HEADER.size + len(expected_tokens)
        if (
            magic != _MAGIC
            or file_key != key.encode()
            or n_tokens != len(tokens)
            or data[_HEADER.size : body] != expected_tokens
            or len(data) != body + n_payload
            or n_payload == 0
        ):
            return False
        payload = memoryview(data)[body:]
        if hashlib.sha256(payload).digest() != digest:
            return False
        buf = (ctypes.c_uint8 * n_payload).from_buffer_copy(payload)
        mem = ll.llama_get_memory(ctx)
        if ll.llama_state_seq_set_data(ctx, buf, n_payload, 0) == 0:
            ll.llama_memory_clear(mem, True)
            return False
        if ll.llama_memory_seq_pos_max(mem, 0) != len(tokens) - 1:
            ll.llama_memory_clear(mem, True)
            return False
        # Used now: pruning goes by last use, so a prefix every run loads stays.
        with contextlib.suppress(OSError):
            os.utime(path)
        return True

    def save(self, ctx: Any, key: str, tokens: list[int]) -> bool:
        """Write the state of sequence 0 (which must hold exactly ``tokens``); False on failure.

        Failure (read-only or full disk) is not an error: the cache only saves time.
        """
        size = int(ll.llama_state_seq_get_size(ctx, 0))
        if size <= 0:
            return False
        buf = (ctypes.c_uint8 * size)()
        n = int(ll.llama_state_seq_get_data(ctx, buf, size, 0))
        if n <= 0:
            return False
        payload = memoryview(buf)[:n]
        header = _HEADER.pack(
            _MAGIC, key.encode(), len(tokens), n, hashlib.sha256(payload).digest()
        )
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(_tokens_bytes(tokens))
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(key))
            tmp = None
        except OSError:
            return False
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._prune()
        return True

    def _prune(self) -> None:
        """Keep the directory bounded (a long-lived cache sees many schemas), deleting only
        files this module names: another program's ``screen.kv`` beside them stays."""
        own: list[tuple[float, Path]] = []
        now = time.time()
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            # A file that vanished or can't be read is another process's business.
            with contextlib.suppress(OSError):
                if _OWN_NAME.fullmatch(entry.name):
                    own.append((entry.stat().st_mtime, Path(entry.path)))
                elif (
                    entry.name.startswith(_TMP_PREFIX)
                    and entry.name.endswith(_TMP_SUFFIX)
                    and now - entry.stat().st_mtime > _STALE_TMP_SECONDS
                ):
                    os.unlink(entry.path)
        own.sort(key=lambda item: item[0], reverse=True)
        for _, old in own[_KEEP_FILES:]:
            with contextlib.suppress(OSError):
                old.unlink()


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a FIFO someone put there, whose read
    would block the run), else None; None on any error too."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1  # the file object closes it
            return f.read()
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
