"""One blob downloaded: into ``<sha256>.incomplete``, hashed while it streams, resumed with
an HTTP Range request, checked for disk space first, renamed only once its sha256 matches."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, cast

from qwenjson.errors import ModelError
from qwenjson.hub_cache import (
    _DISK_MARGIN,
    _hash_prefix,
    _partial_path,
    _remember_verified,
    format_size,
)

ProgressCallback = Callable[[int, int | None], None]

# -- downloading ------------------------------------------------------------------------------


class _SilentBar:
    """Stands in for huggingface_hub's tqdm bar: qwenjson reports progress itself."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _HashingSink:
    """The file object handed to huggingface_hub's ``http_get``: hashes and reports each chunk."""

    def __init__(
        self,
        f: IO[bytes],
        path: Path,
        hasher: Any,
        done: int,
        total: int | None,
        progress: ProgressCallback | None,
    ) -> None:
        self._f = f
        self._path = path
        self.hasher = hasher
        self.done = done
        self._total = total
        self._progress = progress

    def write(self, chunk: bytes) -> int:
        n = self._f.write(chunk)
        self.hasher.update(chunk)
        self.done += len(chunk)
        if self._progress is not None:
            self._progress(self.done, self._total)
        return n

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        # http_get rewinds when a server ignores our Range header and sends the whole file:
        # start the hash again over whatever prefix is kept (in practice, nothing).
        self._f.flush()
        keep = self._f.truncate(size)
        self.hasher = _hash_prefix(self._path, keep)
        self.done = keep
        return keep

    def flush(self) -> None:
        self._f.flush()


def _check_space(directory: Path, needed: int | None) -> None:
    if needed is None or needed <= 0:
        return
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if free < needed + _DISK_MARGIN:
        raise ModelError(
            f"not enough disk space in {directory}: the download needs {format_size(needed)} "
            f"and {format_size(free)} is free; free some space, or point HF_HOME (or "
            "HF_HUB_CACHE) at a larger disk"
        )


def _disk_full(partial: Path, exc: OSError) -> ModelError:
    partial.unlink(missing_ok=True)
    return ModelError(
        f"the disk filled up while downloading to {partial.parent} ({exc.strerror}); "
        "the partial file was deleted. Free some space, or point HF_HOME (or HF_HUB_CACHE) at "
        "a larger disk, then run the command again"
    )


@contextlib.contextmanager
def _quiet_hf_download_log() -> Iterator[None]:
    """Drop huggingface_hub's download log lines while we download.

    It logs each in-flight retry ("Trying to resume download...") to stderr through its own
    handler; qwenjson reports the outcome itself, and a stray line would tear a progress bar
    and break "silence when stderr is not a terminal".
    """
    logger = logging.getLogger("huggingface_hub.file_download")

    def drop(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _fetch_into(
    url: str,
    partial: Path,
    size: int | None,
    headers: dict[str, str],
    progress: ProgressCallback | None,
) -> tuple[int, str, int]:
    """Append the rest of the file to ``partial``; return (bytes resumed from, sha256, bytes
    hashed: the kept prefix and those received)."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get

    try:
        resume = partial.stat().st_size if partial.exists() else 0
        if size is not None and resume > size:
            partial.unlink()
            resume = 0
        hasher = _hash_prefix(partial, resume) if resume else hashlib.sha256()
    except OSError as exc:  # a directory in its place, a partial file we may not read
        raise ModelError(
            f"cannot resume the download in {partial}: {exc.strerror or exc}; delete it to "
            "start over"
        ) from exc
    _check_space(partial.parent, None if size is None else size - resume)
    if progress is not None:
        progress(resume, size)
    try:
        with open(partial, "ab") as f, _quiet_hf_download_log():
            sink = _HashingSink(f, partial, hasher, resume, size, progress)
            http_get(
                url,
                cast(BinaryIO, sink),
                resume_size=resume,
                headers=headers,
                expected_size=size,
                tqdm_class=cast(Any, _SilentBar),
            )
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if resume and status == 416:
            # A range from the partial file's end is past the file's end: killed between the
            # last byte and the rename, with no size to tell (a mirror without X-Linked-Size),
            # the partial file holds all of it, or more. Its hash decides (the caller fetches
            # from zero on a wrong one); raising here failed every pull until the user found
            # and deleted the file.
            # The sink's counts: http_get's own retries may have written more since ``resume``
            # (then asked from there), or started over after a 200 (a new hasher).
            return resume, sink.hasher.hexdigest(), sink.done
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise _disk_full(partial, exc) from exc
        if exc.errno is None:
            # http_get's consistency check: the server sent fewer bytes than it announced,
            # or more than the file has (a CDN answering a Range request with the whole file).
            got = partial.stat().st_size if partial.exists() else 0
            # With no size to compare (a mirror without X-Linked-Size), a resumed download
            # whose bytes don't add up may be a whole file after the kept prefix: the once
            # more from zero that a known size would get (the partial file was left bigger
            # than the file, and only the next run's 416 repaired it).
            if (got > size) if size is not None else resume > 0:
                partial.unlink(missing_ok=True)
                raise _TooLong(resume) from exc
            done, whole = format_size(got), format_size(size)
            if done == whole:  # "60.0 MB of 60.0 MB": a few bytes short
                done, whole = f"{got:,} bytes", f"{size:,}" if size is not None else "?"
            raise ModelError(
                f"the download stopped at {done} of {whole}; run the command again to resume it"
            ) from exc
        raise ModelError(f"cannot write {partial}: {exc.strerror or exc}") from exc
    return resume, sink.hasher.hexdigest(), sink.done


class _TooLong(Exception):
    """The server sent more bytes than the file has; the partial file is deleted."""

    def __init__(self, resumed: int) -> None:
        super().__init__(resumed)
        self.resumed = resumed


def _fetch_from_zero_once_more(
    url: str,
    partial: Path,
    size: int | None,
    headers: dict[str, str],
    progress: ProgressCallback | None,
    label: str,
) -> tuple[int, str, int]:
    """``_fetch_into`` for a download whose resume went wrong, ``partial`` deleted: a server
    that sends too much from zero too is an error."""
    partial.unlink(missing_ok=True)
    try:
        return _fetch_into(url, partial, size, headers, progress)
    except _TooLong as exc:
        raise ModelError(
            f"the server sent more than the {format_size(size)} of {label}; the partial "
            "download was deleted. Try again later, or check HF_ENDPOINT and proxies"
        ) from exc


def _download_blob(
    url: str,
    blob: Path,
    expected: str,
    size: int | None,
    headers: dict[str, str],
    progress: ProgressCallback | None,
    label: str,
) -> None:
    partial = _partial_path(blob)
    try:
        resumed, digest, hashed = _fetch_into(url, partial, size, headers, progress)
    except _TooLong:
        # A resume the server answered with the whole file (206 and every byte from 0):
        # once more from zero, which needs no Range.
        resumed, digest, hashed = _fetch_from_zero_once_more(
            url, partial, size, headers, progress, label
        )
    if digest != expected and resumed:
        # The kept prefix may itself be bad (a previous server sent wrong bytes): once more
        # from zero before calling the download corrupt.
        resumed, digest, hashed = _fetch_from_zero_once_more(
            url, partial, size, headers, progress, label
        )
    if digest != expected:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"checksum mismatch for {label}: expected sha256 {expected}, the download has "
            f"{digest}. The file was deleted and will not be used; try again, and if it "
            "persists the file served is not the one its sha256 names (the registry's pin, else "
            "the hub's own)"
        )
    # On disk before it is named: a power cut after the rename must not leave a verified
    # name over lost bytes (its record is trusted for a week, an SD card in a Pi).
    try:
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
            stored = os.fstat(f.fileno()).st_size
        # The hash is of the bytes received; the file is what was written to the name. Where
        # locks don't hold (NFS, FUSE), another process may have written to it too: a 50 MB
        # file verified for 25 MB of bytes. Its size is checked before it is trusted, against
        # the bytes hashed (the file's size may be unknown: a mirror without X-Linked-Size).
        if stored != hashed:
            partial.unlink(missing_ok=True)
            raise ModelError(
                f"the download of {label} was stored as {stored:,} bytes, not {hashed:,} (another "
                "process writing the same file? a network filesystem whose locks don't hold): "
                "deleted; try again"
            )
        os.replace(partial, blob)
    except OSError as exc:
        raise ModelError(f"cannot store the download as {blob}: {exc.strerror or exc}") from exc
    _remember_verified(blob, expected)
