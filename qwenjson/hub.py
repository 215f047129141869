"""Model files from the Hugging Face hub: verified, resumable, safe to run twice at once.

Files land in the standard huggingface_hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``) in its usual ``blobs/``, ``snapshots/``, ``refs/`` layout, so other
tools see them. Environment variables are read at call time, not import time, so a library user
(or a test) can change ``HF_ENDPOINT``, ``HF_HOME`` or ``HF_HUB_OFFLINE`` between calls.

How a download stays trustworthy:

- The bytes go to ``blobs/<sha256>.incomplete`` and are hashed while they stream in. Only a file
  whose sha256 matches (the registry's pin, else the LFS object id the hub reports) is renamed
  to ``blobs/<sha256>`` and linked from ``snapshots/``; a mismatch deletes it.
- An interrupted download (dropped connection, Ctrl-C, a killed cron job) leaves the
  ``.incomplete`` file; the next attempt continues from its end with an HTTP Range request.
  huggingface_hub 2.x itself no longer resumes across processes, hence our own partial file.
- Two processes pulling the same file serialize on huggingface_hub's own lock file for that
  blob; the second finds the verified blob and reuses it.
- A run whose model is cached never imports huggingface_hub (about 0.4 s of startup here) and
  never touches the network; only a download does.
- Cached files are re-verified on use. A sha256 of a 500 MB file costs half a second here and
  more on a Pi, so the result is remembered in ``verified.json`` (in ``QWENJSON_CACHE_DIR``,
  default ``~/.cache/qwenjson``) keyed by path, size, mtime and inode: any change to the file
  re-hashes. Bit rot changes bytes but not mtime, so a record also expires after a week, and an
  explicit ``qwenjson pull`` always hashes again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, cast
from urllib.parse import urlsplit

from qwenjson.errors import ModelError
from qwenjson.registry import ModelSpec, load_registry, resolve_model

ProgressCallback = Callable[[int, int | None], None]

GGUF_MAGIC = b"GGUF"
DEFAULT_ENDPOINT = "https://huggingface.co"
CACHE_DIR_ENV = "QWENJSON_CACHE_DIR"

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "ON", "YES", "TRUE"}
_HASH_BLOCK = 1 << 20
# Room to leave free beyond the download itself, so a full disk doesn't take the system down.
_DISK_MARGIN = 32 << 20
_RECHECK_SECONDS = 7 * 24 * 3600


# -- where things are -------------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """The huggingface_hub cache directory, honouring HF_HUB_CACHE and HF_HOME now."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(os.path.expandvars(env[var])).expanduser()
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(env["HF_HOME"])).expanduser() / "hub"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "huggingface" / "hub"


def hub_endpoint() -> str:
    """The hub to talk to: HF_ENDPOINT, else huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT


def offline_requested(offline: bool = False) -> bool:
    """True when downloads are off: ``offline`` or HF_HUB_OFFLINE=1 in the environment."""
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def state_dir() -> Path:
    """qwenjson's own cache directory (verification records)."""
    env = os.environ
    if env.get(CACHE_DIR_ENV):
        return Path(env[CACHE_DIR_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "qwenjson"


def _storage_dir(cache: Path, repo: str) -> Path:
    # huggingface_hub's layout: models--OWNER--NAME
    return cache / ("models--" + repo.replace("/", "--"))


def format_size(n: int | None) -> str:
    """Bytes for people, in decimal units as the hub's pages and Rich's bar show them.

    491400032 → '491.4 MB'.
    """
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    size = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            break
    return f"{size:.1f} {unit}"


# -- the GGUF check ---------------------------------------------------------------------------


def check_gguf(path: Path) -> None:
    """Raise ModelError unless ``path`` is a readable file starting with the GGUF magic."""
    try:
        # Before opening: opening a FIFO blocks until someone writes to it.
        if not stat.S_ISREG(os.stat(path).st_mode) and not path.is_dir():
            raise ModelError(f"{path} is not a regular file (a FIFO, a device?), not a .gguf")
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError as exc:
        raise ModelError(f"model file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ModelError(f"{path} is a directory, not a .gguf model file") from exc
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if head[:4] == GGUF_MAGIC:
        return
    if not head:
        raise ModelError(f"{path} is empty, not a GGUF model file")
    if head.startswith(b"version https://git-lfs"):
        raise ModelError(
            f"{path} is a Git LFS pointer, not the model itself: fetch the real file "
            "(git lfs pull), or use a registry name and let qwenjson download it"
        )
    raise ModelError(
        f"{path} is not a GGUF model file (it starts with {head[:4]!r}, not b'GGUF'); "
        "qwenjson runs llama.cpp GGUF models such as qwen2.5-0.5b-instruct-q4_k_m.gguf"
    )


# -- verification records ---------------------------------------------------------------------


def _state_file() -> Path:
    return state_dir() / "verified.json"


def _load_state() -> dict[str, Any]:
    try:
        data = json.loads(_state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"files": {}, "hub": {}}
    if not isinstance(data, dict):
        return {"files": {}, "hub": {}}
    data.setdefault("files", {})
    data.setdefault("hub", {})
    return data


def _save_state(update: Callable[[dict[str, Any]], None]) -> None:
    # Read-modify-write with an atomic replace. A lost update between two processes only costs
    # a re-hash later, never a wrong answer, and an unwritable cache dir only costs speed.
    try:
        path = _state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load_state()
        update(data)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".verified.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def _file_key(path: Path) -> tuple[str, dict[str, int]]:
    real = path.resolve()
    st = real.stat()
    return str(real), {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _remember_verified(path: Path, sha256: str) -> None:
    key, ident = _file_key(path)
    entry = {**ident, "sha256": sha256, "checked_at": int(time.time())}
    _save_state(lambda data: data["files"].__setitem__(key, entry))


def _hub_key(spec: ModelSpec, commit: str) -> str:
    return f"{spec.repo}/{spec.file}@{commit}"


def _hash_prefix(path: Path, limit: int | None = None) -> Any:
    """A sha256 object fed with the file's first ``limit`` bytes (all of them by default)."""
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            block = f.read(_HASH_BLOCK if remaining is None else min(_HASH_BLOCK, remaining))
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
    return h


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's contents."""
    return str(_hash_prefix(path).hexdigest())


def file_sha256(path: Path) -> str:
    """The sha256 of a file, remembered by path, size, mtime and inode (``verified.json``), so
    a model is hashed once, not on every run: 0.67 s for a 491 MB GGUF here (2 cores, load 4).

    A verified download is already remembered. It names a model in a job's fingerprint
    (``qwenjson.plan``) and its prompt-prefix cache (``qwenjson.kvcache``).
    """
    key, ident = _file_key(path)
    record = _load_state()["files"].get(key)
    if isinstance(record, dict) and all(record.get(k) == v for k, v in ident.items()):
        sha = record.get("sha256")
        if isinstance(sha, str) and _SHA256_RE.fullmatch(sha):
            return sha
    sha = sha256_file(path)
    _remember_verified(path, sha)
    return sha


def _matches(path: Path, expected: str, size: int | None, *, recheck: bool = False) -> bool:
    """True if the file's sha256 is ``expected``.

    A remembered result stands while the file's size, mtime and inode are unchanged, for at
    most a week: bit rot (an SD card in a Pi) changes bytes without touching mtime, so every
    file is hashed again now and then. ``recheck`` always hashes.
    """
    try:
        key, ident = _file_key(path)
    except OSError:
        return False
    if size is not None and ident["size"] != size:
        return False
    record = _load_state()["files"].get(key)
    if (
        not recheck
        and isinstance(record, dict)
        and record.get("sha256") == expected
        and all(record.get(k) == v for k, v in ident.items())
        and 0 <= time.time() - float(record.get("checked_at", 0)) < _RECHECK_SECONDS
    ):
        return True
    try:
        actual = sha256_file(path)
    except OSError:
        return False
    if actual != expected:
        return False
    _remember_verified(path, actual)
    return True


# -- the cache --------------------------------------------------------------------------------


def _cached_pointer(spec: ModelSpec, cache: Path) -> Path | None:
    """The cached file for ``spec``'s revision, as huggingface_hub's cache lays it out.

    Read with pathlib rather than huggingface_hub's ``try_to_load_from_cache``: importing
    huggingface_hub costs about 0.4 s here, paid on every run that only needs a cached model.
    """
    storage = _storage_dir(cache, spec.repo)
    commit = spec.revision
    if not _COMMIT_RE.fullmatch(commit):
        try:
            commit = (storage / "refs" / spec.revision).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not _COMMIT_RE.fullmatch(commit):
            return None
    pointer = storage / "snapshots" / commit / Path(*spec.file.split("/"))
    return pointer if pointer.is_file() else None


def _expected_sha(spec: ModelSpec, pointer: Path, cache: Path) -> str | None:
    """The sha256 a cached file must have: the registry's pin, else what the hub reported."""
    if spec.sha256:
        return spec.sha256
    snapshots = _storage_dir(cache, spec.repo) / "snapshots"
    try:
        commit = pointer.relative_to(snapshots).parts[0]
    except ValueError:
        commit = ""
    recorded = _load_state()["hub"].get(_hub_key(spec, commit))
    if isinstance(recorded, str) and _SHA256_RE.fullmatch(recorded):
        return recorded
    # The blob's name is the LFS object id the hub reported when it was downloaded.
    blob_name = pointer.resolve().name
    return blob_name if _SHA256_RE.fullmatch(blob_name) else None


def local_path(spec: ModelSpec) -> Path | None:
    """The cached, verified file for ``spec``, or None. Never touches the network."""
    cache = hub_cache_dir()
    pointer = _cached_pointer(spec, cache)
    if pointer is None:
        return None
    expected = _expected_sha(spec, pointer, cache)
    if expected is None or not _matches(pointer, expected, spec.size):
        return None
    return pointer


def partial_bytes(spec: ModelSpec) -> int | None:
    """Bytes of an interrupted download of ``spec`` (resumed by the next pull), or None."""
    if spec.sha256 is None:
        return None  # the partial file is named by a sha256 the hub gives at download time
    partial = _partial_path(_storage_dir(hub_cache_dir(), spec.repo) / "blobs" / spec.sha256)
    try:
        return partial.stat().st_size
    except OSError:
        return None


def _partial_path(blob: Path) -> Path:
    """Where the download of ``blob`` grows until it is verified (and renamed to ``blob``)."""
    return blob.with_name(blob.name + ".incomplete")


def _discard(pointer: Path) -> None:
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    if blob != pointer:
        blob.unlink(missing_ok=True)


def _link_snapshot(storage: Path, blob: Path, spec: ModelSpec, commit: str) -> Path:
    """Create refs/ and snapshots/ entries for a verified blob, as huggingface_hub lays them out."""
    pointer = storage / "snapshots" / commit / Path(*spec.file.split("/"))
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if spec.revision != commit:
        ref = storage / "refs" / spec.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=ref.parent, prefix=".ref.")
        with os.fdopen(fd, "w") as f:
            f.write(commit)
        os.replace(tmp, ref)
    if pointer.is_file() and pointer.resolve() == blob.resolve():
        return pointer
    pointer.unlink(missing_ok=True)
    tmp_link = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp_link.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), tmp_link)
    except OSError:
        # No symlinks (Windows without developer mode): a hard link, else a copy.
        try:
            os.link(blob, tmp_link)
        except OSError:
            shutil.copyfile(blob, tmp_link)
    os.replace(tmp_link, pointer)
    return pointer


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
) -> tuple[int, str]:
    """Append the rest of the file to ``partial``; return (bytes resumed from, sha256)."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get

    resume = partial.stat().st_size if partial.exists() else 0
    if size is not None and resume > size:
        partial.unlink()
        resume = 0
    _check_space(partial.parent, None if size is None else size - resume)
    hasher = _hash_prefix(partial, resume) if resume else hashlib.sha256()
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
    except HfHubHTTPError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise _disk_full(partial, exc) from exc
        if exc.errno is None:
            # http_get's consistency check: the server sent fewer bytes than it announced.
            got = partial.stat().st_size if partial.exists() else 0
            raise ModelError(
                f"the download stopped at {format_size(got)} of {format_size(size)}; "
                "run the command again to resume it"
            ) from exc
        raise ModelError(f"cannot write {partial}: {exc.strerror or exc}") from exc
    return resume, sink.hasher.hexdigest()


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
    resumed, digest = _fetch_into(url, partial, size, headers, progress)
    if digest != expected and resumed:
        # The kept prefix may itself be bad (a previous server sent wrong bytes): once more
        # from zero before calling the download corrupt.
        partial.unlink(missing_ok=True)
        resumed, digest = _fetch_into(url, partial, size, headers, progress)
    if digest != expected:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"checksum mismatch for {label}: expected sha256 {expected}, the download has "
            f"{digest}. The file was deleted and will not be used; try again, and if it "
            "persists the file on the hub differs from the one the registry pins"
        )
    os.replace(partial, blob)
    _remember_verified(blob, expected)


def _is_network_error(exc: BaseException) -> bool:
    # httpx / httpx2 / requests depending on the huggingface_hub version: match by module.
    module = type(exc).__module__.split(".")[0]
    return module in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


@contextlib.contextmanager
def _hub_errors(spec: ModelSpec, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into one clear ModelError."""
    from huggingface_hub.errors import (
        EntryNotFoundError,  # RemoteEntryNotFoundError's base in 1.x+, the class itself before
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{spec.file} from {spec.repo} (revision {spec.revision})"
    try:
        yield
    except ModelError:
        raise
    except GatedRepoError as exc:
        raise ModelError(
            f"{spec.repo} is gated: accept its terms at {endpoint}/{spec.repo} and set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelError(
            f"repository {spec.repo} not found at {endpoint} (if it is private, set HF_TOKEN)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelError(
            f"revision {spec.revision} not found in {spec.repo} at {endpoint}"
        ) from exc
    except EntryNotFoundError as exc:
        raise ModelError(
            f"file {spec.file} not found in {spec.repo} at revision {spec.revision} ({endpoint})"
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise ModelError(
            f"the hub at {endpoint} answered HTTP {status} while fetching {what}; "
            "try again later (a partial download is kept and resumes)"
        ) from exc
    except OfflineModeIsEnabled as exc:
        raise ModelError(
            f"cannot download {what}: HF_HUB_OFFLINE was set when qwenjson started"
        ) from exc
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise ModelError(
            f"cannot reach the hub at {endpoint} to download {what}: {exc or type(exc).__name__}. "
            "Check the network (or HF_ENDPOINT); a partial download is kept and resumes"
        ) from exc


def pull(
    spec: ModelSpec,
    *,
    offline: bool = False,
    progress: ProgressCallback | None = None,
    refresh: bool = False,
) -> Path:
    """Return the verified local file for ``spec``, downloading it if needed and allowed.

    A verified cached file is returned without touching the network, unless ``refresh`` asks
    to check a branch revision (like ``main``) for a newer file; a pinned commit never changes.
    ``progress(done_bytes, total_bytes)`` is called as bytes arrive (never when cached).
    Raises ModelError on 404/5xx/network failures, checksum mismatch, a full disk, or when
    offline (``offline`` or HF_HUB_OFFLINE=1) and the file is not cached.
    """
    cache = hub_cache_dir()
    pointer = _cached_pointer(spec, cache)
    corrupt: Path | None = None
    if pointer is not None:
        expected = _expected_sha(spec, pointer, cache)
        # An explicit refresh (`qwenjson pull`) hashes the file again whatever the record says.
        if expected is not None and _matches(pointer, expected, spec.size, recheck=refresh):
            pinned = _COMMIT_RE.fullmatch(spec.revision) is not None
            if not refresh or pinned or offline_requested(offline):
                return pointer
        else:
            corrupt = pointer
    if offline_requested(offline):
        by_env = offline_requested(False)
        why = "HF_HUB_OFFLINE=1 is set" if by_env else "--offline"
        online = "with network access" + (" and HF_HUB_OFFLINE unset" if by_env else "")
        if corrupt is not None:
            raise ModelError(
                f"the cached file {corrupt} for model {spec.name!r} fails verification "
                f"(sha256 or size differs) and downloads are off ({why}); run "
                f"`qwenjson pull {spec.name}` {online} to download it again"
            )
        raise ModelError(
            f"model {spec.name!r} is not downloaded, and downloads are off ({why}); run "
            f"`qwenjson pull {spec.name}` once {online} (it saves {spec.file} under {cache})"
        )
    endpoint = hub_endpoint()
    with _hub_errors(spec, endpoint):
        return _pull_online(spec, cache, endpoint, corrupt, progress)


def _pull_online(
    spec: ModelSpec,
    cache: Path,
    endpoint: str,
    corrupt: Path | None,
    progress: ProgressCallback | None,
) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    # Public names of huggingface_hub.utils, exported lazily (hence invisible to mypy).
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    url = hf_hub_url(spec.repo, spec.file, revision=spec.revision, endpoint=endpoint)
    meta = get_hf_file_metadata(url, endpoint=endpoint)
    if not meta.commit_hash or not meta.etag:
        raise ModelError(
            f"{endpoint} did not answer like a Hugging Face hub for {spec.file} (no commit or "
            "ETag header); check HF_ENDPOINT, proxies and firewalls"
        )
    etag = meta.etag.lower()
    hub_sha = etag if _SHA256_RE.fullmatch(etag) else None
    label = f"{spec.file} from {spec.repo}"
    if spec.sha256 and hub_sha and hub_sha != spec.sha256:
        raise ModelError(
            f"the hub serves a different {label} than the registry pins: sha256 {hub_sha}, "
            f"expected {spec.sha256} (revision {spec.revision}); nothing was downloaded"
        )
    if spec.size is not None and meta.size is not None and meta.size != spec.size:
        raise ModelError(
            f"the hub serves a different {label} than the registry pins: {meta.size} bytes, "
            f"expected {spec.size}; nothing was downloaded"
        )
    expected = spec.sha256 or hub_sha
    if expected is None:
        raise ModelError(
            f"the hub reports no sha256 for {label} (not a Git LFS file?), so it can't be "
            "verified; give its sha256 in a registry entry (QWENJSON_MODELS_FILE)"
        )
    size = meta.size if meta.size is not None else spec.size

    storage = _storage_dir(cache, spec.repo)
    # Name the blob like huggingface_hub does (by ETag) so its own tools find it.
    blob = storage / "blobs" / etag
    lock = cache / ".locks" / storage.name / f"{etag}.lock"
    try:
        blob.parent.mkdir(parents=True, exist_ok=True)
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache in {cache}: {exc.strerror}") from exc

    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"  # sizes and Range offsets must be of the raw file
    download_url = meta.location or url
    if urlsplit(download_url).netloc != urlsplit(endpoint).netloc:
        headers.pop("authorization", None)  # never hand the token to a CDN

    with _lock_showing_progress(lock, blob, size, progress):
        if corrupt is not None and corrupt.exists():
            _discard(corrupt)
        if blob.exists() and not _matches(blob, expected, size):
            blob.unlink()
        if not blob.exists():
            _download_blob(download_url, blob, expected, size, headers, progress, label)
        try:
            pointer = _link_snapshot(storage, blob, spec, meta.commit_hash)
        except OSError as exc:
            raise ModelError(
                f"downloaded and verified {label}, but cannot link it into {storage}: "
                f"{exc.strerror or exc}"
            ) from exc
    if spec.sha256 is None:
        key = _hub_key(spec, meta.commit_hash)
        _save_state(lambda data: data["hub"].__setitem__(key, expected))
    return pointer


@contextlib.contextmanager
def _lock_showing_progress(
    lock: Path, blob: Path, size: int | None, progress: ProgressCallback | None
) -> Iterator[None]:
    """Hold ``lock`` (huggingface_hub's own lock for the file); while another process holds it
    (downloading the same file), report that process's progress from the size of its partial
    file, so a second ``pull`` doesn't sit silent for minutes."""
    from filelock import Timeout  # a dependency of huggingface_hub

    # A public name of huggingface_hub.utils, exported lazily (hence invisible to mypy).
    from huggingface_hub.utils import WeakFileLock  # type: ignore[attr-defined]

    partial = _partial_path(blob)
    with contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(WeakFileLock(lock, timeout=0.5))
                break
            except Timeout:
                if progress is not None:
                    # OSError: the download hasn't started yet, or has finished (renamed).
                    with contextlib.suppress(OSError):
                        progress(partial.stat().st_size, size)
        yield


def _missing_file_hint(path: Path) -> None:
    """A missing file named like a registry model's file: point at the name that downloads it."""
    try:
        registry = load_registry()
    except ModelError:
        return
    names = sorted(n for n, spec in registry.items() if Path(spec.file).name == path.name)
    if names:
        raise ModelError(
            f"model file not found: {path}; to download {path.name}, use the registry name: "
            f"--model {names[0]}"
        )


def ensure_model(
    ref: str, *, offline: bool = False, progress: ProgressCallback | None = None
) -> Path:
    """The local GGUF for a ``--model`` value, pulling a registry or hf: model if needed."""
    resolved = resolve_model(ref)
    if resolved.path is not None:
        if not resolved.path.exists():
            _missing_file_hint(resolved.path)
        check_gguf(resolved.path)
        return resolved.path
    if resolved.spec is None:  # resolve_model always sets one of the two
        raise ModelError(f"cannot resolve model {ref!r}")
    path = pull(resolved.spec, offline=offline, progress=progress)
    check_gguf(path)
    return path
