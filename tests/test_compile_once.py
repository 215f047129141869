"""One metaschema check and one compile per plan, in every mode: the command line (one
document, ``--each``, ``--jsonl``, both, ``--checkpoint``, a text in pieces), the library's
``extract()``, and a Ray actor's copy of the plan. The compiler is the real one, counted by
wrapping ``Compiler.compile`` (every entry point to a compile goes through it); the model is
the fake (this is plumbing)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import qwenjson
from qwenjson import actors, pipeline, plan, validate
from qwenjson.library import extract
from qwenjson.schema.compiler import Compiler
from tests.fakes import FakeModel
from tests.helpers import Run

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


class Counts:
    """The schemas compiled and checked against their metaschema, in order."""

    def __init__(self) -> None:
        self.compiled: list[Any] = []
        self.checked: list[Any] = []

    def once(self, each: bool) -> None:
        """Exactly one check of PERSON and one compile: of PERSON, or its ``--each`` wrapper."""
        assert len(self.checked) == 1, f"checked {len(self.checked)} times"
        assert len(self.compiled) == 1, f"compiled {len(self.compiled)} times"
        assert self.checked == [PERSON]
        assert self.compiled == [plan.each_schema(PERSON) if each else PERSON]


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    seen = Counts()
    compile_real = Compiler.compile
    check_real = validate.check_metaschema

    def compile_counted(self: Compiler) -> str:
        seen.compiled.append(self.schema)
        return compile_real(self)

    def check_counted(schema: Any) -> None:
        seen.checked.append(schema)
        check_real(schema)

    monkeypatch.setattr(Compiler, "compile", compile_counted)
    for module in (validate, pipeline, plan):  # each imports it by name
        monkeypatch.setattr(module, "check_metaschema", check_counted)
    return seen


def answer(text: str, _: int) -> str:
    """A person named after the text, or with ``--each`` two of them."""
    person = {"name": text, "age": len(text)}
    if "list" in text:
        return json.dumps({"items": [person, {"name": "b", "age": 2}]})
    return json.dumps(person)


# (extra arguments, stdin, expected stdout)
MODES = {
    "one document": ((), b"a", '{"name":"a","age":1}\n'),
    "--each": (("--each",), b"list", '{"name":"list","age":4}\n{"name":"b","age":2}\n'),
    "--jsonl": (("--jsonl",), b"a\nbb\n", '{"name":"a","age":1}\n{"name":"bb","age":2}\n'),
    "--jsonl --each": (
        ("--jsonl", "--each"),
        b"list\nlist\n",
        '{"name":"list","age":4}\n{"name":"b","age":2}\n' * 2,
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_the_command_line_checks_and_compiles_once(
    mode: str, counts: Counts, fake: FakeModel, run: Callable[..., Run]
) -> None:
    args, stdin, out = MODES[mode]
    fake.answer = answer
    r = run("extract", "-s", json.dumps(PERSON), *args, stdin=stdin)
    assert (r.code, r.out) == (0, out), r.err
    counts.once(each="--each" in args)


def test_a_checkpointed_document_checks_and_compiles_once(
    counts: Counts, fake: FakeModel, run: Callable[..., Run], tmp_path: Path
) -> None:
    fake.answer = answer
    ck = str(tmp_path / "ck")
    r = run("extract", "-s", json.dumps(PERSON), "--each", "--checkpoint", ck, stdin=b"list")
    assert (r.code, r.out) == (0, '{"name":"list","age":4}\n{"name":"b","age":2}\n'), r.err
    counts.once(each=True)


def test_a_text_in_pieces_checks_and_compiles_once(
    counts: Counts, fake: FakeModel, run: Callable[..., Run]
) -> None:
    fake.answer = answer
    fake.context = 600  # the fake's tokens are characters: this text takes several pieces
    text = "\n\n".join(f"Paragraph {i} of a long list." for i in range(40))
    r = run(
        "extract", "-s", json.dumps(PERSON), "--each", "--max-tokens", "100", stdin=text.encode()
    )
    assert r.code == 0, r.err
    assert len(fake.users) > 2  # really in pieces
    counts.once(each=True)


@pytest.mark.parametrize("each", [False, True])
def test_the_library_checks_and_compiles_once(each: bool, counts: Counts) -> None:
    result = extract("list" if each else "a", PERSON, model=FakeModel(answer), each=each)
    expected: Any = {"name": "a", "age": 1}
    if each:
        expected = [{"name": "list", "age": 4}, {"name": "b", "age": 2}]
    assert result == expected
    counts.once(each)


def test_a_ray_actor_runs_the_plan_it_was_sent_without_compiling(
    counts: Counts, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip(
        "ray", reason="the ray extra is not installed (pip install -e '.[ray]')"
    )
    fake = FakeModel(answer)
    monkeypatch.setattr(actors, "open_model", lambda *a, **k: fake)
    job = plan.prepare_job(PERSON, each=True)  # the driver's, as cli_extract does it
    sent = plan.Plan(PERSON, "", 4096, record=plan.RecordOptions(each=True), job=job)
    # Sent as Ray sends it: by its pickler, to be unpickled on a node.
    spec = ray.cloudpickle.loads(ray.cloudpickle.dumps(actors.WorkerSpec(sent)))
    worker = actors.RecordWorker(spec)
    assert worker.failure is None
    result = worker.run("list")
    assert result.error is None
    assert [doc for _, doc in result.events] == ['{"name":"list","age":4}', '{"name":"b","age":2}']
    counts.once(each=True)


def test_a_worker_of_another_version_unpickles_nothing() -> None:
    # The driver's spec may hold classes this version lacks: a node that runs another qwenjson
    # says so (hello's version) before unpickling it or loading a model.
    worker = actors.RecordWorker(b"not a pickle of this version's classes", "0.0.0-other")
    assert (worker.failure, worker.runner) == (None, None)
    assert worker.hello()["version"] == qwenjson.__version__
