"""The model registry: names in ``models.toml`` mapped to GGUF files on the Hugging Face hub.

The built-in registry ships inside the package (``qwenjson/models.toml`` in the wheel; the
repository's top-level ``models.toml`` in a checkout). A user's own file, named by
``QWENJSON_MODELS_FILE``, is merged over it: an entry there replaces the built-in entry of the
same name as a whole (mixing one entry's repo with another's sha256 could only fail later).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from qwenjson.errors import ModelError

DEFAULT_MODEL = "qwen2.5-0.5b-instruct"
MODELS_FILE_ENV = "QWENJSON_MODELS_FILE"

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_TOML_LINE_RE = re.compile(r"\(at line (\d+), column (\d+)\)")
_TOML_END_RE = re.compile(r"\(at end of document\)")

# Each known field and the Python type its TOML value must have.
_FIELDS: dict[str, type] = {
    "repo": str,
    "file": str,
    "revision": str,
    "sha256": str,
    "size": int,
    "quant": str,
    "context": int,
    "license": str,
    "description": str,
}
_REQUIRED = ("repo", "file")


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model: where it lives on the hub and how to check it.

    ``sha256`` is None when no trusted hash is known in advance; ``pull`` then trusts the hash
    the hub reports for the file and records it. ``origin`` says which registry file (or
    ``hf:`` reference) the entry came from, for messages.
    """

    name: str
    repo: str
    file: str
    revision: str = "main"
    sha256: str | None = None
    size: int | None = None
    quant: str = ""
    context: int | None = None
    license: str = ""
    description: str = ""
    origin: str = ""


@dataclass(frozen=True)
class ModelRef:
    """What a ``--model`` value names: a local file, or a spec to fetch from the hub."""

    kind: Literal["path", "registry", "hf"]
    path: Path | None = None
    spec: ModelSpec | None = None


def builtin_registry_text() -> tuple[str, str]:
    """Return (text, display path) of the built-in ``models.toml``.

    From an installed wheel it is the packaged ``qwenjson/models.toml``; from a checkout or an
    editable install it is the repository's top-level file.
    """
    packaged = resources.files("qwenjson") / "models.toml"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8"), str(packaged)
    checkout = Path(__file__).resolve().parent.parent / "models.toml"
    try:
        return checkout.read_text(encoding="utf-8"), str(checkout)
    except OSError as exc:
        raise ModelError(
            f"the built-in model registry is missing ({checkout}: {exc.strerror}); "
            "reinstall qwenjson"
        ) from exc


def parse_registry(
    text: str, source: str, unusable: list[str] | None = None
) -> dict[str, ModelSpec]:
    """Parse registry TOML text; errors name ``source`` and the line. An entry whose name
    ``--model`` can't name is left out, and said in ``unusable``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _TOML_LINE_RE.search(message)
        if m:
            line = m.group(1)
            message = _TOML_LINE_RE.sub("", message).strip()
        else:
            line = str(text.count("\n") + 1) if _TOML_END_RE.search(message) else "?"
            message = _TOML_END_RE.sub("", message).strip()
        raise ModelError(f"{source}:{line}: malformed model registry: {message}") from exc

    specs: dict[str, ModelSpec] = {}
    for name, entry in data.items():
        line = _table_line(text, name)
        where = f"{source}:{line}" if line else source
        if _looks_like_path(name) or name.startswith("hf:") or name != name.strip() or not name:
            # --model reads such a name as a file or an hf: reference (or strips it), never as
            # this entry. Left out rather than refused: the file's other entries, and the
            # built-in ones, still work for a job that never named this one.
            if unusable is not None:
                unusable.append(
                    f"{where}: {name!r} can't be a model name (--model would read it as a path "
                    "or an hf: reference): no '/', '.gguf' at the end, '.' or '~' first, 'hf:' "
                    "or blanks around it; left out"
                )
            continue  # (before its fields are checked: a broken entry left out breaks nothing)
        if not isinstance(entry, dict):
            raise ModelError(
                f"{where}: {name!r} must be a table of model fields, like "
                f'["{name}"] followed by repo = "…" and file = "…"'
            )
        if "repo" not in entry and entry and all(isinstance(v, dict) for v in entry.values()):
            # A bare [qwen2.5-x] header is a dotted key: TOML splits it at the dot.
            raise ModelError(
                f"{where}: table {name!r} has no 'repo' but nested tables: "
                'model names containing dots must be quoted, like ["qwen2.5-0.5b-instruct"]'
            )
        specs[name] = _spec_from_table(name, entry, text, source, where)
    return specs


def _spec_from_table(
    name: str, entry: dict[str, Any], text: str, source: str, where: str
) -> ModelSpec:
    for key, value in entry.items():
        key_where = _key_where(text, source, name, key) or where
        expected = _FIELDS.get(key)
        if expected is None:
            close = difflib.get_close_matches(key, list(_FIELDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(
                f"{key_where}: model {name!r}: unknown field {key!r}{hint}; "
                f"known fields: {', '.join(_FIELDS)}"
            )
        # bool is an int subclass in Python, but `size = true` is a mistake, not a size.
        if not isinstance(value, expected) or isinstance(value, bool):
            kind = "an integer" if expected is int else "a string"
            raise ModelError(f"{key_where}: model {name!r}: {key!r} must be {kind}, not {value!r}")
    for key in _REQUIRED:
        if not entry.get(key):
            raise ModelError(f"{where}: model {name!r} has no {key!r} (it is required)")

    def fail(key: str, message: str) -> ModelError:
        return ModelError(
            f"{_key_where(text, source, name, key) or where}: model {name!r}: {message}"
        )

    repo = entry["repo"]
    if not _REPO_RE.fullmatch(repo):
        raise fail("repo", f"repo must be a Hugging Face repo id like 'owner/name', not {repo!r}")
    file = entry["file"]
    if not file.lower().endswith(".gguf") or file.startswith("/") or ".." in file.split("/"):
        raise fail(
            "file", f"file must be a relative path to a .gguf file in the repo, not {file!r}"
        )
    sha = entry.get("sha256", "").strip().lower()
    if sha and not _SHA256_RE.fullmatch(sha):
        raise fail("sha256", f'sha256 must be 64 hex digits (or "" if unknown), not {sha!r}')
    size = entry.get("size")
    if size is not None and size <= 0:
        raise fail("size", f"size must be a positive number of bytes, not {size}")
    context = entry.get("context")
    if context is not None and context <= 0:
        raise fail("context", f"context must be a positive number of tokens, not {context}")
    revision = entry.get("revision", "").strip() or "main"
    if not _valid_revision(revision):
        raise fail("revision", f"revision must be a commit, branch or tag name, not {revision!r}")
    return ModelSpec(
        name=name,
        repo=repo,
        file=file,
        revision=revision,
        sha256=sha or None,
        size=size,
        quant=entry.get("quant", ""),
        context=context,
        license=entry.get("license", ""),
        description=entry.get("description", ""),
        origin=source,
    )


def _valid_revision(revision: str) -> bool:
    # A branch may contain "/" (refs/pr/1); nothing may climb out of the cache's refs/ folder.
    return bool(_REVISION_RE.fullmatch(revision)) and ".." not in revision.split("/")


def _header_names(line: str) -> str | None:
    """The table name a ``[...]`` header line opens, unquoted, or None."""
    m = re.match(r"\s*\[\s*(.+?)\s*\]\s*(#.*)?$", line)
    if not m or line.lstrip().startswith("[["):
        return None
    raw = m.group(1)
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return raw


def _table_line(text: str, name: str) -> int | None:
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if _header_names(line) == name:
            return number
    # A dotted bare header ([qwen2.5-x]) opens table "qwen2" with sub-tables.
    for number, line in enumerate(lines, start=1):
        header = _header_names(line)
        if header is not None and header.startswith(name + "."):
            return number
    return None


def _key_where(text: str, source: str, table: str, key: str) -> str | None:
    start = _table_line(text, table)
    if start is None:
        return None
    lines = text.splitlines()
    for number in range(start + 1, len(lines) + 1):
        line = lines[number - 1]
        if _header_names(line) is not None:
            break
        if re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return f"{source}:{number}"
    return None


def load_registry(unusable: list[str] | None = None) -> dict[str, ModelSpec]:
    """The built-in registry merged with the file named by ``QWENJSON_MODELS_FILE``, if set
    (entries no ``--model`` can name are left out, and said in ``unusable``)."""
    text, source = builtin_registry_text()
    registry = parse_registry(text, source)
    user_file = os.environ.get(MODELS_FILE_ENV, "").strip()
    if user_file:
        path = Path(user_file).expanduser()
        try:
            user_text = path.read_text(encoding="utf-8-sig")  # a BOM, as a schema file may have
        except FileNotFoundError as exc:
            raise ModelError(f"{MODELS_FILE_ENV}={user_file}: no such file") from exc
        except UnicodeDecodeError as exc:
            raise ModelError(f"{path}: the model registry is not UTF-8 text") from exc
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the model registry: {exc.strerror}") from exc
        registry.update(parse_registry(user_text, str(path), unusable))
    return registry


def closest_name(name: str, known: list[str]) -> str | None:
    """The known name most like ``name``, if any is close enough to suggest.

    Ranked by: one name being a prefix of the other ("qwen2.5-1.5b" → "…-instruct"), then the
    share of the typed words found in the name ("qwen-coder"), then difflib's similarity
    (typos).
    """
    typed = name.strip().lower()
    words = [w for w in re.split(r"[-_.\s]+", typed) if w]

    def score(candidate: str) -> tuple[bool, float, float]:
        lowered = candidate.lower()
        prefix = bool(typed) and (lowered.startswith(typed) or typed.startswith(lowered))
        found = sum(1 for w in words if w in lowered) / len(words) if words else 0.0
        return prefix, found, difflib.SequenceMatcher(None, typed, lowered).ratio()

    if not known:
        return None
    best = max(known, key=score)
    prefix, found, ratio = score(best)
    return best if prefix or found >= 0.75 or ratio >= 0.6 else None


def parse_hf_ref(ref: str) -> ModelSpec:
    """Turn ``hf:OWNER/REPO/PATH/FILE.gguf[@REVISION]`` into a spec with no pinned sha256."""
    body = ref[len("hf:") :]
    revision = "main"
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    parts = [p for p in body.split("/") if p]
    usage = "expected hf:OWNER/REPO/FILE.gguf, optionally followed by @REVISION"
    if len(parts) < 3 or not revision:
        raise ModelError(f"bad model reference {ref!r}: {usage}")
    repo = "/".join(parts[:2])
    file = "/".join(parts[2:])
    bad_file = not file.lower().endswith(".gguf") or ".." in parts
    if not _REPO_RE.fullmatch(repo) or bad_file or not _valid_revision(revision):
        raise ModelError(f"bad model reference {ref!r}: {usage}")
    return ModelSpec(name=ref, repo=repo, file=file, revision=revision, origin="command line")


def _looks_like_path(ref: str) -> bool:
    return (
        ref.lower().endswith(".gguf") or "/" in ref or os.sep in ref or ref.startswith(("~", "."))
    )


def resolve_model(ref: str) -> ModelRef:
    """Resolve a ``--model`` value: a registry name, a path to a .gguf, or ``hf:REPO/FILE``."""
    ref = ref.strip()
    if not ref:
        raise ModelError("empty model name: give a registry name, a .gguf path or hf:REPO/FILE")
    if "\0" in ref:  # (a path with it can't be opened: ValueError, not an error of ours)
        raise ModelError(f"the model name {ref!r} holds a NUL character")
    if ref.startswith("hf:"):
        return ModelRef(kind="hf", spec=parse_hf_ref(ref))
    if _looks_like_path(ref):
        return ModelRef(kind="path", path=Path(ref).expanduser())
    registry = load_registry()
    spec = registry.get(ref)
    if spec is None:
        # Names are case-insensitive when that is unambiguous: Qwen2.5-0.5B-Instruct works.
        folded = [s for n, s in registry.items() if n.lower() == ref.lower()]
        spec = folded[0] if len(folded) == 1 else None
    if spec is not None:
        return ModelRef(kind="registry", spec=spec)
    if Path(ref).is_file():
        return ModelRef(kind="path", path=Path(ref))
    raise unknown_model_error(ref, registry)


def unknown_model_error(name: str, registry: dict[str, ModelSpec]) -> ModelError:
    """The error for a name that is not in the registry: known names and the closest match."""
    known = sorted(registry)
    close = closest_name(name, known)
    hint = f"; did you mean {close!r}?" if close else ""
    return ModelError(
        f"unknown model {name!r}{hint}\n"
        f"known models: {', '.join(known)}\n"
        "(--model also takes a path to a .gguf file, or hf:OWNER/REPO/FILE.gguf; "
        f"add your own names in a file named by {MODELS_FILE_ENV})"
    )
