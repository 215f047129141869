"""The library: ``qwenjson.extract(text, schema)`` for Python callers.

It takes what Python users hold (a dict, a schema file, the concise syntax, or a Pydantic model
class) and runs the text through the same ``Plan`` and ``Runner`` as the command line::

    from pydantic import BaseModel
    class Person(BaseModel):
        name: str
        age: int
    person = extract("李明，28岁。", Person, model="path/to/model.gguf")   # a Person
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

from qwenjson.errors import NoValidOutputError, QwenJsonWarning, UsageError
from qwenjson.generation import Generator
from qwenjson.jsontypes import is_number
from qwenjson.pipeline import DEFAULT_CTX, ExtractOptions, check_sizes, open_model
from qwenjson.plan import RecordOptions, plan_for, prepare_job, schema_of
from qwenjson.runner import Limits, Runner

__all__ = ["extract"]

_RECORD_OPTIONS = {"each", "truncate", "chunks", "chunk_tokens", "chunk_overlap"}


def extract(
    text: str,
    schema: Any,
    *,
    model: str | Path | Generator | None = None,
    offline: bool = False,
    threads: int | None = None,
    timeout: float | None = None,
    n_ctx: int | None = None,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> Any:
    """Extract what ``schema`` describes from ``text`` and return it, validated.

    ``schema``: a dict, a schema file path, inline JSON or concise text (``"name, age int"``),
    or a class with ``model_json_schema()`` and ``model_validate()`` (a Pydantic model; qwenjson
    doesn't depend on Pydantic): then an instance of that class is returned. ``model``: a
    registry name (default ``qwen2.5-0.5b-instruct``), a path to a .gguf, ``hf:REPO/FILE``, or a
    ready ``Generator`` (kept open). Keyword arguments: ``ExtractOptions`` fields (``retries``,
    ``evidence``, ``instruction``, …) and ``each``, ``truncate``, ``chunks``, ``chunk_tokens``,
    ``chunk_overlap`` as on the command line; ``timeout`` in seconds; ``n_ctx``: the context
    size in tokens of the model extract opens (default 4096, as ``--ctx``); ``cache_dir``: keep
    the evaluated prompt prefix (system message and schema) there, so that the next call, in
    this process or another, skips it (as ``--cache-dir``; off by default here: a library call
    writes nothing it wasn't asked to).

    With ``each=True`` the result is the list of items. With ``evidence=True`` it is
    ``{"data": …, "evidence": …, "confidence": …}`` (as ``--evidence`` prints; with ``each``,
    one per item), ``data`` an instance of the class when one was given. Raises a
    ``QwenJsonError`` subclass on failure.
    """
    if not isinstance(text, str):
        raise UsageError(f"text must be a str, not {type(text).__name__}")
    if not (model is None or isinstance(model, str | Path) or _is_generator(model)):
        raise UsageError(
            "model must be a registry name, a .gguf path, hf:REPO/FILE or an open Engine, "
            f"not {type(model).__name__}"
        )
    check_call_options(threads, timeout, offline, n_ctx)
    if _is_generator(model) and (
        threads is not None or offline or n_ctx is not None or cache_dir is not None
    ):
        raise UsageError(
            "threads, offline, n_ctx and cache_dir are for a model extract opens: an open Engine "
            "keeps its own"
        )
    cache = _cache_path(cache_dir)
    schema_value, cls = schema_of(schema)
    opts, record = split_options(options)
    job = prepare_job(schema_value, each=record.each)  # schema errors before loading a model
    # The default max_tokens too, as --max-tokens' default against --ctx: with n_ctx=512 it was
    # an InputError calling a 10-character text too long.
    if model is None or isinstance(model, str | Path):
        size = DEFAULT_CTX if n_ctx is None else n_ctx
        check_room(opts.max_tokens, size, "or raise n_ctx")  # before the model loads
        generator = open_model(model, offline=offline, threads=threads, n_ctx=size, cache_dir=cache)
        try:
            return _run(text, schema_value, job, generator, opts, record, timeout, cls)
        finally:
            generator.close()
    check_room(opts.max_tokens, model.n_ctx, "or open an Engine with a larger n_ctx")
    return _run(text, schema_value, job, model, opts, record, timeout, cls)


def _cache_path(cache_dir: Any) -> Path | None:
    """``cache_dir`` as a path, checked as --cache-dir is (an empty one is a UsageError: "" or
    an unset variable would otherwise be the current directory)."""
    if cache_dir is None:
        return None
    if not isinstance(cache_dir, str | Path) or not str(cache_dir):
        raise UsageError(f"cache_dir must be a non-empty path, not {cache_dir!r}")
    return Path(cache_dir)


def check_room(max_tokens: int, n_ctx: int, larger: str) -> None:
    """As --max-tokens is checked against --ctx: a ``max_tokens`` that leaves the prompt no
    room is a UsageError (it was an InputError saying to cut the text in pieces,
    which it already was); ``larger`` says how to get a larger context."""
    if max_tokens >= n_ctx:
        raise UsageError(
            f"max_tokens {max_tokens} leaves no room in a context of {n_ctx} tokens for the "
            f"prompt and the text: lower it, {larger}"
        )


def check_call_options(
    threads: int | None, timeout: float | None, offline: bool, n_ctx: int | None = None
) -> None:
    """UsageError unless ``threads``, ``timeout``, ``offline`` and ``n_ctx`` are what --threads,
    --timeout, --offline and --ctx allow (``extract`` and ``extract_many`` take them alike)."""
    check_sizes(DEFAULT_CTX if n_ctx is None else n_ctx, threads=threads)
    if timeout is not None and not (is_number(timeout) and timeout > 0):
        raise UsageError(f"timeout must be a number of seconds above 0, not {timeout!r}")
    # Not merely truthy: offline="no" would be taken as True, and a run meant to download
    # would fail with "not in the cache".
    if not isinstance(offline, bool):
        raise UsageError(f"offline must be True or False, not {offline!r}")


def split_options(options: dict[str, Any]) -> tuple[ExtractOptions, RecordOptions]:
    """Keyword arguments as ``ExtractOptions`` and ``RecordOptions`` (UsageError for others)."""
    known = {f.name for f in dataclasses.fields(ExtractOptions)} | _RECORD_OPTIONS
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(
            f"unknown option(s) {', '.join(unknown)}; the options are {', '.join(sorted(known))}"
        )
    if options.get("keep_empty") is True and "abstain_below" in options:
        # As --abstain-below with --keep-empty: the threshold would be ignored.
        raise UsageError("abstain_below can't be used with keep_empty (it keeps every value)")
    record = RecordOptions(**{k: v for k, v in options.items() if k in _RECORD_OPTIONS})
    opts = ExtractOptions(**{k: v for k, v in options.items() if k not in _RECORD_OPTIONS})
    return opts, record


def _instance(cls: Any, data: Any) -> Any:
    try:
        return cls.model_validate(data)
    except ValueError:
        from_json = getattr(cls, "model_validate_json", None)
        # Not past a class's own model_validate: its refusal is the class's word.
        if not callable(from_json) or not _pydantics_own(cls, "model_validate"):
            raise
    # Refused in both modes, JSON mode's error is the one said: the document is JSON, and
    # Python mode's list has a strict model's type errors ("should be a valid date") beside
    # the real one.
    return from_json(json.dumps(data, ensure_ascii=False))


def _pydantics_own(cls: Any, name: str) -> bool:
    """Whether ``cls`` has ``name`` from Pydantic itself, not from a class of the caller's."""
    owner = next((c for c in getattr(cls, "__mro__", ()) if name in vars(c)), None)
    return owner is not None and owner.__module__.split(".")[0] == "pydantic"


def _is_generator(model: Any) -> bool:
    return all(hasattr(model, name) for name in ("generate", "n_ctx", "count_tokens"))


def _run(
    text: str,
    schema: Any,
    job: Any,
    generator: Generator,
    options: ExtractOptions,
    record: RecordOptions,
    timeout: float | None,
    cls: Any,
) -> Any:
    plan = plan_for(schema, generator, options, record, job=job)
    emitted: list[Any] = []
    said: list[str] = []
    Runner(plan, generator, Limits(timeout=timeout)).run(
        text, lambda line: emitted.append(json.loads(line)), notice=said.append
    )
    for message in said:
        # At the caller's line (extract -> _run -> warn): what the command line says on stderr.
        warnings.warn(message, QwenJsonWarning, stacklevel=3)
    if record.each:
        return [shaped(item, cls, options.evidence) for item in emitted]
    return shaped(emitted[-1], cls, options.evidence)


def shaped(value: Any, cls: Any, evidence: bool) -> Any:
    """``value`` as the caller's class, when one was given: ``model_validate``, and where that
    refuses it, ``model_validate_json`` of its JSON text (a strict model refuses in Python mode
    what JSON spells as text or a list: an Enum, a date, a tuple). Python mode first, so that a
    lax model's unions (``date | str``) and an overridden ``model_validate`` give what they
    always gave."""
    if cls is None:
        return value
    try:
        if evidence:
            return {**value, "data": _instance(cls, value["data"])}
        return _instance(cls, value)
    # ValueError: pydantic's ValidationError (a validator the schema doesn't carry); TypeError
    # and AssertionError: a validator's own, which pydantic lets through.
    except (ValueError, TypeError, AssertionError) as e:
        raise NoValidOutputError(
            f"the document is valid for the schema, but {cls.__name__} refused it: "
            + " ".join(str(e).split())
        ) from e
