"""JSONL records: reading input lines (bounded), and turning a line into a text and an output
line back (``--field``/``--into``), refusing what would put a line that isn't JSON on stdout.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from qwenjson import jsonstrict
from qwenjson.errors import InputError
from qwenjson.stream import file_mark
from qwenjson.utf8 import bad_byte

__all__ = [
    "MAX_INPUT_BYTES",
    "BatchOptions",
    "OnError",
    "RecordError",
    "count_lines",
    "parse_record",
    "read_bounded",
    "read_lines",
]

OnError = Literal["skip", "stop", "record"]


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
    # Each output line is ``{"line": N, "data": LINE}``: records printed as they finish
    # (``--unordered``), so a reader can tell which input line each came from.
    numbered: bool = False


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
    if len(raw) > MAX_INPUT_BYTES:  # ``read_lines`` cut it there, and skipped the rest
        raise too_large("the line")
    try:
        line = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({bad_byte(raw, bom=first)})") from e
    if not line.strip():
        raise InputError("empty line")
    if options.field is None:
        return line, _indented if options.pretty else _same
    try:
        obj = jsonstrict.loads(line)
    except json.JSONDecodeError as e:
        # json's "Unterminated string starting at" already ends in "at".
        where = "column" if e.msg.endswith(" at") else "at column"
        raise InputError(f"not a JSON object ({e.msg} {where} {e.colno})") from e
    except jsonstrict.JsonValueError as e:
        raise InputError(f"not strict JSON: {e}") from e
    if not isinstance(obj, dict):
        raise InputError(f"not a JSON object ({_a(_json_type(obj))})")
    name, into = options.field, options.into
    if name not in obj:
        raise InputError(f"no field {name!r} in the record")
    text = obj[name]
    if not isinstance(text, str):
        raise InputError(f"field {name!r} is {_a(_json_type(text))}, not a string")
    if not text.strip():
        raise InputError(f"field {name!r} is empty")
    # The record's other members go out as they came in: its numbers as written (0.1 stays
    # 0.10, -0 stays -0, 12345678901234567890.5 keeps its digits), not as Python reads them.
    rest = {k: v for k, v in _exact(line).items() if k != name}
    added = (into, "evidence", "confidence") if options.evidence else (into,)
    for key in added:
        if key in rest:
            fix = "choose another --into" if key == into else "--evidence adds it: rename it"
            raise InputError(f"the record already has a field {key!r}: {fix}")

    def shape(document: str) -> str:
        if options.evidence:
            wrapped = json.loads(document)
            added = {into: wrapped["data"]}
            added |= {"evidence": wrapped["evidence"], "confidence": wrapped["confidence"]}
            tail = json.dumps(added, ensure_ascii=False, separators=(",", ":"))[1:]
        else:
            # The document is already compact JSON; splice it in rather than parse it again.
            tail = f"{json.dumps(into, ensure_ascii=False)}:{document}}}"
        head = _dumps_exact(rest)[:-1]
        return f"{head}{',' if rest else ''}{tail}"

    return text, shape


class _Number:
    """A JSON number kept as its text, so that writing it back changes nothing."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _exact(line: str) -> dict[str, Any]:
    """The object on ``line`` (already read strictly) with its numbers as ``_Number``."""
    value: dict[str, Any] = json.loads(line, parse_float=_Number, parse_int=_Number)
    return value


def _dumps_exact(value: Any) -> str:
    """Compact JSON of a value from ``_exact``: numbers as they were written. (``json.dumps``
    writes a float as Python's shortest repr and offers no hook for a number's own text.)"""
    if isinstance(value, _Number):
        return value.text
    if isinstance(value, dict):
        members = (
            f"{json.dumps(k, ensure_ascii=False)}:{_dumps_exact(v)}" for k, v in value.items()
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps_exact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _same(document: str) -> str:
    return document


def _indented(document: str) -> str:
    return json.dumps(json.loads(document), ensure_ascii=False, indent=2)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


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


def too_large(what: str) -> InputError:
    """The error for a text over ``MAX_INPUT_BYTES``."""
    return InputError(
        f"{what} is larger than {MAX_INPUT_BYTES >> 20} MiB, the most qwenjson reads as one text"
    )


def read_bounded(stream: BinaryIO, what: str) -> bytes:
    """All of ``stream``, refused (InputError) past ``MAX_INPUT_BYTES``."""
    data = stream.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise too_large(what)
    return data


def read_lines(
    stream: BinaryIO | Iterable[bytes],
    on_unended: Callable[[int], None] | None = None,
    complete: Callable[[bytes], bool] | None = None,
) -> Iterator[bytes]:
    """Lines of a binary stream without their terminator (``\\n`` or ``\\r\\n``), lazily.

    A line longer than ``MAX_INPUT_BYTES`` is yielded cut to ``MAX_INPUT_BYTES + 1`` bytes, the
    rest of it read and dropped, so that ``parse_record`` fails that record alone (with
    ``--on-error record`` the batch goes on). Past ``_SKIP_BYTES`` without a line end the
    stream isn't JSONL (``/dev/zero``): an InputError, as is a failed read (an I/O error).

    With ``on_unended``, a last line with no line end is not yielded unless ``complete`` says
    it is whole: ``on_unended`` gets its number. A checkpointed batch reading a file asks for
    that, since a writer may still be adding to the line (a record read half-written and
    logged would stop every later run at "the input differs").
    """
    readline = getattr(stream, "readline", None)
    # Two bytes past the limit: a line of exactly MAX_INPUT_BYTES is read with its "\r\n" (with
    # one, it stopped at the "\r" and counted as too long where the same line with "\n" wasn't).
    lines = iter(lambda: readline(MAX_INPUT_BYTES + 2), b"") if readline else iter(stream)
    line_no = 0
    while True:
        try:
            raw = next(lines, None)
        except OSError as e:
            raise InputError(f"cannot read line {line_no + 1}: {e.strerror or e}") from e
        if raw is None:
            return
        line_no += 1
        if line_no == 1 and raw == codecs.BOM_UTF8:
            return  # an empty file some editors save with a BOM: no lines, as an empty one
        ended = raw.endswith(b"\n")
        if ended:
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        elif on_unended is not None and len(raw) <= MAX_INPUT_BYTES:
            # (Shorter than the limit, with no line end: the stream's end.) Its "\r" goes as a
            # "\r\n" would: the line logged is the one a later run reads, once it has its "\n".
            body = raw[:-1] if raw.endswith(b"\r") else raw
            # (A blank one is read: it fails as "empty line" either way, the same line after.)
            if body.strip() and (complete is None or not complete(body)):
                on_unended(line_no)
                return
            raw = body
        if len(raw) > MAX_INPUT_BYTES:
            if readline is not None and not ended:
                _skip_line(readline, f"line {line_no}")
            raw = raw[: MAX_INPUT_BYTES + 1]
        yield raw


# How much of an over-long line is read past its first ``MAX_INPUT_BYTES`` looking for its end.
_SKIP_BYTES = 8 * MAX_INPUT_BYTES


def is_json_object(raw: bytes) -> bool:
    """Whether ``raw`` is one whole JSON object (a ``--field`` record's line can't be cut short
    and still be one: its closing brace comes last)."""
    try:
        return isinstance(json.loads(raw.decode("utf-8-sig")), dict)
    # RecursionError: nested past Python's limit (100,000 brackets), which no record may be
    # (``jsonstrict``); held back as any line that isn't a whole object yet, until it ends.
    except (ValueError, RecursionError):  # (JSONDecodeError, UnicodeDecodeError)
        return False


def _skip_line(readline: Callable[[int], bytes], what: str) -> None:
    """Read up to the end of the current line (or of the stream), in blocks of 1 MiB."""
    skipped = 0
    while skipped <= _SKIP_BYTES:
        try:
            block = readline(1 << 20)
        except OSError as e:
            raise InputError(f"cannot read {what}: {e.strerror or e}") from e
        if not block or block.endswith(b"\n"):
            return
        skipped += len(block)
    raise too_large(what)
