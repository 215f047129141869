"""The Plan (one frozen value per job, its fingerprint from its fields), the Runner on it, and
the library's ``extract()`` on what Python callers hold. The model is the fake: this is
plumbing; tests/test_end_to_end.py runs the library on a real GGUF."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qwenjson import cli, pipeline
from qwenjson.checkpoint import Checkpoint
from qwenjson.engine import Engine
from qwenjson.errors import (
    EXIT_SCHEMA,
    InputError,
    ModelError,
    NoValidOutputError,
    SchemaError,
    UsageError,
)
from qwenjson.library import extract
from qwenjson.pipeline import ExtractOptions, Extractor
from qwenjson.plan import Layout, Plan, RecordOptions, plan_for, prepare_job, schema_of
from qwenjson.runner import Limits, Runner
from tests.fakes import FakeModel

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}

# A value other than the default for every field of a Plan and of the option classes it holds.
# A field added without an entry here fails test_every_field_changes_the_fingerprint: decide
# whether it changes output (an entry) or not (then it belongs outside the Plan).
CHANGED: dict[str, Any] = {
    "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
    "model_sha256": "b" * 64,
    "n_ctx": 2048,
    "instruction": "dates as YYYY-MM-DD",
    "max_tokens": 512,
    "temperature": 0.7,
    "top_p": 0.9,
    "seed": 7,
    "retries": 0,
    "keep_empty": True,
    "grounding": False,
    "evidence": True,
    "require_evidence": True,
    "abstain_below": 0.5,
    "each": True,
    "truncate": "head",
    "chunks": False,
    "chunk_tokens": 256,
    "chunk_overlap": 16,
    "jsonl": True,
    "field": "text",
    "into": "person",
    "pretty": True,
}


def base_plan(**changes: Any) -> Plan:
    return Plan(PERSON, "a" * 64, 4096, **changes)


def leaf_changes() -> Iterator[tuple[str, Callable[[], Plan]]]:
    """(name, a plan with only that field changed) for every non-derived field, nested too."""
    plan = base_plan()
    for f in dataclasses.fields(Plan):
        if f.metadata.get("derived"):
            continue
        value = getattr(plan, f.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                changed = dataclasses.replace(value, **{sub.name: CHANGED[sub.name]})
                yield f"{f.name}.{sub.name}", lambda f=f, c=changed: base_plan(**{f.name: c})
        else:
            yield f.name, lambda f=f: dataclasses.replace(plan, **{f.name: CHANGED[f.name]})


def test_every_field_changes_the_fingerprint() -> None:
    base = base_plan().fingerprint
    seen = {}
    for name, make in leaf_changes():
        fingerprint = make().fingerprint
        assert fingerprint != base, f"{name} does not change the fingerprint"
        seen[name] = fingerprint
    assert len(set(seen.values())) == len(seen)  # and each differently
    assert {n.rsplit(".", 1)[-1] for n in seen} == set(CHANGED)


def test_the_fingerprint_is_stable_and_left_out_fields_stay_out() -> None:
    assert base_plan().fingerprint == base_plan().fingerprint
    assert (
        base_plan().fingerprint == Plan(dict(reversed(PERSON.items())), "a" * 64, 4096).fingerprint
    )
    names = {f.name for f in dataclasses.fields(Plan)}
    names |= {
        f.name for c in (ExtractOptions, RecordOptions, Layout) for f in dataclasses.fields(c)
    }
    # What doesn't change what a record prints is not in a Plan (see its docstring).
    for name in (
        "threads",
        "prompt_threads",
        "cache_dir",
        "no_cache",
        "quiet",
        "offline",
        "timeout",
        "total_timeout",
        "on_error",
        "errors",
        "checkpoint",
    ):
        assert name not in names


def test_derived_fields_come_from_the_others() -> None:
    plan = base_plan(options=ExtractOptions(instruction="be brief"))
    assert "be brief" in plan.system_prompt
    assert plan.job.item is None and "root ::=" in plan.job.prepared.compiled.grammar
    each = base_plan(record=RecordOptions(each=True))
    assert each.job.item is not None
    assert each.job.prepared.schema["required"] == ["items"]
    job = prepare_job(PERSON)
    assert Plan(PERSON, "", 4096, job=job).job is job  # prepared beforehand: used
    # One prepared for another schema or --each (``dataclasses.replace`` carries it) is not.
    assert Plan(PERSON, "", 4096, record=RecordOptions(each=True), job=job).job.item is not None
    string = dataclasses.replace(base_plan(), schema={"type": "string"})
    assert string.job.prepared.schema == {"type": "string"}
    assert string.system_prompt != base_plan().system_prompt


def test_a_plan_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        base_plan().n_ctx = 1  # type: ignore[misc]


def test_an_unsatisfiable_item_is_refused_under_each_too() -> None:
    # Inside the {"items": [...]} wrapper it would compile to "always an empty list".
    for schema in (False, {"type": "string", "minLength": 5, "maxLength": 2}):
        with pytest.raises(SchemaError, match="at /"):
            prepare_job(schema, each=True)


# -- the command line: one check, one plan, the fingerprint naming the checkpoint -------------


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> Callable[..., Run]:
    def invoke(*args: str, stdin: bytes = b"", model: FakeModel | None = None) -> Run:
        fake = model or FakeModel(lambda t, _: json.dumps({"name": t, "age": len(t)}))
        monkeypatch.setattr(pipeline, "open_model", lambda *a, **k: fake)
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        code = cli.run(list(args))
        captured = capsysbinary.readouterr()
        return Run(code, captured.out.decode("utf-8"), captured.err.decode("utf-8"))

    return invoke


def test_the_schema_is_checked_once_also_under_each(
    run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwenjson import plan, validate

    checks: list[Any] = []
    real = validate.check_metaschema

    def counted(schema: Any) -> None:
        checks.append(schema)
        real(schema)

    monkeypatch.setattr(validate, "check_metaschema", counted)
    monkeypatch.setattr(plan, "check_metaschema", counted)
    answer = json.dumps({"items": [{"name": "a", "age": 1}]})
    r = run(
        "extract", "-s", json.dumps(PERSON), "--each", stdin=b"a", model=FakeModel(answers=[answer])
    )
    assert (r.code, r.out) == (0, '{"name":"a","age":1}\n')
    assert checks == [PERSON]


def test_options_that_dont_change_output_resume_the_checkpoint(
    run: Callable[..., Run], tmp_path: Path
) -> None:
    ck = str(tmp_path / "ck")
    base = ("extract", "-s", json.dumps(PERSON), "--jsonl", "--checkpoint", ck)
    assert run(*base, stdin=b"a\n").out == '{"name":"a","age":1}\n'
    others = (
        "--threads",
        "1",
        "--prompt-threads",
        "1",
        "--timeout",
        "60",
        "--total-timeout",
        "600",
        "--quiet",
        "--no-cache",
        "--offline",
        "--on-error",
        "skip",
    )
    r = run(*base, *others, stdin=b"a\nbb\n")
    assert (r.code, r.out) == (0, '{"name":"bb","age":2}\n')  # resumed: a was done


def test_another_model_file_is_another_job(run: Callable[..., Run], tmp_path: Path) -> None:
    ck = str(tmp_path / "ck")
    args = ("extract", "-s", json.dumps(PERSON), "--jsonl", "--checkpoint", ck)

    def model(sha: str) -> FakeModel:
        fake = FakeModel(lambda t, _: json.dumps({"name": t, "age": 1}))
        fake.model_sha256 = sha  # type: ignore[attr-defined]
        return fake

    assert run(*args, stdin=b"a\n", model=model("1" * 64)).code == 0
    r = run(*args, stdin=b"a\n", model=model("2" * 64))
    assert (r.code, r.out) == (2, "")
    assert "belongs to a different job" in r.err
    # The reason may be an upgrade (a new option names every job): the message says so.
    assert "written by a qwenjson with other options" in " ".join(r.err.split())


def test_a_checkpoint_from_before_plans_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "ck"
    old_job = hashlib.sha256(b"a hand-written list of options").hexdigest()
    path.write_text(json.dumps({"qwenjson_checkpoint": 2, "job": old_job}) + '\n{"line":1}\n')
    with pytest.raises(UsageError, match=r"written by an earlier qwenjson.*delete it"):
        Checkpoint(path, base_plan().fingerprint).open()
    assert path.read_text().count("\n") == 2  # left as it was


def test_the_model_file_is_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenjson import hub

    monkeypatch.setenv("QWENJSON_CACHE_DIR", str(tmp_path / "state"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"x" * 1000)
    assert hub.file_sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    hashed: list[Path] = []
    real = hub.sha256_file
    monkeypatch.setattr(hub, "sha256_file", lambda p: hashed.append(p) or real(p))
    hub.file_sha256(model)
    assert hashed == []  # remembered by path, size, mtime and inode
    model.write_bytes(b"GGUF" + b"y" * 1000)
    os.utime(model, ns=(1, 1))
    assert hub.file_sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    assert hashed == [model]


# -- the runner and the library -----------------------------------------------------------------


def test_the_runner_extracts_with_the_plan_it_is_given() -> None:
    fake = FakeModel(answers=['{"name": "Ann", "age": 3}'])
    plan = plan_for(PERSON, fake, ExtractOptions(instruction="only adults"))
    out: list[str] = []
    result = Runner(plan, fake, Limits()).run("Ann is 3", out.append)
    assert out == ['{"name":"Ann","age":3}'] and result.data == {"name": "Ann", "age": 3}
    assert fake.calls[0][0][0]["content"] == plan.system_prompt
    assert fake.calls[0][1] == plan.job.prepared.compiled.grammar


class Person:
    """A class that quacks like a Pydantic model (what extract() needs of one)."""

    def __init__(self, name: str, age: int) -> None:
        self.name, self.age = name, age

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return PERSON

    @classmethod
    def model_validate(cls, data: Any) -> Person:
        return cls(**data)


def answer(text: str, _: int) -> str:
    return json.dumps({"name": text.split()[0], "age": 3})


@pytest.mark.parametrize("form", ["dict", "file", "inline", "concise"])
def test_extract_takes_a_schema_as_python_callers_hold_it(form: str, tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    schema: Any = {
        "dict": PERSON,
        "file": path,
        "inline": json.dumps(PERSON),
        "concise": "name, age int",
    }[form]
    assert extract("Ann is 3", schema, model=FakeModel(answer)) == {"name": "Ann", "age": 3}


def test_extract_returns_an_instance_of_a_model_class() -> None:
    person = extract("Ann is 3", Person, model=FakeModel(answer))
    assert isinstance(person, Person) and (person.name, person.age) == ("Ann", 3)
    shown = extract("Ann is 3", Person, model=FakeModel(answer), evidence=True)
    assert isinstance(shown["data"], Person)
    assert set(shown) == {"data", "evidence", "confidence"}
    assert shown["evidence"]["/name"] == [0, 3]


def test_extract_with_each_returns_the_items() -> None:
    fake = FakeModel(lambda t, _: json.dumps({"items": [{"name": w, "age": 1} for w in t.split()]}))
    people = extract("Ann Bo", Person, model=fake, each=True)
    assert [(p.name, p.age) for p in people] == [("Ann", 1), ("Bo", 1)]


def test_extract_refuses_what_is_not_a_schema() -> None:
    with pytest.raises(SchemaError, match="got a int") as e:
        extract("x", 5, model=FakeModel(answer))
    assert e.value.exit_code == EXIT_SCHEMA
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        extract("x", {"type": 5}, model=FakeModel(answer))
    assert schema_of(True) == (True, None)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("temperature", float("nan")),  # drew a token the grammar forbids: llama.cpp aborted
        ("temperature", -1.0),
        ("threads", 100_000),  # llama.cpp segfaults
        ("threads", 0),
        ("retries", -1),
        ("max_tokens", -5),
        ("seed", -1),
        ("top_p", 0.0),
        ("abstain_below", "0.3"),
        ("timeout", "5"),
        ("timeout", 0),
        ("truncate", "middle"),
        ("chunk_tokens", 1),
        ("chunk_overlap", -1),
    ],
)
def test_extract_refuses_options_the_command_line_would(option: str, value: Any) -> None:
    fake = FakeModel(answer)
    with pytest.raises(UsageError, match=option):
        extract("Ann is 3", PERSON, model=fake, **{option: value})
    assert fake.calls == []


def test_a_path_is_a_file_never_concise_text(tmp_path: Path) -> None:
    # Path("person") read as concise text was the schema of one field named "person".
    with pytest.raises(SchemaError, match=r"schema file '.*person' not found"):
        extract("Ann is 3", tmp_path / "person", model=FakeModel(answer))
    with pytest.raises(SchemaError, match="not a regular file"):
        extract("Ann is 3", tmp_path, model=FakeModel(answer))


def test_a_class_that_refuses_the_valid_document_is_no_valid_output() -> None:
    class Picky(Person):
        @classmethod
        def model_validate(cls, data: Any) -> Person:
            raise ValueError("1 validation error for Picky\nage\n  must be over 18")

    with pytest.raises(NoValidOutputError, match="Picky refused it: 1 validation error"):
        extract("Ann is 3", Picky, model=FakeModel(answer))


def test_a_strict_pydantic_model_takes_the_json_forms_of_its_types() -> None:
    # Validated in Python mode, a strict model refused "red" for an Enum and a list for a
    # tuple: NoValidOutputError after a whole, valid extraction.
    pydantic = pytest.importorskip(
        "pydantic", reason="pydantic is a test extra: pip install .[test]"
    )
    import enum

    class Color(enum.Enum):
        red = "red"

    class Car(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        model_config = pydantic.ConfigDict(strict=True)
        color: Color
        size: tuple[int, int]

    fake = FakeModel(lambda *_: '{"color": "red", "size": [3, 4]}')
    car = extract("A red car, 3 by 4.", Car, model=fake, grounding=False)
    assert car.color is Color.red and car.size == (3, 4)


def test_a_class_is_asked_in_python_mode_first() -> None:
    # JSON mode first (a review): a lax model's `date | str` gave a date where it gave the text,
    # and an overridden model_validate was skipped.
    class Titled(Person):
        @classmethod
        def model_validate(cls, data: Any) -> Person:
            return cls(str(data["name"]).upper(), int(data["age"]))

        @classmethod
        def model_validate_json(cls, text: str) -> Person:
            raise AssertionError("not asked: model_validate took the document")

    person = extract("Ann is 3", Titled, model=FakeModel(answer))
    assert (person.name, person.age) == ("ANN", 3)


def test_refused_in_both_modes_the_json_modes_error_is_said() -> None:
    # Python mode's list had a strict model's type errors beside the real one.
    pydantic = pytest.importorskip(
        "pydantic", reason="pydantic is a test extra: pip install .[test]"
    )
    import datetime

    class Strict(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        model_config = pydantic.ConfigDict(strict=True)
        name: str
        born: datetime.date

        @pydantic.field_validator("name")  # type: ignore[misc]
        @classmethod
        def ok(cls, value: str) -> str:
            if value != "ok":
                raise ValueError("must be ok")
            return value

    fake = FakeModel(lambda *_: '{"name": "Ann", "born": "2020-01-02"}')
    with pytest.raises(NoValidOutputError, match="must be ok") as info:
        extract("Ann, born 2020-01-02", Strict, model=fake, grounding=False)
    assert "valid date" not in str(info.value)


def test_a_class_s_own_model_validate_has_the_last_word() -> None:
    # Its refusal was passed over for JSON mode, which isn't overridden and took the document.
    class Limited(Person):
        @classmethod
        def model_validate(cls, data: Any) -> Person:
            raise ValueError("age over the limit")

        @classmethod
        def model_validate_json(cls, text: str) -> Person:
            return cls(**json.loads(text))

    with pytest.raises(NoValidOutputError, match="Limited refused it: age over the limit"):
        extract("Ann is 3", Limited, model=FakeModel(answer))


def test_annotations_a_python_caller_put_in_a_schema_are_carried_along() -> None:
    # A date under examples or x-…, a set, a Decimal default: never read, never refused (the
    # first version of the check refused them); in an enum or const they are refused.
    import datetime
    import decimal

    schema = {
        **PERSON,
        "x-added": datetime.date(2020, 1, 1),
        "x-tags": {"a", "b"},
        "properties": {
            "name": {"type": "string", "examples": [datetime.date(2020, 1, 1)]},
            "age": {"type": "integer", "default": decimal.Decimal("1.5")},
        },
    }
    assert extract("Ann is 3", schema, model=FakeModel(answer)) == {"name": "Ann", "age": 3}

    # extract_many's workers name their plan by its fingerprint: a TypeError after the model
    # had loaded. The same annotations give the same fingerprint, other ones another.
    def fingerprint(s: dict[str, Any]) -> str:
        return Plan(s, "a" * 64, 4096, ExtractOptions(), RecordOptions()).fingerprint

    assert fingerprint(schema) == fingerprint(dict(schema))
    # By type alone (a repr may hold an address or a set's order, other in each process).
    assert fingerprint({**schema, "x-o": object()}) == fingerprint({**schema, "x-o": object()})
    assert fingerprint(schema) != fingerprint({**schema, "x-tags": [1]})
    # A $ref may lead anywhere, beyond the places subschemas are: an enum there is checked.
    refd = {
        "type": "object",
        "properties": {"c": {"$ref": "#/x-lib/Price"}},
        "x-lib": {"Price": {"enum": [decimal.Decimal("1.5"), 3]}},
    }
    with pytest.raises(
        SchemaError, match=r"Decimal .* is not a JSON value \(at /x-lib/Price/enum/0"
    ):
        extract("Ann is 3", refd, model=FakeModel(answer))
    # A property named enum or const is no keyword: its annotations are carried along too.
    named = {"type": "object", "properties": {"enum": schema["properties"]["name"]}}
    got = extract("Ann is 3", named, model=FakeModel(lambda *_: '{"enum": "Ann"}'))
    assert got == {"enum": "Ann"}
    with pytest.raises(SchemaError, match=r"is not a JSON value \(at /properties/age/const"):
        extract(
            "Ann is 3",
            {**schema, "properties": {"age": {"const": decimal.Decimal(3)}}},
            model=FakeModel(answer),
        )


def test_library_mistakes_are_its_errors_before_any_generation() -> None:
    import enum

    class Color(enum.Enum):
        red = "red"

    fake = FakeModel(answer)
    # An Enum member in a dict schema: a TypeError from the prompt, after the model loaded.
    with pytest.raises(SchemaError, match=r"a Color .* is not a JSON value"):
        extract("Ann is 3", {"enum": [Color.red]}, model=fake)
    # A lone surrogate in the text or the instruction: UnicodeEncodeError.
    with pytest.raises(InputError, match="not UTF-8"):
        extract("Ann \udcff is 3", PERSON, model=fake)
    with pytest.raises(UsageError, match="instruction is not UTF-8"):
        extract("Ann is 3", PERSON, model=fake, instruction="x\udcff")
    # threads and offline with an open model were ignored.
    with pytest.raises(UsageError, match="an open Engine keeps its own"):
        extract("Ann is 3", PERSON, model=fake, threads=7)
    # max_tokens at the context's size: an InputError saying to let the text be cut in pieces.
    with pytest.raises(UsageError, match="leaves no room in a context"):
        extract("Ann is 3", PERSON, model=fake, max_tokens=fake.n_ctx)
    # A model name that is empty read as the default model (and downloaded it).
    with pytest.raises(ModelError, match="empty model name"):
        extract("Ann is 3", PERSON, model="", offline=True)
    with pytest.raises(ModelError, match="NUL"):
        extract("Ann is 3", PERSON, model="a\0b.gguf", offline=True)
    assert fake.calls == []


def test_a_class_whose_schema_or_validator_fails_raises_qwenjson_errors() -> None:
    class Unresolved(Person):
        @classmethod
        def model_json_schema(cls) -> dict[str, Any]:
            raise NameError("name 'Undefined' is not defined")  # pydantic's forward reference

    with pytest.raises(SchemaError, match="model_json_schema\\(\\) failed: NameError"):
        extract("Ann is 3", Unresolved, model=FakeModel(answer))

    class Checked(Person):
        @classmethod
        def model_validate(cls, data: Any) -> Person:
            raise TypeError("a validator's own mistake")  # pydantic lets it through

    with pytest.raises(NoValidOutputError, match="Checked refused it"):
        extract("Ann is 3", Checked, model=FakeModel(answer))


def test_extract_with_a_real_pydantic_model() -> None:
    pydantic = pytest.importorskip(
        "pydantic", reason="pydantic is a test extra: pip install .[test]"
    )

    class Employee(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        name: str
        age: int = pydantic.Field(ge=0, le=150)

    fake = FakeModel(answer)
    employee = extract("Ann is 3", Employee, model=fake)
    assert isinstance(employee, Employee) and employee.model_dump() == {"name": "Ann", "age": 3}
    assert '"150"' in fake.calls[0][1]  # the grammar came from model_json_schema(): le=150


@pytest.mark.parametrize(
    "options",
    [
        {"truncate": "head", "chunk_tokens": 64},
        {"truncate": "tail", "chunk_overlap": 8},
        {"chunks": False, "chunk_tokens": 64},
    ],
)
def test_extract_refuses_option_pairs_the_command_line_would(options: dict[str, Any]) -> None:
    fake = FakeModel(answer)
    with pytest.raises(UsageError, match="can't be used with"):
        extract("Ann is 3", PERSON, model=fake, **options)
    assert fake.calls == []


def test_an_extractor_needs_an_open_model() -> None:
    # The model's name is what extract() takes; the Extractor failed later with AttributeError.
    with pytest.raises(UsageError, match="needs an open model"):
        Extractor(PERSON, "qwen2.5-0.5b-instruct")  # type: ignore[arg-type]


def test_compiling_in_threads_leaves_the_process_as_it_was() -> None:
    # Each compilation put back the recursion limit and the warnings filters it found: threads
    # put back each other's, and the limit stayed at 25,000 or an "ignore" stayed in front of
    # the caller's own filters (4 runs of 4 with 4 threads, before).
    limit, filters = sys.getrecursionlimit(), list(warnings.filters)
    numbers = itertools.count()

    def work() -> None:
        for _ in range(40):
            n = next(numbers)
            pattern = f"^x{n}[a-z]+[0-9]{{1,{n % 7 + 1}}}$"
            prepare_job(
                {"type": "object", "properties": {"a": {"type": "string", "pattern": pattern}}}
            )

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (sys.getrecursionlimit(), warnings.filters) == (limit, filters)


class SchemaOnly:
    """A class with a schema but nothing to make instances with."""

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return PERSON


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: extract(b"Ann", PERSON), UsageError, "text must be a str"),
        (lambda: extract("Ann", PERSON, model=3), UsageError, "model must be"),
        (lambda: extract("Ann", PERSON, each="false"), UsageError, "each must be True or False"),
        (lambda: extract("Ann", PERSON, evidence=1), UsageError, "evidence must be True or"),
        (lambda: extract("Ann", PERSON, instruction=5), UsageError, "instruction must be text"),
        (lambda: extract("Ann", PERSON, max_token=9), UsageError, "unknown option.*max_token\\b"),
        (lambda: extract("Ann", PERSON, offline="no"), UsageError, "offline must be True or"),
        (
            lambda: extract("Ann", PERSON, keep_empty=True, abstain_below=0.5),
            UsageError,
            "abstain_below can't be used with keep_empty",
        ),
        (lambda: extract("Ann", {"properties": {1: {}}}), SchemaError, "the key 1 is not a str"),
        (lambda: extract("Ann", SchemaOnly), SchemaError, "no model_validate"),
    ],
)
def test_the_library_refuses_wrong_types_with_its_own_errors_before_loading_a_model(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    # (No model is loaded: the default model would be looked up, and isn't on this machine.)
    with pytest.raises(error, match=message):
        call()


def test_the_errors_a_caller_catches_import_from_the_package() -> None:
    import qwenjson
    from qwenjson import errors

    for name in ("UsageError", "SchemaError", "ModelError", "InputError", "NoValidOutputError"):
        assert getattr(qwenjson, name) is getattr(errors, name)
        assert name in qwenjson.__all__


def test_extract_opens_its_model_with_the_context_it_is_given(smollm2: Path) -> None:
    """``n_ctx`` is --ctx for the model ``extract`` opens: a text that fits the default context
    is too long for a smaller one, and a budget the context can't hold is refused before the
    model loads."""
    text = "Ann Lee is a nurse in Leeds. " * 40  # about 360 tokens
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    kept = {"chunks": False, "max_tokens": 16}
    found = extract(text, schema, model=str(smollm2), **kept)
    assert found["name"] and found["name"] in text
    with pytest.raises(InputError, match="the context holds 256;"):
        extract(text, schema, model=str(smollm2), n_ctx=256, **kept)
    with pytest.raises(UsageError, match=r"no room in a context of 300 tokens.*raise n_ctx"):
        extract(text, schema, model="not-loaded.gguf", n_ctx=300, max_tokens=300)
    # 2**32 + 1024: llama.cpp's 32 bits made it a 1024-token context.
    for bad in (255, 1.5, "4096", True, 2**32 + 1024):
        with pytest.raises(UsageError, match=r"n_ctx must be a whole number from 256 to"):
            extract(text, schema, model="not-loaded.gguf", n_ctx=bad)
    with pytest.raises(UsageError, match="an open Engine keeps its own"):
        extract(text, schema, model=FakeModel(lambda t, _: "{}"), n_ctx=4096)
    # The default max_tokens (1024) too, as --ctx 512 without --max-tokens: it was an
    # InputError calling a 10-character text too long.
    with pytest.raises(UsageError, match=r"max_tokens 1024 leaves no room in a context of 512"):
        extract("Tom is 30.", schema, model=str(smollm2), n_ctx=512)
    with (
        Engine(smollm2, n_ctx=512, n_threads=1) as small,
        pytest.raises(UsageError, match=r"1024 leaves no room.*open an Engine with a larger"),
    ):
        extract("Tom is 30.", schema, model=small)


def test_extract_keeps_the_prompt_prefix_on_disk_when_given_a_cache_dir(
    smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cache_dir`` is --cache-dir for the model ``extract`` opens: the second call, with a
    model opened afresh, reads the prompt prefix from disk instead of evaluating it; without
    one nothing is written. (The engines are the real ones, only watched.)"""
    import qwenjson.library as library

    opened: list[Engine] = []
    real_open = library.open_model

    def watched(*args: Any, **kwargs: Any) -> Any:
        engine = real_open(*args, **kwargs)
        opened.append(engine)
        return engine

    monkeypatch.setattr(library, "open_model", watched)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    cache = tmp_path / "kv"
    first = extract("Ann Lee is a nurse.", schema, model=str(smollm2), cache_dir=cache)
    second = extract("Ann Lee is a nurse.", schema, model=str(smollm2), cache_dir=str(cache))
    assert first == second
    assert [e.last_stats.disk_prefix for e in opened] == ["miss", "hit"]
    assert any(cache.iterdir())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "default"))
    extract("Ann Lee is a nurse.", schema, model=str(smollm2))
    assert opened[-1].last_stats.disk_prefix == "none"
    assert not (tmp_path / "default" / "qwenjson" / "kv").exists()  # (verified.json may be)
    for bad in ("", 5):
        with pytest.raises(UsageError, match="cache_dir must be a non-empty path"):
            extract("Ann", schema, model="not-loaded.gguf", cache_dir=bad)
    with pytest.raises(UsageError, match="an open Engine keeps its own"):
        extract("Ann", schema, model=FakeModel(lambda t, _: "{}"), cache_dir=cache)


def test_a_cut_text_is_a_warning_at_the_callers_line(smollm2: Path) -> None:
    """What the command line says on stderr (``--truncate``: the input was cut) a library caller
    gets as a ``QwenJsonWarning`` pointing at its own call; a text that fits gets none."""
    from qwenjson import QwenJsonWarning

    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    text = "Ann Lee is a nurse in Leeds. " * 60  # about 540 tokens: over a 512-token context
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = extract(text, schema, model=str(smollm2), n_ctx=512, max_tokens=16, truncate="head")
        extract("Ann Lee is a nurse.", schema, model=str(smollm2), max_tokens=16)
    assert found["name"] in text
    assert [w.category for w in caught] == [QwenJsonWarning]
    assert re.fullmatch(
        r"input cut from \d+ to \d+ tokens \(--truncate head\)", str(caught[0].message)
    )
    assert caught[0].filename == __file__


def test_a_text_over_what_the_command_line_reads_is_an_input_error(smollm2: Path) -> None:
    # 32 MiB as UTF-8 (in characters, a quarter of it in Chinese): a library caller's 40 MB
    # text was cut into pieces for as long as the caller waited.
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    for text in ("a" * (32 << 20) + "b", "中" * ((32 << 20) // 3 + 1)):
        with pytest.raises(InputError, match="the text is larger than 32 MiB"):
            extract(text, schema, model=FakeModel(lambda t, _: "{}"))
    assert extract("中" * 1000, schema, model=FakeModel(lambda t, _: "{}")) == {}


def test_the_package_names_only_what_it_has_to_a_type_checker(tmp_path: Path) -> None:
    # Its module __getattr__ returned Any to mypy: any name imported from qwenjson type-checked,
    # typos too. The documented ones still do, Engine among them (the README's open Engine).
    script = tmp_path / "user.py"
    script.write_text(
        "from qwenjson import Engine, UsageError, extract\n"
        "from qwenjson import extrakt\n"
        "engine: Engine | None = None\n"
        "error: type[Exception] = UsageError\n"
        "found = extract\n",
        encoding="utf-8",
    )
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "extrakt" in errors[0], r.stdout


@pytest.mark.parametrize("options", [{}, {"chunks": False}, {"truncate": "head"}])
def test_a_lone_surrogate_is_an_input_error_before_the_real_tokenizer_sees_it(
    smollm2: Path, options: dict[str, Any]
) -> None:
    # The fake model above counts tokens without encoding; the real one encodes to UTF-8.
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    with pytest.raises(InputError, match="not UTF-8"):
        extract("Tom \ud800 is 3", schema, model=str(smollm2), threads=1, **options)
