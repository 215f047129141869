"""CLI plumbing: exit codes, stdout/stderr discipline, retries. The model is faked here only;
tests/test_end_to_end.py runs the same paths on a real GGUF."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qwenjson import cli, pipeline
from qwenjson.errors import (
    EXIT_INPUT,
    EXIT_MODEL,
    EXIT_NO_VALID_OUTPUT,
    EXIT_SCHEMA,
    EXIT_USAGE,
)
from tests.fakes import FakeModel
from tests.helpers import Run

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
}


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON), encoding="utf-8")
    return path


NOTE = "请创建一个叫李明、年龄28岁、喜欢读书和跑步的人的信息".encode()


def test_prints_one_compact_document(
    run: Callable[..., Run], fake: FakeModel, schema_file: Path
) -> None:
    fake.answers = ['{"name": "李明", "age": 28}']
    r = run("extract", "--schema", str(schema_file), stdin=NOTE)
    assert (r.code, r.out, r.err) == (0, '{"name":"李明","age":28}\n', "")
    assert fake.closed
    messages, grammar = fake.calls[0]
    assert messages[-1] == {"role": "user", "content": NOTE.decode()}
    assert "root ::=" in grammar


def test_empty_optional_members_are_dropped_unless_kept(
    run: Callable[..., Run], fake: FakeModel, schema_file: Path
) -> None:
    # "name" is required: its "" stays; "hobbies" items are strings in a list, not members.
    answer = '{"name": "", "age": 3, "hobbies": [""]}'
    fake.answers = [answer, answer]
    r = run("extract", "--schema", str(schema_file), "--no-grounding", stdin=b"x")
    assert (r.code, r.out) == (0, '{"name":"","age":3,"hobbies":[""]}\n')
    # Grounded (the default), an empty list item is one the text had no value for: it goes.
    r = run("extract", "--schema", str(schema_file), stdin=b"x")
    assert (r.code, r.out) == (0, '{"name":"","age":3,"hobbies":[]}\n')
    schema = json.dumps({**PERSON, "properties": {**PERSON["properties"], "note": {}}})
    fake.answers = ['{"name": "a", "age": 3, "note": ""}', '{"name": "a", "age": 3, "note": ""}']
    assert run("extract", "--schema", schema, stdin=b"x").out == '{"name":"a","age":3}\n'
    kept = run("extract", "--schema", schema, "--keep-empty", stdin=b"x")
    assert kept.out == '{"name":"a","age":3,"note":""}\n'


def test_threads_for_decoding_and_the_prompt_reach_the_model(
    run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, schema_file: Path
) -> None:
    seen: list[dict[str, object]] = []

    def open_model(*args: object, **kwargs: object) -> FakeModel:
        seen.append(kwargs)
        return FakeModel(answers=['{"name":"a","age":1}'])

    monkeypatch.setattr(pipeline, "open_model", open_model)
    args = ("extract", "--schema", str(schema_file), "--threads", "1", "--prompt-threads", "2")
    assert run(*args, stdin=b"x").code == 0
    assert (seen[0]["threads"], seen[0]["prompt_threads"]) == (1, 2)
    assert run("extract", "--schema", str(schema_file), stdin=b"x").code == 0
    assert (seen[1]["threads"], seen[1]["prompt_threads"]) == (None, None)


def test_pretty(run: Callable[..., Run], fake: FakeModel, schema_file: Path) -> None:
    fake.answers = ['{"name":"a","age":1}']
    r = run("extract", "--schema", str(schema_file), "--pretty", stdin=b"x")
    assert r.code == 0
    assert r.out == '{\n  "name": "a",\n  "age": 1\n}\n'


def test_input_file_and_inline_schema(
    run: Callable[..., Run], fake: FakeModel, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_bytes(NOTE)
    fake.answers = ['{"n":"李明"}']
    r = run(
        "extract",
        "--schema",
        '{"type":"object","properties":{"n":{"type":"string"}}}',
        "--input",
        str(note),
    )
    assert (r.code, r.out) == (0, '{"n":"李明"}\n')
    assert fake.calls[0][0][-1]["content"] == NOTE.decode()


def test_retry_feeds_validation_errors_back(
    run: Callable[..., Run], fake: FakeModel, schema_file: Path
) -> None:
    fake.answers = ['{"name":"a","age":200}', '{"name":"a","age":20}']
    r = run("extract", "--schema", str(schema_file), stdin=b"text")
    assert (r.code, r.out) == (0, '{"name":"a","age":20}\n')
    second = fake.calls[1][0]
    assert second[-2] == {"role": "assistant", "content": '{"name":"a","age":200}'}
    assert "/age" in second[-1]["content"] and "maximum" in second[-1]["content"]


def test_invalid_after_all_retries_exits_5_with_pointer(
    run: Callable[..., Run], fake: FakeModel, schema_file: Path
) -> None:
    fake.answers = ['{"name":"a","age":200}'] * 2
    r = run("extract", "--schema", str(schema_file), "--retries", "1", stdin=b"text")
    assert (r.code, r.out) == (EXIT_NO_VALID_OUTPUT, "")
    assert r.err.startswith("Error: no valid document after 2 attempt(s)")
    assert "/age: 200 is greater than the maximum of 150" in r.err
    assert fake.closed


def test_truncated_output_is_never_printed(
    run: Callable[..., Run], fake: FakeModel, schema_file: Path
) -> None:
    fake.answers = ['{"name":"a","ag']
    fake.finish = "length"
    r = run("extract", "--schema", str(schema_file), "--max-tokens", "5", stdin=b"text")
    assert (r.code, r.out) == (EXIT_NO_VALID_OUTPUT, "")
    assert "not complete after 5 tokens" in r.err


@pytest.mark.parametrize(
    ("schema_text", "message"),
    [
        (None, "not found"),
        (
            "{not json",
            "is not valid JSON: Expecting property name enclosed in double quotes "
            "at line 1, column 2",
        ),
        ('{"type": "strin"}', "not a valid JSON Schema"),
        (
            '{"type": "object", "properties": {"a": {"minimum": "zero"}}}',
            "(at /properties/a/minimum)",
        ),
        ("[1, 2]", "expected an object or a boolean"),
        ('{"$schema": "https://example.com/my-draft"}', "unknown $schema"),
    ],
)
def test_bad_schema_exits_3(
    run: Callable[..., Run], fake: FakeModel, tmp_path: Path, schema_text: str | None, message: str
) -> None:
    path = tmp_path / "schema.json"
    if schema_text is not None:
        path.write_text(schema_text, encoding="utf-8")
    r = run("extract", "--schema", str(path), stdin=b"text")
    assert (r.code, r.out) == (EXIT_SCHEMA, "")
    assert r.err.startswith("Error: ") and message in r.err
    assert "Traceback" not in r.err
    assert fake.calls == []


def test_unsupported_keyword_names_keyword_and_pointer(
    run: Callable[..., Run], fake: FakeModel, tmp_path: Path
) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"$dynamicRef": "#x"}}}))
    r = run("extract", "--schema", str(path), stdin=b"text")
    assert (r.code, r.out) == (EXIT_SCHEMA, "")
    assert "$dynamicRef" in r.err and "/properties/a" in r.err


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"", "input is empty"),
        (b"  \n\t\n", "input is empty"),
        ("李明".encode("gbk"), "stdin is not UTF-8 text (invalid byte 0xc0 at offset 0)"),
    ],
)
def test_bad_input_exits_6(
    run: Callable[..., Run], fake: FakeModel, schema_file: Path, stdin: bytes, message: str
) -> None:
    r = run("extract", "--schema", str(schema_file), stdin=stdin)
    assert (r.code, r.out) == (EXIT_INPUT, "")
    assert r.err == f"Error: {message}" + r.err[len("Error: ") + len(message) :]
    assert fake.calls == []


def test_missing_input_file_exits_6(
    run: Callable[..., Run], fake: FakeModel, schema_file: Path, tmp_path: Path
) -> None:
    r = run("extract", "--schema", str(schema_file), "--input", str(tmp_path / "nope.txt"))
    assert (r.code, r.out) == (EXIT_INPUT, "")
    assert "nope.txt" in r.err and "not found" in r.err


def test_unknown_option_is_usage_error(run: Callable[..., Run], schema_file: Path) -> None:
    r = run("extract", "--schema", str(schema_file), "--no-such-option", stdin=b"x")
    assert (r.code, r.out) == (EXIT_USAGE, "")
    assert "Error" in r.err and "--no-such-option" in r.err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.gguf", "not found"),
        (lambda d: _write(d / "fake.gguf", b"not a gguf at all"), "not a GGUF"),
    ],
)
def test_bad_model_path_exits_4(
    run: Callable[..., Run],
    schema_file: Path,
    tmp_path: Path,
    make: Callable[[Path], Path],
    message: str,
) -> None:
    model = make(tmp_path)
    r = run("extract", "--schema", str(schema_file), "--model", str(model), stdin=b"text")
    assert (r.code, r.out) == (EXIT_MODEL, "")
    assert r.err.startswith("Error: ") and message in r.err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    # typer vendors its own click: recognise groups by their `commands`, not by click's class.
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_help_with_an_example(run: Callable[..., Run]) -> None:
    import typer.main

    names = list(_commands(typer.main.get_command(cli.app)))
    assert {("extract",), ("grammar",), ("schema", "check"), ("schema", "dsl")} <= set(names)
    for name in names:
        r = run(*name, "--help")
        assert r.code == 0, name
        assert "Example: qwenjson " + " ".join(name) in r.out, name


def test_grammar_command_prints_gbnf(run: Callable[..., Run], schema_file: Path) -> None:
    r = run("grammar", "--schema", str(schema_file))
    assert r.code == 0 and r.err == ""
    assert r.out.startswith("root ::=") or "\nroot ::=" in r.out
    assert r.out.endswith("\n")


def test_library_import_does_not_load_cli() -> None:
    import subprocess
    import sys

    code = (
        "import sys, qwenjson; from qwenjson import compile_schema, extract; "
        "compile_schema({'type': 'string'}); "
        "print(sorted(m for m in ('typer', 'rich', 'llama_cpp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_schema_check_shows_control_characters_in_names_as_escapes(run: Callable[..., Run]) -> None:
    # A key with a line break split one row in two; an escape code reached the terminal.
    r = run("schema", "check", '{"properties": {"a\\nb": {"type": "string"}, "c\\u001bd": {}}}')
    assert r.code == 0, r.err
    rows = r.out.splitlines()
    assert "enforced         /properties/a\\nb type" in rows
    assert not any("\x1b" in row for row in rows)
    assert all(row.split()[0] in ("enforced", "annotation", "validated-after") for row in rows)
