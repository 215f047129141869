"""Property-based fuzzing of the command line's inputs, shared by tests/test_fuzz_cli.py (a few
examples) and scripts/fuzz_cli.py (a long run).

A case is a ``--schema`` (JSON with NaN, huge numbers, duplicate keys or deep nesting; the
concise syntax; garbage), an input (text, or JSONL records with NaN, 1e400, 5000 digits, lone
surrogates, non-objects, bytes that aren't UTF-8) and a random set of options. It runs through
``cli.run`` in this process on the real SmolLM2 model, loaded once. The properties: no internal
error, a documented exit code with an ``Error:`` line when it isn't 0, and stdout either empty or
strict JSON line by line, each document valid against the schema.
"""

from __future__ import annotations

import io
import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from qwenjson import cli, errors, jsonstrict, pipeline
from qwenjson.generation import Generator
from qwenjson.validate import make_validator

DOCUMENTED = {
    errors.EXIT_OK,
    errors.EXIT_USAGE,
    errors.EXIT_SCHEMA,
    errors.EXIT_MODEL,
    errors.EXIT_NO_VALID_OUTPUT,
    errors.EXIT_INPUT,
    errors.EXIT_TIMEOUT,
    errors.EXIT_SOME_RECORDS_FAILED,
    errors.EXIT_OUTPUT,
}


@dataclass(frozen=True)
class Case:
    """One run: the ``--schema`` argument, the bytes on stdin, the other options."""

    schema: str
    stdin: bytes
    options: tuple[str, ...]


# -- schemas -----------------------------------------------------------------------------------

_NAMES = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), st.text(max_size=6))
_NUMBERS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(-1000, 1000),
    st.integers(-(10**60), 10**60),
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=True, allow_infinity=True),  # json.dumps writes NaN and Infinity
)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-100, 100), st.text(max_size=8))
_PATTERNS = [r"^[a-z]+$", r"^\d{3}-\d{4}$", r"^(a|aa)+$", r"^(?=a)(a|aa)+$", "[A-Z]", r"\p{L}"]
_FORMATS = ["date", "date-time", "time", "email", "uri", "uuid", "hostname", "ipv4"]

_LEAVES = st.one_of(
    st.sampled_from([{"type": t} for t in ("string", "integer", "number", "boolean", "null")]),
    st.builds(lambda lo, hi: {"type": "integer", "minimum": lo, "maximum": hi}, _NUMBERS, _NUMBERS),
    st.builds(lambda n: {"type": "number", "maximum": n}, _NUMBERS),
    st.builds(
        lambda a, b: {"type": "string", "minLength": a, "maxLength": a + b},
        st.integers(0, 4),
        st.integers(0, 12),
    ),
    st.builds(lambda p: {"type": "string", "pattern": p}, st.sampled_from(_PATTERNS)),
    st.builds(lambda f: {"type": "string", "format": f}, st.sampled_from(_FORMATS)),
    st.builds(lambda v: {"enum": v}, st.lists(_SCALARS, min_size=1, max_size=4)),
    st.builds(lambda v: {"const": v}, _SCALARS),
    st.just({"$ref": "#"}),
    st.just({}),
)


def _object(props: dict[str, Any], required: list[str], closed: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = [k for k in required if k in props]
    if closed:
        schema["additionalProperties"] = False
    return schema


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            _object,
            st.dictionaries(_NAMES, children, max_size=4),
            st.lists(_NAMES, max_size=3),
            st.booleans(),
        ),
        st.builds(
            lambda s, n: {"type": "array", "items": s, "maxItems": n}, children, st.integers(0, 4)
        ),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(children, min_size=1, max_size=3)),
    )


JSON_SCHEMAS = st.recursive(_LEAVES, _extend, max_leaves=8)


def _twist(text: str, how: str, n: int) -> str:
    """Schema text made hostile the ways JSON allows and Python's json module accepts."""
    body = text[1:] if text.startswith("{") and text != "{}" else None
    if how == "duplicate" and body is not None:
        return '{"title":"a","title":"b",' + body
    if how == "digits" and body is not None:
        return '{"maximum":' + "9" * (n * 10) + "," + body
    if how == "deep":
        return '{"items":' * n + text + "}" * n
    return text


JSON_SCHEMA_TEXTS = st.builds(
    _twist,
    JSON_SCHEMAS.map(json.dumps),
    st.sampled_from(["none"] * 9 + ["duplicate", "digits", "deep"]),
    st.integers(1, 700),
)

_CONCISE_TYPES = [
    "",
    "int",
    "float",
    "bool",
    "date",
    "email",
    "url",
    "uuid",
    "str",
    "[str]",
    "[int] 1..3",
    "{a, b int}",
    "a|b|c",
    "int 0..150",
    "str ..5",
    "float|null 0..1",
    "[{name, role: job}] 1..",
    "int 0..1e400",
    "[" * 80 + "str" + "]" * 80,
]

_CONCISE_FIELDS = st.builds(
    lambda name, optional, kind, desc: (
        f"{name}{'?' if optional else ''} {kind}" + (f": {desc}" if desc else "")
    ),
    st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), st.text(max_size=5)),
    st.booleans(),
    st.sampled_from(_CONCISE_TYPES),
    st.text(max_size=10),
)
CONCISE: st.SearchStrategy[str] = st.one_of(
    st.builds(
        lambda fs, sep: sep.join(fs),
        st.lists(_CONCISE_FIELDS, min_size=1, max_size=5),
        st.sampled_from([", ", "\n", "，"]),
    ),
    st.text(max_size=30),  # whatever a user might type
    st.sampled_from(["name, age int 0..150, hobbies [str]", "sentiment positive|negative", "name"]),
)
SCHEMAS = st.one_of(JSON_SCHEMA_TEXTS, JSON_SCHEMA_TEXTS, CONCISE)


# -- inputs --------------------------------------------------------------------------------------

_HOSTILE_VALUES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "7" * 5000,
    '"a \\ud800"',
    '"\\udc00b"',
    "[" * 3000 + "]" * 3000,
]


def _record_line(kind: str, text: str, extra: Any, hostile: str) -> bytes:
    if kind == "good":
        return json.dumps({"text": text, "extra": extra}, ensure_ascii=False).encode()
    if kind == "hostile":
        return ('{"text":' + json.dumps(text) + ',"x":' + hostile + "}").encode()
    if kind == "surrogate-text":
        return b'{"text":"' + text.encode() + b' \\ud800"}'
    if kind == "duplicate":
        return ('{"text":' + json.dumps(text) + ',"text":"b"}').encode()
    if kind == "not-object":
        return json.dumps(extra).encode()
    if kind == "bytes":
        return text.encode() + b"\xff\xfe"
    if kind == "empty":
        return b""
    return text.encode()  # plain text: a record without --field, or garbage with it


_JSON_VALUES = st.recursive(_SCALARS | _NUMBERS, lambda c: st.lists(c, max_size=3), max_leaves=5)
RECORDS = st.builds(
    _record_line,
    st.sampled_from(
        [
            "good",
            "good",
            "good",
            "hostile",
            "surrogate-text",
            "duplicate",
            "not-object",
            "bytes",
            "empty",
            "text",
        ]
    ),
    st.text(max_size=60),
    _JSON_VALUES,
    st.sampled_from(_HOSTILE_VALUES),
)
TEXTS = st.one_of(
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=40),
    st.just("李明，28岁，喜欢读书和跑步。".encode()),
)


# -- options -------------------------------------------------------------------------------------


@st.composite
def cases(draw: st.DrawFn, tmp: Path) -> Case:
    """A random case whose files (``--errors``, ``--checkpoint``, ``--input``) are in ``tmp``."""
    schema = draw(SCHEMAS)
    options: list[str] = ["--max-tokens", str(draw(st.integers(1, 48)))]
    options += ["--retries", str(draw(st.integers(0, 1)))]
    pool: dict[str, st.SearchStrategy[list[str]]] = {
        "keep-empty": st.just(["--keep-empty"]),
        "pretty": st.just(["--pretty"]),
        "each": st.just(["--each"]),
        "truncate": st.sampled_from([["--truncate", "head"], ["--truncate", "tail"]]),
        "timeout": st.floats(0, 3).map(lambda s: ["--timeout", f"{s:.2f}"]),
        "total-timeout": st.floats(0, 6).map(lambda s: ["--total-timeout", f"{s:.2f}"]),
        "instruction": st.one_of(st.text(max_size=20), st.just("\udcff")).map(
            lambda s: ["--instruction", s]
        ),
        "temperature": st.floats(0, 1.5).map(lambda t: ["--temperature", f"{t:.2f}"]),
        "seed": st.integers(-(2**70), 2**70).map(lambda n: ["--seed", str(n)]),
        "far-limits": st.sampled_from(["inf", "1e300", "nan", "-1"]).map(
            lambda s: ["--total-timeout", s]
        ),
        "field": st.just(["--field", "text"]),
        "into": st.one_of(_NAMES, st.just("\udcff")).map(lambda s: ["--into", s]),
        "on-error": st.sampled_from([["--on-error", v] for v in ("record", "skip", "stop")]),
        "errors": st.just(["--errors", str(tmp / "errors.jsonl")]),
        "checkpoint": st.just(["--checkpoint", str(tmp / "ck")]),
        "input": st.just(["--input", str(tmp / "input")]),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(pool)), max_size=5, unique=True))
    for name in chosen:
        options += draw(pool[name])
    # Mostly the batch options with --jsonl (without it they are a usage error: a few suffice).
    batch = {"field", "into", "on-error", "errors", "checkpoint"} & set(chosen)
    jsonl = draw(st.sampled_from([True] * 9 + [False])) if batch else draw(st.booleans())
    if jsonl:
        options.append("--jsonl")
        lines = draw(st.lists(RECORDS, min_size=1, max_size=4))
        stdin = b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))
    else:
        stdin = draw(TEXTS)
    return Case(schema, stdin, tuple(options))


# -- running a case ----------------------------------------------------------------------------


class SharedModel:
    """One real engine for every case (loading costs more than most cases): ``close`` is a
    no-op, ``discard`` really closes it (after an alarm may have cut it short)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._engine: Generator | None = None

    def open(self, *args: object, **kwargs: object) -> Generator:
        """Stands in for ``pipeline.open_model``."""
        if self._engine is None:
            from qwenjson.engine import Engine

            self._engine = Engine(self.path, n_ctx=2048, n_threads=1, n_threads_batch=1)
        return _Unclosable(self._engine)

    def discard(self) -> None:
        """Close the engine; the next case loads a fresh one."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None


class _Unclosable:
    def __init__(self, engine: Generator) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def close(self) -> None:
        pass


@dataclass
class Outcome:
    code: int
    out: bytes
    err: str
    crash: str | None = None  # the traceback of an exception that escaped cli.run


@contextmanager
def _std_streams(stdin: bytes) -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    saved = sys.stdin, sys.stdout, sys.stderr
    out, err = io.BytesIO(), io.BytesIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace")
    try:
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


def run_case(case: Case, tmp: Path, model: SharedModel) -> Outcome:
    """Run ``qwenjson extract`` on ``case`` in this process (files in ``tmp``)."""
    for name in ("errors.jsonl", "ck"):
        (tmp / name).unlink(missing_ok=True)
    (tmp / "input").write_bytes(case.stdin)
    saved_open = pipeline.open_model
    pipeline.open_model = model.open  # type: ignore[assignment]
    crash = None
    try:
        with _std_streams(case.stdin) as (out, err):
            try:
                code = cli.run(["extract", "--schema", case.schema, *case.options])
            except Exception:  # under pytest run() re-raises what it would call internal
                code, crash = errors.EXIT_INTERNAL, traceback.format_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            outcome = Outcome(code, out.getvalue(), err.getvalue().decode("utf-8", "replace"))
    finally:
        pipeline.open_model = saved_open
    if code == errors.EXIT_TIMEOUT and "--total-timeout" in case.options:
        model.discard()  # the alarm may have stopped the engine mid-call
    outcome.crash = crash
    return outcome


def problems(case: Case, outcome: Outcome) -> list[str]:
    """What breaks the properties (empty: the case is fine)."""
    found: list[str] = []
    if outcome.crash is not None or "internal error" in outcome.err:
        last = (outcome.crash or outcome.err).strip().splitlines()[-1]
        found.append(f"internal error: {last}")
    if outcome.code not in DOCUMENTED:
        found.append(f"undocumented exit code {outcome.code}")
    if outcome.code != errors.EXIT_OK and "Error: " not in outcome.err:
        found.append(f"exit {outcome.code} without an Error: line")
    found += _stdout_problems(case, outcome.out)
    return found


def _stdout_problems(case: Case, out: bytes) -> list[str]:
    if not out:
        return []
    if not out.endswith(b"\n"):
        return ["stdout does not end with a newline"]
    try:
        text = out.decode("utf-8")
        documents = (
            [jsonstrict.loads(text)]
            if "--pretty" in case.options
            else [jsonstrict.loads(line) for line in text.splitlines()]
        )
    except ValueError as e:
        return [f"stdout is not strict JSON: {e}"]
    schema = _schema_of(case)
    if schema is None:
        return ["stdout has output, but the schema doesn't load"]
    # qwenjson's validator: patterns mean what ECMA-262 says (`\p{L}`), not what Python's re does.
    validator = make_validator(schema)
    options = case.options
    into = options[options.index("--into") + 1] if "--into" in options else "extracted"
    for document in documents:
        if "--field" in options:
            if not isinstance(document, dict) or into not in document:
                return [f"a --field output line without its document: {document!r:.80}"]
            document = document[into]
        for error in validator.iter_errors(document):
            return [f"an output document fails the schema: {error.message:.120}"]
    return []


def _schema_of(case: Case) -> Any:
    from qwenjson.validate import load_schema

    try:
        # With --each too: each line is one item, valid against the schema itself.
        return load_schema(case.schema)
    except errors.QwenJsonError:
        return None
