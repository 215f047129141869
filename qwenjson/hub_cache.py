"""The model cache on disk: where files are (huggingface_hub's ``blobs/``, ``snapshots/``
layout), the GGUF header check, sha256 verification and the records that spare re-hashing
(see ``qwenjson.hub`` for the guarantees)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qwenjson.errors import ModelError
from qwenjson.registry import ModelSpec

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
    """The hub to talk to: HF_ENDPOINT, else huggingface.co. A value that is not an http(s)
    URL is a ModelError here, before huggingface_hub (which parses it when imported) sees it."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT
    try:
        parts = urlsplit(endpoint)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a port that isn't a number
    except ValueError:
        usable = False
    if not usable:
        raise ModelError(
            f"HF_ENDPOINT={endpoint!r} is not an http(s) URL of a hub "
            "(e.g. https://huggingface.co or http://127.0.0.1:8080); fix or unset it"
        )
    return endpoint


# huggingface_hub reads these as whole numbers when it is imported: another value raised
# ValueError from inside its lazy importer, which also printed a line on stdout (exit 1, and junk
# in `$(qwenjson pull)`).
_WHOLE_SECONDS_ENV = ("HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")


def check_hub_environment() -> None:
    """Refuse, as a ModelError naming the variable, the settings huggingface_hub would crash on
    (a timeout that isn't a whole number, a token no HTTP header can carry), before it is
    imported."""
    env = os.environ
    for name in _WHOLE_SECONDS_ENV:
        value = env.get(name)
        if value is None:
            continue
        try:
            negative = int(value) < 0
        except ValueError:
            negative = True
        if negative:  # -1 too: "Timeout value out of range" from inside huggingface_hub
            raise ModelError(
                f"{name}={value!r} is not a whole number of seconds (0 or more); fix or unset it"
            ) from None
    # huggingface_hub's own order and cleaning (line breaks taken out, blanks stripped).
    name = "HF_TOKEN" if env.get("HF_TOKEN") else "HUGGING_FACE_HUB_TOKEN"
    token = (env.get(name) or "").replace("\r", "").replace("\n", "").strip()
    if any(not " " <= c <= "~" for c in token):
        # Not the token itself in the message: it is a secret.
        raise ModelError(
            f"{name} holds a character no HTTP header can carry (only printable ASCII); "
            "copy the token again from the hub's settings page, or unset it"
        )


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
    # Only a speed cache: a part of another shape is as if it weren't there (`"files": null`
    # made every command exit 1 until someone found the file and deleted it).
    for part in ("files", "hub"):
        if not isinstance(data.get(part), dict):
            data[part] = {}
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
        and _seconds_since(record.get("checked_at")) < _RECHECK_SECONDS
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


def _seconds_since(checked_at: Any) -> float:
    """Seconds since a record's ``checked_at``; infinite for one that isn't a past time."""
    if not isinstance(checked_at, int | float) or isinstance(checked_at, bool):
        return math.inf
    age = time.time() - checked_at
    return age if age >= 0 else math.inf


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
    pointer = snapshot_path(storage, commit, spec)
    return pointer if pointer.is_file() else None


def snapshot_path(storage: Path, commit: str, spec: ModelSpec) -> Path:
    """Where the cache links ``spec``'s file at ``commit`` (``commit``: 40 hex digits)."""
    return storage / "snapshots" / commit / Path(*spec.file.split("/"))


def another_blob(path: Path, pinned: str | None) -> bool:
    """Whether ``path`` links a blob named by a sha256 other than ``pinned``: another file,
    told without hashing it (the branch's file at another commit). False where the cache holds
    copies, not links (their names tell nothing: they are hashed)."""
    if not pinned:
        return False
    try:
        name = path.resolve().name
    except OSError:
        return False
    return _SHA256_RE.fullmatch(name) is not None and name != pinned


def _pinned_copy(
    spec: ModelSpec, cache: Path, *, recheck: bool = False, skip: Path | None = None
) -> Path | None:
    """A verified copy of a file the registry pins by sha256, in any snapshot of its repo,
    the newest first; None for an entry without a pin.

    The branch's ref in the cache moves with any file of the repo pulled later (a second
    model, an `hf download`, the file at another revision), so its snapshot may lack this file
    or hold another version of it: a sha256 names one file, so a copy that verifies against
    it is the answer wherever it is. Without a pin nothing tells which revision a copy was
    for, so none is taken (another revision's file would be run as this one). ``skip``: the
    branch's own copy, judged already; ``recheck``: hash each again (an explicit pull)."""
    if not spec.sha256:
        return None
    name = Path(*spec.file.split("/"))
    try:
        snapshots = list((_storage_dir(cache, spec.repo) / "snapshots").iterdir())
    except OSError:
        return None
    held = sorted((s / name for s in snapshots if (s / name).is_file()), key=_mtime, reverse=True)
    # (Two snapshots may link one blob: the one judged is not asked again under another name.)
    judged = skip.resolve() if skip is not None else None
    for path in held:
        if path.resolve() == judged or another_blob(path, spec.sha256):
            continue  # (each run would hash it again: a mismatch isn't remembered)
        if _matches(path, spec.sha256, spec.size, recheck=recheck):
            return path
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


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


def _partial_path(blob: Path) -> Path:
    """Where the download of ``blob`` grows until it is verified (and renamed to ``blob``)."""
    return blob.with_name(blob.name + ".incomplete")


def _discard(pointer: Path, blobs: Path) -> None:
    """Delete the snapshot entry ``pointer`` and the blob it links to, when that blob is in
    ``blobs``: a link a user made to a file of theirs elsewhere takes only the link."""
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    if blob != pointer and blob.parent == blobs.resolve():
        blob.unlink(missing_ok=True)


def _link_snapshot(storage: Path, blob: Path, spec: ModelSpec, commit: str) -> Path:
    """Create refs/ and snapshots/ entries for a verified blob, as huggingface_hub lays them out."""
    pointer = snapshot_path(storage, commit, spec)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if not (pointer.is_file() and pointer.resolve() == blob.resolve()):
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
    # The branch moves last: a pull killed before this point leaves it on the older commit,
    # whose verified file offline runs still find.
    if spec.revision != commit:
        ref = storage / "refs" / spec.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=ref.parent, prefix=".ref.")
        with os.fdopen(fd, "w") as f:
            f.write(commit)
        os.replace(tmp, ref)
    return pointer
