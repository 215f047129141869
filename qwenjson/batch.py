"""Batches and budgets: JSONL records, ``--each`` item streams, timeouts, truncation, checkpoints.

One model and one ``Extractor`` serve every record (the engine keeps the KV state of the prompt
prefix the records share). Records are done strictly in input order; each one either writes its
output line(s) or fails on its own, and a checkpoint remembers how far the batch got::

    runner = RecordRunner(prepare_job(schema), generator, ExtractOptions(), RecordOptions())
    report = run_batch(lines, runner, BatchOptions(field="text"), output=LineOutput())

Library code: no terminal here; the CLI passes callbacks for errors, notices and progress.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

from jsonschema.protocols import Validator

from qwenjson import deadline, jsonstrict
from qwenjson.chunking import Piece
from qwenjson.errors import (
    EXIT_SOME_RECORDS_FAILED,
    InputError,
    NoValidOutputError,
    OutputError,
    QwenJsonError,
    SchemaError,
    TimeoutExpired,
    UsageError,
)
from qwenjson.generation import Generator, prompt_size
from qwenjson.merging import Found
from qwenjson.pieces import Output, PieceHooks, Plan, plan_pieces, run_pieces
from qwenjson.pipeline import Extraction, ExtractOptions, Extractor, PreparedSchema, prepare_schema
from qwenjson.stream import (
    FileMark,
    ItemScanner,
    LineOutput,
    file_mark,
    output_errors,
    signals_held,
)
from qwenjson.validate import Schema, drop_empty_strings, validation_errors

__all__ = [
    "BatchOptions",
    "BatchReport",
    "Checkpoint",
    "ErrorLog",
    "Job",
    "OnError",
    "RecordError",
    "RecordOptions",
    "RecordRunner",
    "SomeRecordsFailed",
    "TotalTimeoutExpired",
    "count_lines",
    "each_schema",
    "fit_to_context",
    "job_fingerprint",
    "parse_record",
    "prepare_job",
    "read_lines",
    "run_batch",
]

OnError = Literal["skip", "stop", "record"]
# 2: a record longer than the context logs its pieces as they are done (version 1 never did).
CHECKPOINT_VERSION = 2
Truncate = Literal["head", "tail"]
Notice = Callable[[str], None]
TextCallback = Callable[[str], None]


class SomeRecordsFailed(QwenJsonError):
    """A batch finished, but at least one record failed (each was reported on its own)."""

    exit_code = EXIT_SOME_RECORDS_FAILED

    def __init__(self, message: str, report: BatchReport) -> None:
        super().__init__(message)
        self.report = report


class TotalTimeoutExpired(TimeoutExpired):
    """``--total-timeout`` ran out: the whole run stops, not just the record in flight."""


class RecordFailed(QwenJsonError):
    """One record's error, with its line number, keeping that error's exit code."""

    def __init__(self, line: int, error: QwenJsonError) -> None:
        super().__init__(f"line {line}: {error}")
        self.exit_code = error.exit_code
        self.line = line


# -- the schema for --each ------------------------------------------------------------------------

# Where the user's schema lands inside the wrapper, for rewriting its own `#…` references.
_ITEM_POINTER = "/properties/items/items"


def each_schema(schema: Schema) -> Schema:
    """``schema`` wrapped as ``{"items": [schema, …]}`` (required, nothing else allowed).

    Keywords that belong to the document root (``$schema``, ``$id``, ``$defs``/``definitions``)
    move to the wrapper's root, and the schema's own references into itself (``#``,
    ``#/properties/…``) are rewritten to point at where it now sits, so it means what it meant.
    The caller's schema is not changed.
    """
    from qwenjson.schema.dialect import dialect_of
    from qwenjson.schema.refs import subschemas

    item: Any = schema
    root: dict[str, Any] = {}
    if isinstance(schema, dict):
        item = copy.deepcopy(schema)
        id_key = dialect_of(schema).id_key
        for key in ("$schema", id_key, "$defs", "definitions"):
            if key in item:
                root[key] = item.pop(key)
        stack: list[Any] = [item]
        for key in ("$defs", "definitions"):
            if isinstance(root.get(key), dict):
                stack.extend(root[key].values())
        while stack:
            node = stack.pop()
            if not isinstance(node, dict):
                continue
            ref = node.get("$ref")
            if (
                isinstance(ref, str)
                and (ref == "#" or ref.startswith("#/"))
                and not ref.startswith(("#/$defs/", "#/definitions/"))
            ):
                node["$ref"] = "#" + _ITEM_POINTER + ref[1:]
            # A subschema with its own `$id` is another resource: its `#…` are its own.
            stack.extend(
                sub
                for _, sub in subschemas(node, "")
                if isinstance(sub, dict) and id_key not in sub
            )
    root.update(
        {
            "type": "object",
            "properties": {"items": {"type": "array", "items": item}},
            "required": ["items"],
            "additionalProperties": False,
        }
    )
    return root


@dataclass(frozen=True)
class Job:
    """The schema a run generates with, and with ``--each`` the schema of one item."""

    prepared: PreparedSchema
    item: PreparedSchema | None = None


def prepare_job(schema: Schema, *, each: bool = False) -> Job:
    """Check and compile the schema (and with ``each``, its ``{"items": […]}`` wrapper)."""
    if not each:
        return Job(prepare_schema(schema))
    # The user's schema first, so a problem is reported at the user's own JSON pointers.
    item = prepare_schema(schema)
    try:
        wrapped = prepare_schema(each_schema(schema))
    except SchemaError as e:
        raise SchemaError(f"--each: can't wrap the schema as a list of items: {e}") from e
    return Job(wrapped, item)


# -- one record ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordOptions:
    """Per-record knobs: list streaming, truncation and the time budget."""

    each: bool = False
    truncate: Truncate | None = None
    timeout: float | None = None  # seconds for one record (all its attempts)
    # A text longer than the context (or than ``chunk_tokens``) is extracted in overlapping
    # pieces and merged (``qwenjson.pieces``) unless ``chunks`` is off or ``truncate`` is set.
    chunks: bool = True
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None


def fit_to_context(
    extractor: Extractor, text: str, truncate: Truncate | None
) -> tuple[str, tuple[int, int] | None]:
    """``text``, cut by tokens to fit the context when ``truncate`` says which end to keep.

    Returns the text and, when it was cut, (tokens before, tokens after). Without ``truncate``
    a text that doesn't fit is an InputError with the token counts. A text far longer than the
    context is measured only as far as could be kept ("more than" so many tokens).
    """
    gen = extractor.generator
    budget_total = gen.n_ctx - extractor.options.max_tokens
    text, partial = _keepable_part(extractor, text, budget_total, truncate)
    size = prompt_size(gen, extractor.messages(text))
    if size <= budget_total:
        return text, None
    text_tokens = gen.count_tokens(text)
    if truncate is None:
        more = "more than " if partial else ""
        raise InputError(
            f"the input is too long: the prompt takes {more}{size} tokens (the text "
            f"{more}{text_tokens}) and "
            f"up to {extractor.options.max_tokens} more may be generated, but the context holds "
            f"{gen.n_ctx}; use --truncate head|tail, a larger --ctx or a smaller --max-tokens, "
            "or let it be extracted in pieces (without --no-chunks)"
        )
    budget = text_tokens - (size - budget_total)
    for _ in range(4):  # the cut text's tokens at the seam can differ a little: re-measure
        if budget < 1:
            break
        cut = _cut(gen, text, budget, truncate)
        over = prompt_size(gen, extractor.messages(cut)) - budget_total
        if over <= 0:
            return cut, (text_tokens, gen.count_tokens(cut))
        budget -= over
    raise InputError(
        f"the prompt takes {size - text_tokens} tokens without the text and up to "
        f"{extractor.options.max_tokens} more may be generated, but the context holds "
        f"{gen.n_ctx}: no room for the text; use a larger --ctx or a smaller --max-tokens"
    )


# A token is rarely longer than this many characters: a text longer than the context's tokens
# times this is first measured by the part that could be kept.
_CHARS_PER_TOKEN = 16


def _keepable_part(
    extractor: Extractor, text: str, budget: int, truncate: Truncate | None
) -> tuple[str, bool]:
    """The part of ``text`` worth tokenizing, and whether the rest was left off because that
    part alone is over ``budget`` (a 10 MB text took 12 s and 580 MB to tokenize whole)."""
    reach = max(budget, 1) * _CHARS_PER_TOKEN
    if len(text) <= reach:
        return text, False
    part = text[len(text) - reach :] if truncate == "tail" else text[:reach]
    # A prefix can tokenize a little differently at its end: a margin keeps the verdict sound.
    if prompt_size(extractor.generator, extractor.messages(part)) > budget + 16:
        return part, True
    return text, False  # unusually long tokens: measure it all


def _cut(gen: Generator, text: str, budget: int, keep: Truncate) -> str:
    """The longest head (or tail) of ``text`` that takes at most ``budget`` tokens."""

    def piece(n: int) -> str:
        return text[:n] if keep == "head" else text[len(text) - n :]

    lo, hi = 0, len(text)  # piece(lo) fits; find the largest n that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if gen.count_tokens(piece(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return piece(lo)


class RecordRunner:
    """Runs texts through one Extractor with truncation, timeouts and ``--each`` streaming."""

    def __init__(
        self,
        job: Job,
        generator: Generator,
        options: ExtractOptions | None = None,
        record: RecordOptions | None = None,
        *,
        total_timeout: float | None = None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.record = record or RecordOptions()
        if self.record.each and job.item is None:
            raise UsageError("--each needs a job prepared with prepare_job(schema, each=True)")
        options = options or ExtractOptions()
        self.keep_empty = options.keep_empty
        self.evidence = options.evidence
        if self.record.each and not self.evidence:
            # Items are printed as they close, empty members dropped item by item (_ItemStream);
            # the whole document stays as generated, to be compared with what was printed.
            options = replace(options, keep_empty=True)
        self.extractor = Extractor(job.prepared, generator, options)
        self.clock = clock
        self.total_timeout = total_timeout
        # --total-timeout counts from ``started`` (the CLI passes its own start, so that loading
        # the model counts too), else from now.
        self.started = clock() if started is None else started

    def check_total(self) -> None:
        """Raise TotalTimeoutExpired when ``--total-timeout`` has run out."""
        if self.total_timeout is not None and self.clock() - self.started > self.total_timeout:
            raise TotalTimeoutExpired(f"--total-timeout of {self.total_timeout:g}s ran out")

    def run(
        self,
        text: str,
        emit: Callable[[str], None],
        *,
        on_text: TextCallback | None = None,
        notice: Notice | None = None,
        pieces: PieceHooks | None = None,
        finished: Sequence[tuple[Piece, Found]] = (),
    ) -> Extraction:
        """Extract from ``text`` and ``emit`` the compact JSON: the document, or each item.

        With ``each``, items are emitted as they close (validated one by one); once one has
        been emitted, a failure of the document fails the record without a retry, and the
        items already emitted stay emitted. A text longer than the context is done in pieces
        (``qwenjson.pieces``): ``pieces`` hears of each, ``finished`` are those done before.
        """
        self.check_total()
        timeout = self.record.timeout
        # Kept by the clock on each token, and by an alarm in validation (a backtracking
        # pattern), which never gets there; the engine goes on with the next record.
        with deadline.budget(timeout, lambda: TimeoutExpired(f"--timeout of {timeout:g}s ran out")):
            return self._run(text, emit, on_text, notice, pieces, finished)

    def _run(
        self,
        text: str,
        emit: Callable[[str], None],
        on_text: TextCallback | None,
        notice: Notice | None,
        pieces: PieceHooks | None = None,
        finished: Sequence[tuple[Piece, Found]] = (),
    ) -> Extraction:
        started = self.clock()
        record = self.record
        if record.chunks and record.truncate is None:
            plan = plan_pieces(self.extractor, text, record.chunk_tokens, record.chunk_overlap)
            if plan is not None:
                return self._run_pieces(
                    text, plan, emit, started, on_text, notice, pieces, finished
                )
        text, cut = fit_to_context(self.extractor, text, self.record.truncate)
        if cut is not None and notice is not None:
            keep = self.record.truncate
            notice(f"input cut from {cut[0]} to {cut[1]} tokens (--truncate {keep})")
        # With --evidence the items are printed when the list is complete, each with its own
        # evidence: a value's source is known only once the whole document is annotated.
        streaming = self.record.each and not self.evidence
        stream = _ItemStream(self.job.item, emit, self.keep_empty) if streaming else None

        def watch(chunk: str) -> None:
            self._check_time(started)
            if stream is not None:
                stream.feed(chunk)
            if on_text is not None:
                on_text(chunk)

        result = self.extractor.run(text, on_text=watch)
        if stream is not None:
            stream.finish(result.data)
        elif self.record.each:
            for i, item in enumerate(result.data["items"]):
                emit(_compact(_item_evidence(result, i, item)))
        elif self.evidence:
            emit(_compact(result.with_evidence()))
        else:
            emit(result.json)
        return result

    def _run_pieces(
        self,
        text: str,
        plan: Plan,
        emit: Callable[[str], None],
        started: float,
        on_text: TextCallback | None,
        notice: Notice | None,
        pieces: PieceHooks | None,
        finished: Sequence[tuple[Piece, Found]],
    ) -> Extraction:
        """``text`` in pieces, merged; --require-evidence is applied to the merged result."""
        extractor = self.extractor
        # --require-evidence holds for the merged result; one object needs the confidences.
        wanted = replace(extractor.options, require_evidence=False)
        if not self.record.each:
            wanted = replace(wanted, evidence=True)
        if wanted != extractor.options:
            extractor = Extractor(self.job.prepared, extractor.generator, wanted)
        hooks = replace(pieces) if pieces is not None else PieceHooks()
        if hooks.notice is None:
            hooks.notice = notice

        def watch(chunk: str) -> None:
            self._check_time(started)
            if on_text is not None:
                on_text(chunk)

        hooks.on_text = watch
        output = Output(
            each=self.record.each,
            evidence=self.evidence,
            keep_empty=self.keep_empty,
            require_evidence=self.extractor.options.require_evidence,
            item=self.job.item.validator if self.job.item is not None else None,
        )
        return run_pieces(extractor, text, plan, emit, output, finished=finished, hooks=hooks)

    def _check_time(self, started: float) -> None:
        self.check_total()
        timeout = self.record.timeout
        if timeout is not None and self.clock() - started > timeout:
            raise TimeoutExpired(f"--timeout of {timeout:g}s ran out")


class _ItemStream:
    """Emits the items of generated ``{"items": […]}`` text as they close, validated one by one."""

    def __init__(
        self, item: PreparedSchema | None, emit: Callable[[str], None], keep_empty: bool = False
    ) -> None:
        assert item is not None
        self.validator: Validator = item.validator
        self.keep_empty = keep_empty
        self.emit = emit
        self.scanner = ItemScanner()
        self.printed: list[Any] = []
        self.attempt = 0
        self.index = 0  # items seen in the current attempt
        self.doomed = False  # an item of this attempt failed: it will be retried, print no more

    def feed(self, chunk: str) -> None:
        for raw in self.scanner.feed(chunk):
            if self.scanner.attempt != self.attempt:
                self._new_attempt()
            self._item(raw)
        if self.scanner.attempt != self.attempt:
            self._new_attempt()

    def _new_attempt(self) -> None:
        self.attempt = self.scanner.attempt
        self.index = 0
        self.doomed = False
        if self.printed:
            # Only reachable if a whole document failed although each item passed: never print
            # a second version of a list that is already partly out.
            raise NoValidOutputError(
                f"the list failed validation after {len(self.printed)} item(s) were printed"
            )

    def _item(self, raw: str) -> None:
        self.index += 1
        if self.doomed:
            return
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            self.doomed = True  # the grammar makes this impossible; the whole check decides
            return
        errors = validation_errors(value, self.validator)
        if not errors:
            self.printed.append(value)
            self._print(value)
            return
        if self.printed:
            raise NoValidOutputError(
                f"item {self.index} failed validation after {len(self.printed)} item(s) were "
                "printed (printed items are final, so there is no retry):",
                errors,
            )
        self.doomed = True  # nothing printed yet: let the attempt end and be retried

    def finish(self, data: Any) -> None:
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list) or items[: len(self.printed)] != self.printed:
            raise NoValidOutputError("the streamed items disagree with the final document")
        # Generators that don't stream text (or a tail the scanner hadn't closed yet).
        for value in items[len(self.printed) :]:
            self.printed.append(value)
            self._print(value)

    def _print(self, value: Any) -> None:
        shown = value if self.keep_empty else drop_empty_strings(value, self.validator)
        self.emit(_compact(shown))


def _item_evidence(result: Extraction, index: int, item: Any) -> dict[str, Any]:
    """``--each --evidence``: one item with its evidence, pointers relative to the item."""
    prefix = f"/items/{index}"

    def within(values: dict[str, Any]) -> dict[str, Any]:
        return {
            p[len(prefix) :]: v
            for p, v in values.items()
            if p == prefix or p.startswith(prefix + "/")
        }

    return {
        "data": item,
        "evidence": within(result.evidence),
        "confidence": within(result.confidence),
    }


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchOptions:
    """How input lines become records, and what a failed record does to the batch."""

    field: str | None = None  # the record is a JSON object; this field holds the text
    into: str = "extracted"  # with ``field``: the output key for the document
    on_error: OnError = "record"
    # Documents come as ``{"data", "evidence", "confidence"}``: with ``field`` the two maps go
    # beside the document, under their own keys.
    evidence: bool = False
    # One document, not JSONL (``extract --checkpoint`` without ``--jsonl``): the input is one
    # "line" (it may hold newlines), its failure is the run's, with its own exit code.
    document: bool = False
    pretty: bool = False  # with ``document``: the output indented


@dataclass(frozen=True)
class RecordError:
    """A failed record: its input line number (from 1), the reason and the exit code."""

    line: int
    error: str
    exit_code: int

    def to_json(self) -> str:
        """The error as one compact JSON object."""
        return json.dumps(
            {"line": self.line, "error": self.error, "exit_code": self.exit_code},
            ensure_ascii=False,
            separators=(",", ":"),
        )


def parse_record(
    raw: bytes, options: BatchOptions, *, first: bool = False
) -> tuple[str, Callable[[str], str]]:
    """The text of one input line, and how to shape an output line from a document's JSON.

    Raises InputError for an empty line, a line that isn't UTF-8, and with ``field`` a line
    that isn't a strict JSON object with that field holding a string (NaN, 1e400, a lone
    surrogate or a duplicate key would reach stdout as a line that isn't JSON, or not at all).
    """
    try:
        line = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from e
    if not line.strip():
        raise InputError("empty line")
    if options.field is None:
        return line, _indented if options.pretty else _same
    try:
        obj = jsonstrict.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"not a JSON object ({e.msg} at column {e.colno})") from e
    except jsonstrict.JsonValueError as e:
        raise InputError(f"not strict JSON: {e}") from e
    if not isinstance(obj, dict):
        raise InputError(f"not a JSON object (a {_json_type(obj)})")
    name, into = options.field, options.into
    if name not in obj:
        raise InputError(f"no field {name!r} in the record")
    text = obj[name]
    if not isinstance(text, str):
        raise InputError(f"field {name!r} is a {_json_type(text)}, not a string")
    if not text.strip():
        raise InputError(f"field {name!r} is empty")
    rest = {k: v for k, v in obj.items() if k != name}
    added = (into, "evidence", "confidence") if options.evidence else (into,)
    for key in added:
        if key in rest:
            raise InputError(f"the record already has a field {key!r}: choose another --into")

    def shape(document: str) -> str:
        if options.evidence:
            wrapped = json.loads(document)
            out = {**rest, into: wrapped["data"]}
            out |= {"evidence": wrapped["evidence"], "confidence": wrapped["confidence"]}
            return _compact(out)
        # The document is already compact JSON; splice it in rather than parse it again.
        head = json.dumps(rest, ensure_ascii=False, separators=(",", ":"))[:-1]
        sep = "," if rest else ""
        return f"{head}{sep}{json.dumps(into, ensure_ascii=False)}:{document}}}"

    return text, shape


def _same(document: str) -> str:
    return document


def _indented(document: str) -> str:
    return json.dumps(json.loads(document), ensure_ascii=False, indent=2)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def count_lines(fd: int) -> int | None:
    """Lines left to read in a regular file from its current offset (None for pipes)."""
    mark = file_mark(fd)
    if mark is None:
        return None
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    count, last = 0, b"\n"
    while offset < mark.size:
        block = os.pread(fd, 1 << 20, offset)
        if not block:
            break
        count += block.count(b"\n")
        last = block[-1:]
        offset += len(block)
    return count + (last != b"\n")


# The most qwenjson reads as one text (or one --jsonl line): far more than any context holds
# (a token is rarely more than 16 bytes), and a bound for `--input /dev/zero`.
MAX_INPUT_BYTES = 32 << 20


def _too_large(what: str) -> InputError:
    return InputError(
        f"{what} is larger than {MAX_INPUT_BYTES >> 20} MiB, the most qwenjson reads as one text"
    )


def read_bounded(stream: BinaryIO, what: str) -> bytes:
    """All of ``stream``, refused (InputError) past ``MAX_INPUT_BYTES``."""
    data = stream.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise _too_large(what)
    return data


def read_lines(stream: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    """Lines of a binary stream without their terminator (``\\n`` or ``\\r\\n``), lazily.

    A line longer than ``MAX_INPUT_BYTES`` is an InputError: the stream isn't JSONL.
    """
    readline = getattr(stream, "readline", None)
    lines = iter(lambda: readline(MAX_INPUT_BYTES + 1), b"") if readline else iter(stream)
    for line_no, raw in enumerate(lines, 1):
        if len(raw) > MAX_INPUT_BYTES:
            raise _too_large(f"line {line_no}")
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        yield raw


# -- errors and checkpoints ------------------------------------------------------------------------


class ErrorLog:
    """Where ``--on-error record`` writes failed records: a JSONL file, or a callback (stderr)."""

    def __init__(self, path: Path | None = None, show: Callable[[str], None] | None = None):
        self.path = path
        self.show = show
        self.fd: int | None = None
        if path is not None:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                raise UsageError(f"can't open --errors file {str(path)!r}: {e.strerror}") from e

    def write(self, error: RecordError) -> None:
        """Record one failed record (the caller holds signals); OutputError if that fails."""
        if self.fd is not None:
            with output_errors(f"the --errors file {str(self.path)!r}"):
                _write_all(self.fd, (error.to_json() + "\n").encode("utf-8"))
        elif self.show is not None:
            self.show(f"line {error.line}: {error.error}")

    def mark(self) -> FileMark | None:
        """The errors file and its size now (None when errors go to a callback)."""
        return file_mark(self.fd)

    def sync(self) -> None:
        """Make what was written durable before the checkpoint says so."""
        if self.fd is not None:
            _sync(self.fd)

    def close(self) -> None:
        """Close the errors file."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def job_fingerprint(parts: Mapping[str, Any]) -> str:
    """A digest of everything that decides a run's output (schema, model, options)."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class Resume:
    """Where a checkpointed batch stands: the last line done and what was recorded with it."""

    line: int = 0
    input_digest: str = ""
    failed: int = 0
    output: FileMark | None = None
    errors: FileMark | None = None
    # The input digest after each line 1, 2, …, 16 bytes each: a rerun on other input names the
    # first line that differs.
    digests: bytearray = field(default_factory=bytearray)
    # The pieces of the record after ``line`` that were done (a text longer than the context),
    # with their documents, and the input digest after that record.
    pieces: list[tuple[Piece, Found]] = field(default_factory=list)
    pieces_digest: str = ""

    def digest_at(self, line: int) -> str | None:
        """The recorded input digest after ``line``, if the checkpoint has it."""
        if line * 16 > len(self.digests):
            return None
        return self.digests[(line - 1) * 16 : line * 16].hex()


class Checkpoint:
    """An append-only, fsynced log of finished records, so a rerun resumes without duplicates.

    Line 1 names the job (``job_fingerprint``); each later line is one finished record: its
    input line number, a digest of the input up to it, the failures so far, and for regular
    output files their identity and size after the record's lines were written. On resume, a
    regular stdout (or errors file) that grew past the recorded size holds lines of the record
    that was in flight: they are cut off and the record is done again; one that shrank was
    truncated (``>`` instead of ``>>``) and the run refuses to continue. Through a pipe, a
    kill between writing a record and logging it repeats that one record.
    """

    def __init__(self, path: Path, job: str) -> None:
        self.path = path
        self.job = job
        self.fd: int | None = None

    def open(self) -> Resume:
        """Lock (or create) the checkpoint, refuse one from another job, return where to resume.

        The lock (``flock``, released by the kernel even after kill -9) keeps a second run of
        the same job, say a cron job that overran its interval, from writing alongside.
        """
        import fcntl

        name = str(self.path)
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UsageError(f"can't open --checkpoint {name!r}: {e.strerror}") from e
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise UsageError(
                f"--checkpoint {name!r} is in use by another qwenjson process"
            ) from None
        try:
            data = _read_all(self.fd)
        except OSError as e:
            raise UsageError(f"can't read --checkpoint {name!r}: {e.strerror}") from e
        complete = data[: data.rfind(b"\n") + 1]  # a kill mid-append leaves a partial last line
        lines = complete.splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if lines and (not isinstance(header, dict) or "qwenjson_checkpoint" not in header):
            raise UsageError(f"--checkpoint {name!r} is not a qwenjson checkpoint")
        version = header.get("qwenjson_checkpoint") if isinstance(header, dict) else None
        if lines and version not in (1, CHECKPOINT_VERSION):
            self.close()
            raise UsageError(
                f"--checkpoint {name!r} was written by another version of qwenjson: delete it "
                "to start over, or use another file"
            )
        if isinstance(header, dict) and header.get("job") != self.job:
            raise UsageError(
                f"--checkpoint {name!r} belongs to a different job (the schema, model or "
                "options differ): delete it to start over, or use another file"
            )
        resume = Resume()
        for number, line in enumerate(lines[1:], 2):
            try:
                entry = jsonstrict.loads(line)
                if "piece" in entry:
                    _resume_piece(resume, entry)
                    continue
                resume = Resume(
                    line=int(entry["line"]),
                    input_digest=str(entry["input"]),
                    failed=int(entry["failed"]),
                    output=_mark_from(entry.get("out")),
                    errors=_mark_from(entry.get("errors")),
                    digests=resume.digests,
                )
                if resume.line * 16 == len(resume.digests) + 16:
                    resume.digests += bytes.fromhex(resume.input_digest)
            except (ValueError, TypeError, KeyError) as e:  # JSONDecodeError is a ValueError
                self.close()  # nothing written: the file stays as it is
                raise UsageError(
                    f"--checkpoint {name!r} is damaged at line {number} ({type(e).__name__}: "
                    f"{e}): delete it to start over, or use another file"
                ) from e
        try:
            os.ftruncate(self.fd, len(complete))
            os.lseek(self.fd, 0, os.SEEK_END)
            if not lines:
                head = {"qwenjson_checkpoint": CHECKPOINT_VERSION, "job": self.job}
                _write_all(self.fd, (json.dumps(head) + "\n").encode())
                os.fsync(self.fd)
                _fsync_dir(self.path.parent)
        except OSError as e:
            raise UsageError(f"can't write --checkpoint {name!r}: {e.strerror}") from e
        return resume

    def commit(
        self,
        line: int,
        input_digest: str,
        failed: int,
        output: FileMark | None,
        errors: FileMark | None,
    ) -> None:
        """Log that ``line`` is finished (one write, then fsync)."""
        assert self.fd is not None
        entry = {
            "line": line,
            "input": input_digest,
            "failed": failed,
            "out": _mark_to(output),
            "errors": _mark_to(errors),
        }
        _write_all(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        os.fsync(self.fd)

    def commit_piece(
        self,
        line: int,
        input_digest: str,
        piece: Piece,
        found: Found,
        output: FileMark | None,
        errors: FileMark | None,
    ) -> None:
        """Log that ``piece`` of ``line`` is done, with its document (one write, then fsync).

        Its keys are not a record's: a version-1 reader refuses the file as damaged rather
        than take a piece for a finished record.
        """
        assert self.fd is not None
        entry = {
            "piece": piece.index,
            "of_line": line,
            "span": [piece.start, piece.end],
            "digest": input_digest,
            "found": found.to_json(),
            "out": _mark_to(output),
            "errors": _mark_to(errors),
        }
        # ASCII: a lone surrogate a model wrote as "\ud800" in a free string stays writable.
        _write_all(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the checkpoint file."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _resume_piece(resume: Resume, entry: Any) -> None:
    """Add a logged piece to ``resume`` (ValueError when it is not of the record in flight)."""
    of_line = int(entry["of_line"])
    if of_line != resume.line + 1:
        raise ValueError(f"a piece of line {of_line} after line {resume.line} was done")
    start, end = entry["span"]
    piece = Piece(int(entry["piece"]), int(start), int(end))
    resume.pieces.append((piece, Found.from_json(entry["found"])))
    resume.pieces_digest = str(entry["digest"])
    resume.output = _mark_from(entry.get("out"))
    resume.errors = _mark_from(entry.get("errors"))


def _mark_to(mark: FileMark | None) -> list[int] | None:
    return None if mark is None else [mark.device, mark.inode, mark.size]


def _mark_from(value: Any) -> FileMark | None:
    if not isinstance(value, list) or len(value) != 3:
        return None
    return FileMark(int(value[0]), int(value[1]), int(value[2]))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the file's own fsync still holds
    finally:
        os.close(fd)


def _reconcile(fd: int | None, recorded: FileMark | None, what: str) -> str | None:
    """Bring a regular output file back to its size at the last checkpoint; say what was done."""
    now = file_mark(fd)
    if fd is None or now is None or recorded is None or not now.same_file(recorded):
        return None  # a pipe, or a file other than the one checkpointed: nothing to undo
    if now.size < recorded.size:
        raise UsageError(
            f"{what} is the file the checkpoint wrote to, but it is shorter now ({now.size} < "
            f"{recorded.size} bytes): it was truncated (> instead of >>?); append with >> to "
            "resume, or delete the checkpoint to start over"
        )
    said = None
    if now.size > recorded.size:
        os.ftruncate(fd, recorded.size)
        said = (
            f"{what}: removed {now.size - recorded.size} bytes written after the last "
            "checkpoint (the record in flight is done again)"
        )
    if _fd_flags(fd) & os.O_APPEND == 0:
        os.lseek(fd, 0, os.SEEK_END)  # `1<>file`: write after what is kept, not over it
    return said


def _sync(fd: int) -> None:
    """fdatasync, for files; devices and pipes (``--errors /dev/null``) have nothing to sync."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return
    with output_errors("the --errors file"):
        os.fdatasync(fd)


def _identity(where: int | Path | None) -> tuple[int, int] | None:
    """Device and inode of an open fd or a path (None: absent, or a terminal, where interleaved
    lines are what stderr does anyway)."""
    if where is None:
        return None
    try:
        st = os.fstat(where) if isinstance(where, int) else os.stat(where)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


def _fd_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


# -- the batch -------------------------------------------------------------------------------------


@dataclass
class BatchReport:
    """What a batch did: records in the input, done before (checkpoint), succeeded, failed."""

    records: int = 0
    resumed: int = 0
    succeeded: int = 0
    failed: int = 0  # including failures logged in the checkpoint by earlier runs
    errors: list[RecordError] = field(default_factory=list)


def run_batch(
    lines: Iterable[bytes],
    runner: RecordRunner,
    options: BatchOptions | None = None,
    *,
    output: LineOutput | None = None,
    errors: ErrorLog | None = None,
    checkpoint: Checkpoint | None = None,
    on_text: TextCallback | None = None,
    on_record: Callable[[int, bool | None], None] | None = None,
    notice: Notice | None = None,
    input_fd: int | None = None,
    on_piece: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Extract every record of ``lines`` in order, writing one output line per record.

    Failed records are reported according to ``options.on_error``; at the end, raises
    SomeRecordsFailed (exit 8) if any failed, or with ``stop`` the first failure itself (with
    its own exit code). ``on_record(line, ok)`` is called after each record (``ok`` is None
    for a record the checkpoint says is done). ``input_fd``, the file the lines come from, is
    refused as an output (a file read while it grows).
    """
    batch = _Batch(
        runner,
        options or BatchOptions(),
        output or LineOutput(),
        errors or ErrorLog(),
        checkpoint,
        on_text,
        notice,
        input_fd,
        on_piece,
    )
    return batch.run(lines, on_record)


@dataclass
class _Batch:
    runner: RecordRunner
    options: BatchOptions
    output: LineOutput
    errors: ErrorLog
    checkpoint: Checkpoint | None
    on_text: TextCallback | None
    notice: Notice | None
    input_fd: int | None = None
    on_piece: Callable[[int, int], None] | None = None
    report: BatchReport = field(default_factory=BatchReport)

    def run(
        self, lines: Iterable[bytes], on_record: Callable[[int, bool | None], None] | None
    ) -> BatchReport:
        report = self.report
        self._refuse_shared_files()
        resume = self._resume()
        hasher = hashlib.sha256()
        line_no = 0
        for line_no, raw in enumerate(lines, 1):
            # A digest of the input so far: a resumed run must be reading the same input.
            hasher.update(len(raw).to_bytes(8, "little"))
            hasher.update(raw)
            digest = hasher.copy().hexdigest()[:32]
            report.records = line_no
            if line_no <= resume.line:
                recorded = resume.digest_at(line_no)
                if line_no == resume.line and recorded is None:
                    recorded = resume.input_digest
                if recorded is not None and digest != recorded:
                    raise UsageError(
                        f"the input differs from the one the checkpoint was made for (at line "
                        f"{line_no}): delete the checkpoint to start over"
                    )
                report.resumed += 1
                if on_record is not None:
                    on_record(line_no, None)
                continue
            self.runner.check_total()
            finished = resume.pieces if line_no == resume.line + 1 else []
            if finished and digest != resume.pieces_digest:
                raise UsageError(
                    f"the input differs from the one the checkpoint was made for (at line "
                    f"{line_no}): delete the checkpoint to start over"
                )
            ok = self._record(raw, line_no, digest, finished)
            if on_record is not None:
                on_record(line_no, ok)
        if line_no < resume.line:
            raise UsageError(
                f"the input has {line_no} line(s) but the checkpoint says {resume.line} were "
                "done: it is not the same input"
            )
        if report.failed:
            raise SomeRecordsFailed(f"{report.failed} of {report.records} record(s) failed", report)
        return report

    def _refuse_shared_files(self) -> None:
        """Refuse the input, stdout, ``--errors`` and ``--checkpoint`` when two are one file (by
        device and inode: ``--errors /dev/stdout > out``): writers would overwrite each other,
        and a reader would read what is written (``--input f >> f`` without end)."""
        seen: dict[tuple[int, int], str] = {}
        checkpoint = self.checkpoint.path if self.checkpoint is not None else None
        for what, where in (
            ("the input", self.input_fd),
            ("stdout", self.output.fd),
            ("the --errors file", self.errors.fd),
            ("the --checkpoint file", checkpoint),
        ):
            identity = _identity(where)
            if identity is None:
                continue
            if identity in seen:
                raise UsageError(
                    f"{what} is the same file as {seen[identity]}: give each its own file"
                )
            seen[identity] = what

    def _resume(self) -> Resume:
        if self.checkpoint is None:
            return Resume()
        resume = self.checkpoint.open()
        self.report.failed = resume.failed
        for fd, mark, what in (
            (self.output.fd, resume.output, "stdout"),
            (self.errors.fd, resume.errors, "--errors file"),
        ):
            said = _reconcile(fd, mark, what)
            if said and self.notice is not None:
                self.notice(said)
        return resume

    def _record(
        self, raw: bytes, line_no: int, digest: str, finished: list[tuple[Piece, Found]]
    ) -> bool:
        each = self.runner.record.each
        pending: list[str] = []
        notice = self.notice

        def say(message: str) -> None:
            if notice is not None:
                notice(f"line {line_no}: {message}")

        try:
            text, shape = parse_record(raw, self.options, first=line_no == 1)

            def emit(document: str) -> None:
                if each:
                    with signals_held():  # items go out as they close, each line whole
                        self.output.write_line(shape(document))
                else:
                    pending.append(shape(document))

            def piece_done(piece: Piece, found: Found) -> None:
                with signals_held():
                    self._commit(line_no, digest, (piece, found))

            hooks = PieceHooks(done=piece_done, progress=self.on_piece)
            self.runner.run(
                text, emit, on_text=self.on_text, notice=say, pieces=hooks, finished=finished
            )
        except (TotalTimeoutExpired, OutputError):
            raise  # the run stops; the record in flight is not logged and is done again
        except QwenJsonError as e:
            if self.options.document:
                raise  # a single document fails with its own error, unlogged: a rerun redoes it
            if self.options.on_error == "stop":
                raise RecordFailed(line_no, e) from e
            failure = RecordError(line_no, str(e), e.exit_code)
            self.report.failed += 1
            self.report.errors.append(failure)
            with signals_held():
                if self.options.on_error == "record":
                    self.errors.write(failure)
                self._commit(line_no, digest)
            return False
        with signals_held():
            for line in pending:
                self.output.write_line(line)
            self._commit(line_no, digest)
        self.report.succeeded += 1
        return True

    def _commit(self, line_no: int, digest: str, piece: tuple[Piece, Found] | None = None) -> None:
        """Log the record (or with ``piece``, one piece of it) as done."""
        if self.checkpoint is None:
            return
        # Output first and durable, then the log that says it is there: a crash in between
        # can only leave output that the next run cuts off (regular files) or repeats (pipes).
        out_mark = self.output.mark()
        if out_mark is not None and self.output.fd is not None:
            with output_errors("stdout"):
                os.fdatasync(self.output.fd)
        self.errors.sync()
        if piece is not None:
            self.checkpoint.commit_piece(line_no, digest, *piece, out_mark, self.errors.mark())
            return
        self.checkpoint.commit(line_no, digest, self.report.failed, out_mark, self.errors.mark())
