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
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from qwenjson.errors import ModelError
from qwenjson.hub_cache import (
    _COMMIT_RE,
    _SHA256_RE,
    _cached_pointer,
    _discard,
    _expected_sha,
    _file_key,
    _hub_key,
    _link_snapshot,
    _load_state,
    _matches,
    _partial_path,
    _pinned_copy,
    _remember_verified,
    _save_state,
    _storage_dir,
    another_blob,
    check_gguf,
    check_hub_environment,
    format_size,
    hub_cache_dir,
    hub_endpoint,
    offline_requested,
    sha256_file,
    snapshot_path,
)
from qwenjson.hub_download import ProgressCallback, _download_blob
from qwenjson.registry import ModelSpec, load_registry, resolve_model

# What a hub's ETag for a file is: the sha256 of an LFS file, the git blob sha1 of another.
_ETAG_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


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


__all__ = [
    "ProgressCallback",
    "check_gguf",
    "ensure_model",
    "file_sha256",
    "format_size",
    "hub_cache_dir",
    "local_path",
    "partial_bytes",
    "pull",
]


def local_path(spec: ModelSpec) -> Path | None:
    """The cached, verified file for ``spec``, or None. Never touches the network."""
    cache = hub_cache_dir()
    pointer = _cached_pointer(spec, cache)
    if pointer is None:
        return _pinned_copy(spec, cache)
    expected = _expected_sha(spec, pointer, cache)
    if (
        another_blob(pointer, spec.sha256)
        or expected is None
        or not _matches(pointer, expected, spec.size)
    ):
        return _pinned_copy(spec, cache, skip=pointer)
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


class HubUnavailable(ModelError):
    """The hub could not be reached, or answered with a server error (5xx) or "too many
    requests": worth trying again later, and no reason to doubt a verified cached copy."""


def _is_network_error(exc: BaseException) -> bool:
    # httpx / httpx2 / requests depending on the huggingface_hub version: match by module.
    module = type(exc).__module__.split(".")[0]
    return module in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


def _server_name(response: object, endpoint: str) -> str:
    """Who answered: the file itself often comes from another host (the hub's CDN)."""
    try:
        parts = urlsplit(str(getattr(response, "url", "")))
    except (RuntimeError, ValueError):  # httpx: a response with no request has no URL
        parts = None
    if parts is not None and parts.netloc and parts.netloc != urlsplit(endpoint).netloc:
        return f"{parts.scheme}://{parts.netloc} (serving files for {endpoint})"
    return f"the hub at {endpoint}"


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
        response = exc.response
        status = response.status_code if response is not None else None
        server = _server_name(response, endpoint)
        transient = status is not None and (status >= 500 or status == 429)
        advice = (
            "try again later (an interrupted download resumes where it stopped)"
            if transient
            else "check HF_ENDPOINT, proxies and the registry entry"  # a 404 won't go away
        )
        raise (HubUnavailable if transient else ModelError)(
            f"{server} answered HTTP {status or '?'} while fetching {what}; {advice}"
        ) from exc
    except OfflineModeIsEnabled as exc:
        raise ModelError(
            f"cannot download {what}: HF_HUB_OFFLINE was set when qwenjson started"
        ) from exc
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise HubUnavailable(
            f"cannot reach the hub at {endpoint} to download {what}: {exc or type(exc).__name__}. "
            "Check the network (or HF_ENDPOINT); an interrupted download resumes where it stopped"
        ) from exc


def pull(
    spec: ModelSpec,
    *,
    offline: bool = False,
    progress: ProgressCallback | None = None,
    refresh: bool = False,
    notice: Callable[[str], None] | None = None,
) -> Path:
    """Return the verified local file for ``spec``, downloading it if needed and allowed.

    A verified cached file is returned without touching the network, unless ``refresh`` asks
    to check a branch revision (like ``main``) for a newer file; a pinned commit never changes.
    When that check can't be made (no network, a server error), the cached file is the answer
    and ``notice`` is told why. ``progress(done_bytes, total_bytes)`` is called as bytes
    arrive (never when cached).
    Raises ModelError on 404/5xx/network failures, checksum mismatch, a full disk, or when
    offline (``offline`` or HF_HUB_OFFLINE=1) and the file is not cached.
    """
    cache = hub_cache_dir()
    pointer = _cached_pointer(spec, cache)
    corrupt: Path | None = None
    current: Path | None = None  # a verified copy of a branch's file, checked for a newer one
    # (A branch file linked to another sha256's blob is no copy of ours, nor a damaged one.)
    if pointer is not None and not another_blob(pointer, spec.sha256):
        expected = _expected_sha(spec, pointer, cache)
        # An explicit refresh (`qwenjson pull`) hashes the file again whatever the record says.
        if expected is not None and _matches(pointer, expected, spec.size, recheck=refresh):
            # A commit never changes, nor does a file the registry pins by sha256 (a hub serving
            # another is refused): a verified copy is the answer, with no hub to ask (a pinned
            # entry on `main` failed `pull` once upstream moved, or the network blinked).
            pinned = _COMMIT_RE.fullmatch(spec.revision) is not None or bool(spec.sha256)
            if not refresh or pinned or offline_requested(offline):
                return pointer
            current = pointer
        else:
            corrupt = pointer
    # The branch's snapshot lacks the pinned file, or holds another version of it: a copy
    # verified elsewhere is this one (and the other is no corrupt file of ours to delete).
    if (other := _pinned_copy(spec, cache, recheck=refresh, skip=pointer)) is not None:
        return other
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
    check_hub_environment()
    endpoint = hub_endpoint()
    try:
        with _hub_errors(spec, endpoint):
            return _pull_online(spec, cache, endpoint, corrupt, progress)
    except HubUnavailable as exc:
        # As huggingface_hub does: a cron job's `pull && extract` must not fail on a network
        # blip when the file it would use is here and verified.
        if current is None:
            raise
        if notice is not None:
            notice(f"could not check for a newer {spec.file} ({exc}); using the verified copy")
        return current


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
    # Both name files and folders in the cache: a mirror's header is no path to write to or
    # delete (an ETag of "../../x" put the download there, or deleted x when the bytes were
    # wrong), whatever sha256 the registry pins.
    etag, commit = meta.etag.lower(), meta.commit_hash.lower()
    if not _ETAG_RE.fullmatch(etag) or not _COMMIT_RE.fullmatch(commit):
        raise ModelError(
            f"{endpoint} answered for {spec.file} with an ETag {meta.etag[:80]!r} or a commit "
            f"{meta.commit_hash[:80]!r} that is not a hash; check HF_ENDPOINT (a hub or mirror "
            "names files by their sha and commits by 40 hex digits)"
        )
    if _COMMIT_RE.fullmatch(spec.revision) and commit != spec.revision:
        raise ModelError(
            f"asked for {spec.file} at commit {spec.revision}, {endpoint} answered with commit "
            f"{commit}; nothing was downloaded"
        )
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
    if meta.size is not None and meta.size < 0:
        raise ModelError(
            f"{endpoint} answered for {spec.file} with a size of {meta.size} bytes; check "
            "HF_ENDPOINT, proxies and firewalls"
        )
    size = meta.size if meta.size is not None else spec.size

    storage = _storage_dir(cache, spec.repo)
    # Name the blob like huggingface_hub does (by ETag) so its own tools find it.
    blob = storage / "blobs" / etag
    lock = cache / ".locks" / storage.name / f"{etag}.lock"
    if corrupt is None and (here := _up_to_date(storage, spec, commit, blob, expected, size)):
        # The hub's file is the one here (a branch checked for a newer one): nothing to write,
        # so no lock either (a read-only cache in a container image failed here).
        if spec.sha256 is None:
            _save_state(lambda data: data["hub"].__setitem__(_hub_key(spec, commit), expected))
        return here
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
        # Judged corrupt before the lock: another pull may have repaired it meanwhile (two
        # cron jobs after a weekly recheck), and its good copy must not be deleted. Hashed
        # again, not looked up: bit rot leaves the record of the good file standing.
        if (
            corrupt is not None
            and corrupt.exists()
            and not _matches(corrupt, expected, size, recheck=True)
        ):
            _discard(corrupt, blob.parent)
        if blob.exists() and not _matches(blob, expected, size):
            try:
                blob.unlink()
            except OSError as exc:  # a directory in its place
                raise ModelError(
                    f"cannot replace {blob} in the model cache: {exc.strerror or exc}; "
                    "delete it and try again"
                ) from exc
        if not blob.exists():
            _download_blob(download_url, blob, expected, size, headers, progress, label)
        try:
            pointer = _link_snapshot(storage, blob, spec, commit)
        except OSError as exc:
            raise ModelError(
                f"downloaded and verified {label}, but cannot link it into {storage}: "
                f"{exc.strerror or exc}"
            ) from exc
    if spec.sha256 is None:
        key = _hub_key(spec, commit)
        _save_state(lambda data: data["hub"].__setitem__(key, expected))
    return pointer


def _up_to_date(
    storage: Path, spec: ModelSpec, commit: str, blob: Path, expected: str, size: int | None
) -> Path | None:
    """The snapshot entry of ``commit``'s file when the cache holds it verified, linked and
    named by the branch; else None."""
    pointer = snapshot_path(storage, commit, spec)
    try:
        ref = storage / "refs" / spec.revision
        if spec.revision != commit and ref.read_text(encoding="ascii").strip() != commit:
            return None
        linked = pointer.is_file() and pointer.resolve() == blob.resolve()
    except (OSError, ValueError):
        return None
    return pointer if linked and _matches(blob, expected, size) else None


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
            # After Timeout, which is an OSError too: a cache another user owns, a read-only disk.
            except OSError as exc:
                raise ModelError(
                    f"cannot lock {lock} to download the model: {exc.strerror or exc}; the "
                    "model cache must be writable to download (or point HF_HUB_CACHE at a "
                    "writable directory)"
                ) from exc
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
