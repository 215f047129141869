"""Batches, --each streams, checkpoints, timeouts and truncation: the plumbing on a fake model.

The fake answers from the record's text and streams its answer through ``on_text`` in small
pieces, as the engine does; tests/test_signals.py and the ``model`` tests below run the same
paths through ``python -m qwenjson`` on a real GGUF.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwenjson.batch import ErrorLog, RecordFailed, SomeRecordsFailed, run_batch
from qwenjson.checkpoint import Checkpoint
from qwenjson.errors import (
    EXIT_INPUT,
    EXIT_NO_VALID_OUTPUT,
    EXIT_OUTPUT,
    EXIT_SOME_RECORDS_FAILED,
    EXIT_TIMEOUT,
    InputError,
    NoValidOutputError,
    OutputError,
    TimeoutExpired,
    UsageError,
)
from qwenjson.generation import GenerationResult
from qwenjson.pipeline import ExtractOptions
from qwenjson.plan import RecordOptions, each_schema, job_fingerprint, plan_for, prepare_job
from qwenjson.records import MAX_INPUT_BYTES, BatchOptions, parse_record, read_lines
from qwenjson.runner import Limits, Runner, TotalTimeoutExpired, fit_to_context
from qwenjson.stream import FileMark, ItemScanner, LineOutput
from tests.fakes import FakeModel
from tests.helpers import REAL_PERSON, TEXTS, Run, qwenjson_argv, running

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
}


def person(text: str) -> str:
    """The fake's answer: the text as the name, its length as the age."""
    return json.dumps({"name": text, "age": len(text)}, ensure_ascii=False)


def runner(
    fake: FakeModel,
    schema: Any = PERSON,
    *,
    each: bool = False,
    options: ExtractOptions | None = None,
    **record: Any,
) -> Runner:
    return Runner(plan_for(schema, fake, options, RecordOptions(each=each, **record)), fake)


def lines_of(data: bytes) -> list[bytes]:
    return list(read_lines(io.BytesIO(data)))


# -- records -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field_name", "message"),
    [
        (b"", None, "empty line"),
        (b"  \t", None, "empty line"),
        ("李明".encode("gbk"), None, "not UTF-8 text (invalid byte 0xc0 at offset 0)"),
        (b"plain text", "text", "not a JSON object (Expecting value at column 1)"),
        (b"[1, 2]", "text", "not a JSON object (an array)"),
        (b'{"text": "a', "text", "not a JSON object (Unterminated string starting at column 10)"),
        (b'{"text": [1]}', "text", "field 'text' is an array, not a string"),
        (b'{"id": 1}', "text", "no field 'text' in the record"),
        (b'{"text": 5}', "text", "field 'text' is a number, not a string"),
        (b'{"text": " "}', "text", "field 'text' is empty"),
        (b'{"text": "a", "extracted": 1}', "text", "the record already has a field 'extracted'"),
    ],
)
def test_bad_records_are_input_errors(raw: bytes, field_name: str | None, message: str) -> None:
    with pytest.raises(InputError) as e:
        parse_record(raw, BatchOptions(field=field_name))
    assert str(e.value).startswith(message)


def test_field_record_keeps_other_fields_and_puts_the_document_under_into() -> None:
    text, shape = parse_record(
        '{"id": 7, "text": "李明 28", "meta": {"k": [1]}}'.encode(),
        BatchOptions(field="text", into="person"),
    )
    assert text == "李明 28"
    assert json.loads(shape('{"name":"李明"}')) == {
        "id": 7,
        "meta": {"k": [1]},
        "person": {"name": "李明"},
    }
    _, alone = parse_record(b'{"text": "x"}', BatchOptions(field="text"))
    assert alone('{"a":1}') == '{"extracted":{"a":1}}'
    # A BOM on the first line of a UTF-8 file is not part of the record.
    assert parse_record(b"\xef\xbb\xbfhello", BatchOptions(), first=True)[0] == "hello"


def test_read_lines_strips_terminators_and_keeps_a_last_line_without_one() -> None:
    assert lines_of(b"a\r\nb\n\nc") == [b"a", b"b", b"", b"c"]


# -- batches -----------------------------------------------------------------------------------


def test_mixed_batch_writes_good_records_in_order_and_records_the_bad_ones(
    tmp_path: Path,
) -> None:
    fake = FakeModel(lambda text, _: person(text))
    data = b'{"id":1,"text":"Ann"}\n\n\xff\xfe\n{"id":4}\n{"id":5,"text":"Bo"}\n'
    out = io.BytesIO()
    errors = ErrorLog(tmp_path / "errors.jsonl")
    with pytest.raises(SomeRecordsFailed) as e:
        run_batch(
            lines_of(data),
            runner(fake),
            BatchOptions(field="text"),
            output=LineOutput(out),
            errors=errors,
        )
    errors.close()
    assert e.value.exit_code == EXIT_SOME_RECORDS_FAILED
    assert str(e.value) == "3 of 5 record(s) failed"
    assert out.getvalue().decode().splitlines() == [
        '{"id":1,"extracted":{"name":"Ann","age":3}}',
        '{"id":5,"extracted":{"name":"Bo","age":2}}',
    ]
    logged = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert logged == [
        {"line": 2, "error": "empty line", "exit_code": EXIT_INPUT},
        {
            "line": 3,
            "error": "not UTF-8 text (invalid byte 0xff at offset 0)",
            "exit_code": EXIT_INPUT,
        },
        {"line": 4, "error": "no field 'text' in the record", "exit_code": EXIT_INPUT},
    ]
    assert fake.users == ["Ann", "Bo"]  # one model, one extractor, only the good records


def test_all_good_returns_a_report() -> None:
    fake = FakeModel(lambda text, _: person(text))
    out = io.BytesIO()
    report = run_batch(lines_of(b"a\nbb\n"), runner(fake), output=LineOutput(out))
    assert (report.records, report.succeeded, report.failed) == (2, 2, 0)
    assert out.getvalue() == b'{"name":"a","age":1}\n{"name":"bb","age":2}\n'


def test_errors_go_to_the_show_callback_as_text_by_default() -> None:
    shown: list[str] = []
    with pytest.raises(SomeRecordsFailed):
        run_batch(
            lines_of(b"\nx\n"),
            runner(FakeModel(lambda t, _: person(t))),
            output=LineOutput(io.BytesIO()),
            errors=ErrorLog(show=shown.append),
        )
    assert shown == ["line 1: empty line"]


def test_on_error_stop_raises_the_records_own_error_and_goes_no_further() -> None:
    fake = FakeModel(lambda text, _: person(text))
    out = io.BytesIO()
    with pytest.raises(RecordFailed) as e:
        run_batch(
            lines_of(b"a\n\nc\n"),
            runner(fake),
            BatchOptions(on_error="stop"),
            output=LineOutput(out),
        )
    assert (e.value.exit_code, str(e.value)) == (EXIT_INPUT, "line 2: empty line")
    assert out.getvalue() == b'{"name":"a","age":1}\n'
    assert fake.users == ["a"]


def test_on_error_skip_says_nothing_per_record_but_exits_8() -> None:
    shown: list[str] = []
    with pytest.raises(SomeRecordsFailed):
        run_batch(
            lines_of(b"\nx\n"),
            runner(FakeModel(lambda t, _: person(t))),
            BatchOptions(on_error="skip"),
            output=LineOutput(io.BytesIO()),
            errors=ErrorLog(show=shown.append),
        )
    assert shown == []


def test_invalid_documents_fail_their_record_with_exit_5_after_retries() -> None:
    fake = FakeModel(lambda text, _: '{"name":"x","age":999}' if text == "bad" else person(text))
    errors: list[str] = []
    with pytest.raises(SomeRecordsFailed) as e:
        run_batch(
            lines_of(b"bad\nok\n"),
            runner(fake, options=ExtractOptions(retries=1)),
            output=LineOutput(io.BytesIO()),
            errors=ErrorLog(show=errors.append),
        )
    assert fake.users == ["bad", "bad", "ok"]
    assert [x.exit_code for x in e.value.report.errors] == [EXIT_NO_VALID_OUTPUT]
    assert errors[0].startswith("line 1: no valid document after 2 attempt(s)")
    assert "/age: 999 is greater than the maximum of 150" in errors[0]


# -- --each ------------------------------------------------------------------------------------


def items_answer(names: list[str]) -> str:
    return json.dumps({"items": [{"name": n, "age": len(n)} for n in names]})


def test_each_emits_every_item_as_soon_as_it_closes() -> None:
    fake = FakeModel(lambda text, _: items_answer(text.split()))
    emitted: list[tuple[str, int]] = []
    r = runner(fake, each=True)
    r.run("Ann Bob Cy", lambda doc: emitted.append((doc, len(fake.events))))
    assert [doc for doc, _ in emitted] == [
        '{"name":"Ann","age":3}',
        '{"name":"Bob","age":3}',
        '{"name":"Cy","age":2}',
    ]
    # Each item went out while the model was still generating, not after it returned.
    assert all("return" not in fake.events[:n] for _, n in emitted)
    assert emitted[0][1] < emitted[1][1] < emitted[2][1]


def test_each_drops_empty_members_item_by_item_unless_kept() -> None:
    schema = {**PERSON, "properties": {**PERSON["properties"], "city": {"type": "string"}}}

    def answer(text: str, _: int) -> str:
        return json.dumps({"items": [{"name": n, "age": 1, "city": ""} for n in text.split()]})

    for keep, want in (
        (False, '{"name":"Ann","age":1}'),
        (True, '{"name":"Ann","age":1,"city":""}'),
    ):
        emitted: list[str] = []
        r = runner(FakeModel(answer), schema, each=True, options=ExtractOptions(keep_empty=keep))
        result = r.run("Ann Bob", emitted.append)
        assert emitted == [want, want.replace("Ann", "Bob")]
        # The document itself stays as generated (it is what the printed items are checked on).
        assert result.data["items"][0]["city"] == ""


def test_each_with_field_wraps_every_item() -> None:
    out = io.BytesIO()
    run_batch(
        lines_of(b'{"id":"a","text":"Ann Bo"}\n{"id":"b","text":"Cy"}\n'),
        runner(FakeModel(lambda t, _: items_answer(t.split())), each=True),
        BatchOptions(field="text", into="person"),
        output=LineOutput(out),
    )
    assert out.getvalue().decode().splitlines() == [
        '{"id":"a","person":{"name":"Ann","age":3}}',
        '{"id":"a","person":{"name":"Bo","age":2}}',
        '{"id":"b","person":{"name":"Cy","age":2}}',
    ]


def test_each_invalid_first_item_is_retried_and_nothing_is_printed_twice() -> None:
    def answer(text: str, attempt: int) -> str:
        if attempt == 1:
            return '{"items":[{"name":"A","age":-1},{"name":"B","age":2}]}'
        return items_answer(["A", "B"])

    fake = FakeModel(answer)
    emitted: list[str] = []
    runner(fake, each=True).run("x", emitted.append)
    assert emitted == ['{"name":"A","age":1}', '{"name":"B","age":1}']
    assert len(fake.users) == 2


def test_each_invalid_item_after_printed_ones_fails_without_retry() -> None:
    fake = FakeModel(lambda t, _: '{"items":[{"name":"A","age":1},{"name":"B","age":-5}]}')
    emitted: list[str] = []
    with pytest.raises(NoValidOutputError) as e:
        runner(fake, each=True).run("x", emitted.append)
    assert emitted == ['{"name":"A","age":1}']
    assert "item 2 failed validation after 1 item(s) were printed" in str(e.value)
    assert "/age" in str(e.value)
    assert len(fake.users) == 1
    # The model was stopped when the bad item closed, not run to the end.
    assert "return" not in fake.events


TAGGED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    },
    "required": ["name", "tags"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("each", [False, True])
def test_an_item_whose_unique_list_repeats_is_printed_without_the_repeat(each: bool) -> None:
    # The second item's repeat: as a whole document it was taken out; item by item, the
    # first item was out already and the record failed (and only when the repeat came later).
    written = (
        '{"items": [{"name": "Ann", "tags": ["red", "blue"]}, '
        '{"name": "Bob", "tags": ["red", "green", "red"]}]}'
    )
    fake = FakeModel(lambda t, _: written)
    emitted: list[str] = []
    schema = (
        TAGGED
        if each
        else {"type": "object", "properties": {"items": {"type": "array", "items": TAGGED}}}
    )
    runner(fake, schema, each=each, options=ExtractOptions(retries=0)).run(
        "Ann: red, blue. Bob: red, green, red.", emitted.append
    )
    items = [
        {"name": "Ann", "tags": ["red", "blue"]},
        {"name": "Bob", "tags": ["red", "green"]},
    ]
    assert [json.loads(e) for e in emitted] == (items if each else [{"items": items}])


def test_each_works_with_a_generator_that_does_not_stream() -> None:
    class Quiet(FakeModel):
        def generate(self, *a: Any, **k: Any) -> GenerationResult:
            k["on_text"] = None
            return super().generate(*a, **k)

    emitted: list[str] = []
    runner(Quiet(lambda t, _: items_answer(["Z"])), each=True).run("x", emitted.append)
    assert emitted == ['{"name":"Z","age":1}']


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=6,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=50),
    spaced=st.booleans(),
)
def test_scanner_finds_exactly_the_items_whatever_the_chunking(
    items: list[Any], cuts: list[int], spaced: bool
) -> None:
    doc = {"other": {"items": [0]}, "items": items} if spaced else {"items": items}
    text = json.dumps(doc, ensure_ascii=False, indent=1 if spaced else None)
    text += " " + text  # a second attempt
    scanner = ItemScanner()
    found: list[Any] = []
    pos, i = 0, 0
    while pos < len(text):
        step = cuts[i % len(cuts)]
        found.extend(json.loads(t) for t in scanner.feed(text[pos : pos + step]))
        pos, i = pos + step, i + 1
    assert found == items + items
    assert scanner.attempt == 2


def test_each_schema_keeps_definitions_and_self_references() -> None:
    tree = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"leaf": {"type": "string"}, "again": {"$ref": "#"}},
        "type": "object",
        "properties": {
            "name": {"$ref": "#/$defs/leaf"},
            "kids": {"type": "array", "items": {"$ref": "#"}},
            "twin": {"$ref": "#/properties/name"},
            "copy": {"$ref": "#/$defs/again"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    before = json.dumps(tree)
    wrapped = each_schema(tree)
    assert isinstance(wrapped, dict)
    assert json.dumps(tree) == before  # the caller's schema is not changed
    assert wrapped["$defs"]["leaf"] == {"type": "string"}
    v = jsonschema.Draft202012Validator(wrapped)
    good = {"name": "a", "kids": [{"name": "b", "kids": []}], "copy": {"name": "c"}}
    assert v.is_valid({"items": [good, {"name": "z", "twin": "t"}]})
    assert not v.is_valid({"items": [{"name": "a", "kids": [{"name": 1}]}]})
    assert not v.is_valid({"items": [{"name": "a", "copy": {"nope": 1}}]})
    assert not v.is_valid({"items": [{"name": "a", "twin": 3}]})
    assert not v.is_valid({"items": [], "more": 1})
    prepare_job(tree, each=True)  # and the compiler takes it


# -- budgets -----------------------------------------------------------------------------------


def test_input_too_long_is_an_input_error_with_token_counts() -> None:
    fake = FakeModel(lambda t, _: person(t))
    r = runner(fake, options=ExtractOptions(max_tokens=50), chunks=False)
    prompt = len(fake.render_chat(r.extractor.messages("")))
    fake.context = prompt + 50 + 20
    with pytest.raises(InputError) as e:
        r.run("x" * 30, lambda _: None)
    message = str(e.value)
    assert f"the prompt takes {prompt + 30} tokens (the text 30)" in message
    assert f"the context holds {prompt + 70}" in message and "--truncate" in message
    assert fake.users == []


@pytest.mark.parametrize("each", [False, True])
@pytest.mark.parametrize("keep", ["head", "tail"])
def test_evidence_of_a_cut_input_is_into_the_input_as_given(keep: str, each: bool) -> None:
    # A review (/tmp/rev-long): with --truncate tail, offsets were into the kept tail.
    answer = (lambda t, _: items_answer([t])) if each else (lambda t, _: person(t))
    fake = FakeModel(answer)
    options = ExtractOptions(max_tokens=50, evidence=True)
    r = runner(fake, options=options, truncate=keep, each=each)
    fake.context = len(fake.render_chat(r.extractor.messages(""))) + 50 + 10
    # (Blanks where the cuts go: a word the cut went through is no value, as at a piece's edge.)
    text = "0123456789 abcdefghij klmnopqrst"
    out: list[str] = []
    r.run(text, out.append)
    (shown,) = map(json.loads, out)
    kept = fake.users[0]
    start, end = shown["evidence"]["/name"]
    assert text[start:end] == shown["data"]["name"] == kept
    assert (start, end) == ((0, 10) if keep == "head" else (22, 32))


@pytest.mark.parametrize("keep", ["head", "tail"])
def test_a_word_the_truncation_cut_through_is_no_value(keep: str) -> None:
    # As at a piece's edge: "0123456789" of "0123456789abc…" is no word of the input.
    fake = FakeModel(lambda t, _: person(t))
    r = runner(fake, options=ExtractOptions(max_tokens=50, evidence=True), truncate=keep)
    fake.context = len(fake.render_chat(r.extractor.messages(""))) + 50 + 10
    out: list[str] = []
    r.run("0123456789abcdefghijklmnopqrstuv", out.append)
    (shown,) = map(json.loads, out)
    assert shown["evidence"].get("/name") is None


@pytest.mark.parametrize(("keep", "expected"), [("head", "0123456789"), ("tail", "mnopqrstuv")])
def test_truncate_keeps_the_chosen_end(keep: str, expected: str) -> None:
    fake = FakeModel(lambda t, _: person(t))
    r = runner(fake, options=ExtractOptions(max_tokens=50), truncate=keep)
    fake.context = len(fake.render_chat(r.extractor.messages(""))) + 50 + 10
    notices: list[str] = []
    out: list[str] = []
    r.run("0123456789abcdefghijklmnopqrstuv", out.append, notice=notices.append)
    assert fake.users == [expected]
    assert notices == [f"input cut from 32 to 10 tokens (--truncate {keep})"]
    assert fit_to_context(r.extractor, "short", "head") == ("short", None)


def test_no_room_for_any_text_says_so() -> None:
    fake = FakeModel(lambda t, _: person(t), context=60)
    r = runner(fake, options=ExtractOptions(max_tokens=50), truncate="head")
    with pytest.raises(InputError, match="no room for the text"):
        r.run("abc", lambda _: None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_record_timeout_fails_that_record_and_the_batch_goes_on() -> None:
    clock = Clock()
    fake = FakeModel(lambda t, _: person(t))
    fake.on_chunk = lambda: setattr(
        clock, "now", clock.now + (5.0 if "slow" in fake.users[-1] else 0.1)
    )
    r = Runner(plan_for(PERSON, fake), fake, Limits(timeout=3), clock=clock)
    out = io.BytesIO()
    errors: list[str] = []
    with pytest.raises(SomeRecordsFailed):
        run_batch(
            lines_of(b"slow\nfast\n"),
            r,
            output=LineOutput(out),
            errors=ErrorLog(show=errors.append),
        )
    assert errors == ["line 1: --timeout of 3s ran out"]
    assert out.getvalue() == b'{"name":"fast","age":4}\n'
    assert TimeoutExpired("x").exit_code == EXIT_TIMEOUT


def test_total_timeout_stops_the_batch_and_leaves_the_record_for_a_rerun(tmp_path: Path) -> None:
    clock = Clock()
    fake = FakeModel(lambda t, _: person(t))
    fake.on_chunk = lambda: setattr(clock, "now", clock.now + 1.0)
    r = Runner(plan_for(PERSON, fake), fake, Limits(total_timeout=20), clock=clock)
    out_path = tmp_path / "out.jsonl"
    ckpt = Checkpoint(tmp_path / "ckpt", "job")
    with out_path.open("ab") as out, pytest.raises(TotalTimeoutExpired) as e:
        run_batch(lines_of(b"a\nb\nc\nd\n"), r, output=LineOutput(out), checkpoint=ckpt)
    ckpt.close()
    assert e.value.exit_code == EXIT_TIMEOUT
    assert "--total-timeout of 20s ran out" in str(e.value)
    # 8 chunks (1 s each) per record: records 1 and 2 end at 16 s, record 3 runs out at 21 s.
    assert out_path.read_bytes() == b'{"name":"a","age":1}\n{"name":"b","age":1}\n'
    done = [json.loads(x)["line"] for x in (tmp_path / "ckpt").read_text().splitlines()[1:]]
    assert done == [1, 2]


# -- checkpoints -------------------------------------------------------------------------------


def batch_to_file(
    tmp_path: Path,
    data: bytes,
    fake: FakeModel,
    *,
    job: str = "job",
    each: bool = False,
) -> tuple[Any, list[str]]:
    """Run a checkpointed batch appending to out.jsonl; return (exception or report, notices)."""
    notices: list[str] = []
    ckpt = Checkpoint(tmp_path / "ckpt", job)
    try:
        with (tmp_path / "out.jsonl").open("ab") as out:
            return (
                run_batch(
                    lines_of(data),
                    runner(fake, each=each),
                    output=LineOutput(out),
                    checkpoint=ckpt,
                    notice=notices.append,
                    errors=ErrorLog(show=lambda _: None),
                ),
                notices,
            )
    except (Exception, KeyboardInterrupt) as e:
        return e, notices
    finally:
        ckpt.close()


class Crash(KeyboardInterrupt):
    """Stands in for a kill at a chosen point (nothing in qwenjson catches it)."""


def crash_at(user_text: str) -> Callable[[str, int], str]:
    def answer(text: str, _: int) -> str:
        if text == user_text:
            raise Crash()
        return person(text)

    return answer


def test_rerun_after_a_crash_skips_what_was_done(tmp_path: Path) -> None:
    data = b"a\nb\n\nd\ne\n"
    first, _ = batch_to_file(tmp_path, data, FakeModel(crash_at("d")))
    assert isinstance(first, Crash)
    fake = FakeModel(lambda t, _: person(t))
    second, _ = batch_to_file(tmp_path, data, fake)
    assert isinstance(second, SomeRecordsFailed)  # the empty line 3 failed in the first run
    assert str(second) == "1 of 5 record(s) failed (1 in earlier runs, reported then)"
    assert fake.users == ["d", "e"]
    names = [json.loads(x)["name"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert names == ["a", "b", "d", "e"]


def test_output_written_after_the_last_checkpoint_is_cut_off_and_redone(tmp_path: Path) -> None:
    data = b"a\nb\nc\n"
    batch_to_file(tmp_path, data, FakeModel(crash_at("c")))
    # What a kill between the write and the checkpoint (or in mid-line) leaves behind.
    with (tmp_path / "out.jsonl").open("ab") as f:
        f.write(b'{"name":"c","age":1}\n{"name":"c"')
    report, notices = batch_to_file(tmp_path, data, FakeModel(lambda t, _: person(t)))
    assert report.succeeded == 1 and report.resumed == 2
    assert notices == [
        "stdout: removed 32 bytes written after the last checkpoint "
        "(the record in flight is done again)"
    ]
    names = [json.loads(x)["name"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert names == ["a", "b", "c"]


def test_output_of_the_first_record_in_flight_is_cut_off_too(tmp_path: Path) -> None:
    # The file held another job's lines before; the kill came before any record was logged.
    (tmp_path / "out.jsonl").write_bytes(b'{"old":1}\n')
    data = b"a\nb\n"
    first, _ = batch_to_file(tmp_path, data, FakeModel(crash_at("a")))
    assert isinstance(first, Crash)
    with (tmp_path / "out.jsonl").open("ab") as f:
        f.write(b'{"name":"a","age":1}\n{"na')
    report, notices = batch_to_file(tmp_path, data, FakeModel(lambda t, _: person(t)))
    assert report.succeeded == 2 and report.resumed == 0
    assert notices == [
        "stdout: removed 25 bytes written after the last checkpoint "
        "(the record in flight is done again)"
    ]
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert lines == ['{"old":1}', '{"name":"a","age":1}', '{"name":"b","age":1}']


def each_killed_then_rerun(
    tmp_path: Path, data: bytes, kill_now: Callable[[FakeModel], bool]
) -> tuple[list[str], list[str]]:
    """An ``--each`` batch of ``data`` (one item per word) killed at the first chunk where
    ``kill_now`` says so, then rerun: the lines out after the kill, the names after the rerun."""

    def answer(text: str, _: int) -> str:
        return items_answer(text.split())

    fake = FakeModel(answer)

    def kill() -> None:
        if kill_now(fake):
            raise Crash()

    fake.on_chunk = kill
    first, _ = batch_to_file(tmp_path, data, fake, each=True)
    assert isinstance(first, Crash)
    partial = (tmp_path / "out.jsonl").read_text().splitlines()
    batch_to_file(tmp_path, data, FakeModel(answer), each=True)
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    return partial, [json.loads(x)["name"] for x in lines]


def test_each_items_of_a_first_unfinished_record_are_not_duplicated(tmp_path: Path) -> None:
    partial, names = each_killed_then_rerun(
        tmp_path, b"A B C D E\n", lambda fake: len(fake.events) > 30
    )
    assert 0 < len(partial) < 5  # some of the items were out already
    assert names == ["A", "B", "C", "D", "E"]


def test_a_checkpoint_that_cant_be_written_is_an_output_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    opened: list[int] = []
    real_open, real_fsync = Checkpoint.open, os.fsync

    def open_then_note(self: Checkpoint, *args: Any) -> Any:
        resume = real_open(self, *args)
        opened.append(self.fd or -1)
        return resume

    def full_disk(fd: int) -> None:
        if fd in opened:  # the log lines after the header
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(Checkpoint, "open", open_then_note)
    monkeypatch.setattr(os, "fsync", full_disk)
    failed, _ = batch_to_file(tmp_path, b"a\nb\n", FakeModel(lambda t, _: person(t)))
    assert isinstance(failed, OutputError) and failed.exit_code == EXIT_OUTPUT
    assert str(failed) == "cannot write the --checkpoint file: No space left on device"
    # Stopped at the first record, whose output is there (its log line may be too: only the
    # fsync failed).
    assert (tmp_path / "out.jsonl").read_text() == '{"name":"a","age":1}\n'


def test_a_first_run_into_a_file_opened_read_write_appends_and_resumes(tmp_path: Path) -> None:
    # `qwenjson … 1<>out.jsonl`: no O_APPEND, the offset at 0, a line there already.
    import os

    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"old":"' + b"x" * 40 + b'"}\n')
    data = b"A B C D E\n"

    def answer(text: str, _: int) -> str:
        return items_answer(text.split())

    def run(fake: FakeModel) -> None:
        ckpt = Checkpoint(tmp_path / "ckpt", "job")
        fd = os.open(out, os.O_RDWR)
        try:
            with os.fdopen(fd, "r+b", buffering=0) as f:
                run_batch(
                    lines_of(data), runner(fake, each=True), output=LineOutput(f), checkpoint=ckpt
                )
        except Crash:
            pass
        finally:
            ckpt.close()

    fake = FakeModel(answer)

    def kill_mid_record() -> None:
        if len(fake.events) > 30:
            raise Crash()

    fake.on_chunk = kill_mid_record
    run(fake)
    run(FakeModel(answer))
    lines = out.read_text().splitlines()
    assert lines[0] == '{"old":"' + "x" * 40 + '"}'
    assert [json.loads(x)["name"] for x in lines[1:]] == ["A", "B", "C", "D", "E"]


@pytest.mark.parametrize(
    ("mark", "why"),
    [
        ([1, None, 3], "TypeError"),
        ([1, 2, -1], "ValueError: a file size below 0 (-1)"),  # would reach ftruncate
        ("123", "ValueError: a file mark is three numbers"),
    ],
)
def test_a_damaged_mark_in_the_header_is_refused_as_damage(
    tmp_path: Path, mark: Any, why: str
) -> None:
    from qwenjson.checkpoint import CHECKPOINT_VERSION, FINGERPRINT_KIND

    head = {"qwenjson_checkpoint": CHECKPOINT_VERSION, "job": "job"}
    head |= {"fingerprint": FINGERPRINT_KIND, "out": mark}
    (tmp_path / "ckpt").write_text(json.dumps(head) + "\n")
    with pytest.raises(UsageError, match=rf"is damaged at line 1 \({re.escape(why)}"):
        Checkpoint(tmp_path / "ckpt", "job").open()


def test_a_read_write_output_other_than_the_checkpointed_one_is_written_after(
    tmp_path: Path,
) -> None:
    import os

    from qwenjson.checkpoint import reconcile
    from qwenjson.stream import file_mark

    (tmp_path / "a").write_bytes(b"A\n")
    (tmp_path / "b").write_bytes(b"B\n")
    with (tmp_path / "a").open("rb") as a:
        recorded = file_mark(a.fileno())
    fd = os.open(tmp_path / "b", os.O_RDWR)  # `1<>b`, where the checkpoint recorded a
    try:
        assert reconcile(fd, recorded, "stdout") is None
        assert os.lseek(fd, 0, os.SEEK_CUR) == 2  # after b's line, not over it
    finally:
        os.close(fd)


def test_a_header_without_marks_never_writes_over_a_read_write_output(tmp_path: Path) -> None:
    # A checkpoint begun before headers had marks, no record done yet; then `1<>out.jsonl`.
    import os

    from qwenjson.checkpoint import CHECKPOINT_VERSION, FINGERPRINT_KIND

    head = {"qwenjson_checkpoint": CHECKPOINT_VERSION, "job": "job"}
    (tmp_path / "ckpt").write_text(json.dumps(head | {"fingerprint": FINGERPRINT_KIND}) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"old":1}\n')
    fd = os.open(out, os.O_RDWR)
    ckpt = Checkpoint(tmp_path / "ckpt", "job")
    try:
        with os.fdopen(fd, "r+b", buffering=0) as f:
            run_batch(
                lines_of(b"a\n"),
                runner(FakeModel(lambda t, _: person(t))),
                output=LineOutput(f),
                checkpoint=ckpt,
            )
    finally:
        ckpt.close()
    assert out.read_text().splitlines() == ['{"old":1}', '{"name":"a","age":1}']


def test_a_checkpoint_header_that_cant_be_written_is_an_output_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError) as e:
        Checkpoint(tmp_path / "ckpt", "job").open()
    assert e.value.exit_code == EXIT_OUTPUT
    assert str(e.value) == (
        f"cannot write the --checkpoint file {str(tmp_path / 'ckpt')!r}: No space left on device"
    )


def test_each_items_of_an_unfinished_record_are_not_duplicated(tmp_path: Path) -> None:
    def mid_second_record(fake: FakeModel) -> bool:
        # About 30 chunks for the second record: stop two thirds of the way through.
        return fake.users[-1] == "C D E" and len(fake.events) - fake.events.index("return") > 20

    partial, names = each_killed_then_rerun(tmp_path, b"A B\nC D E\n", mid_second_record)
    assert len(partial) > 2  # some of the second record's items were out already
    assert names == ["A", "B", "C", "D", "E"]


def test_checkpoint_refuses_another_job_a_changed_input_and_a_truncated_output(
    tmp_path: Path,
) -> None:
    data = b"a\nb\n"
    batch_to_file(tmp_path, data, FakeModel(lambda t, _: person(t)))
    other, _ = batch_to_file(tmp_path, data, FakeModel(lambda t, _: person(t)), job="other")
    assert isinstance(other, UsageError) and "belongs to a different job" in str(other)
    changed, _ = batch_to_file(tmp_path, b"a\nX\n", FakeModel(lambda t, _: person(t)))
    assert isinstance(changed, UsageError) and "differs from the one" in str(changed)
    shorter, _ = batch_to_file(tmp_path, b"a\n", FakeModel(lambda t, _: person(t)))
    assert isinstance(shorter, UsageError) and "has 1 line(s)" in str(shorter)
    (tmp_path / "out.jsonl").write_bytes(b"")  # what `>` instead of `>>` does
    truncated, _ = batch_to_file(tmp_path, data, FakeModel(lambda t, _: person(t)))
    assert isinstance(truncated, UsageError) and "it was truncated" in str(truncated)
    (tmp_path / "ckpt").write_text("hello\n")
    foreign, _ = batch_to_file(tmp_path, data, FakeModel(lambda t, _: person(t)))
    assert isinstance(foreign, UsageError) and "not a qwenjson checkpoint" in str(foreign)
    # Without a final newline too (json.dump writes none): refused, never cut to nothing.
    (tmp_path / "ckpt").write_text('{"api_key": "keep me"}')
    foreign, _ = batch_to_file(tmp_path, data, FakeModel(lambda t, _: person(t)))
    assert isinstance(foreign, UsageError) and "not a qwenjson checkpoint" in str(foreign)
    assert (tmp_path / "ckpt").read_text() == '{"api_key": "keep me"}'


def test_a_checkpoint_killed_while_its_header_was_written_starts_again(tmp_path: Path) -> None:
    (tmp_path / "ckpt").write_bytes(b'{"qwenjson_checkpoint": 2, "jo')
    fake = FakeModel(lambda t, _: person(t))
    report, _ = batch_to_file(tmp_path, b"a\n", fake)
    assert fake.users == ["a"] and report.resumed == 0


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_checkpoint_must_be_a_regular_file(device: str) -> None:
    # /dev/zero was read until memory ran out; /dev/null never resumed anything.
    with pytest.raises(UsageError, match="is not a regular file"):
        Checkpoint(Path(device), "job").open()


def test_a_checkpoint_in_use_by_another_run_is_refused(tmp_path: Path) -> None:
    first = Checkpoint(tmp_path / "ckpt", "job")
    first.open()
    try:
        with pytest.raises(UsageError, match="in use by another qwenjson process"):
            Checkpoint(tmp_path / "ckpt", "job").open()
    finally:
        first.close()
    second = Checkpoint(tmp_path / "ckpt", "job")
    assert second.open().line == 0  # free again once the first run is gone
    second.close()


def test_a_partial_last_checkpoint_line_is_ignored(tmp_path: Path) -> None:
    data = b"a\nb\n"
    batch_to_file(tmp_path, data, FakeModel(crash_at("b")))
    with (tmp_path / "ckpt").open("ab") as f:
        f.write(b'{"line":2,"inp')
    fake = FakeModel(lambda t, _: person(t))
    report, _ = batch_to_file(tmp_path, data, fake)
    assert fake.users == ["b"] and report.resumed == 1
    assert all(json.loads(x) for x in (tmp_path / "ckpt").read_text().splitlines())


def test_a_checkpoint_of_many_mib_is_read_line_by_line_across_its_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read a MiB at a time (a checkpoint grows for as long as a job runs): lines that cross a
    # read's end are whole lines, and a partial last line is cut off there.
    path = tmp_path / "ckpt"
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 40,000 of them: not what is tested
    checkpoint = Checkpoint(path, "job")
    checkpoint.open()
    records = 40_000  # 3.3 MiB
    for line in range(1, records + 1):
        mark = FileMark(1, 2, 100 * line) if line % 7 else None
        checkpoint.commit(line, f"{line:032x}", line // 1000, mark, None)
    checkpoint.close()
    whole = path.stat().st_size
    assert whole > 3 << 20
    with path.open("ab") as f:  # longer than a read: a kill mid-append of a piece's document
        f.write(b'{"piece":0,"of_line":40001,"found":"' + b"x" * (3 << 20))
    checkpoint = Checkpoint(path, "job")
    resume = checkpoint.open()
    checkpoint.close()
    assert (resume.line, resume.failed, resume.output) == (
        records,
        40,
        FileMark(1, 2, 100 * records),
    )
    assert len(resume.digests) == 16 * records
    assert all(resume.digest_at(n) == f"{n:032x}" for n in range(1, records + 1, 997))
    assert path.stat().st_size == whole


def test_a_file_no_checkpoint_starts_like_is_refused_untouched(tmp_path: Path) -> None:
    # Refused at its first byte, before the rest is read (a GiB of someone's log was read
    # whole first).
    path = tmp_path / "ckpt"
    path.write_bytes(b"2024-01-01 log line\n" * 1000)
    with pytest.raises(UsageError, match="is not a qwenjson checkpoint"):
        Checkpoint(path, "job").open()
    assert path.read_bytes() == b"2024-01-01 log line\n" * 1000
    # A header after blanks or a BOM (an editor's) was read, and still is.
    for lead in (b"  ", b"\xef\xbb\xbf"):
        path.unlink()
        new = Checkpoint(path, "job")
        new.open()
        new.close()
        path.write_bytes(lead + path.read_bytes())
        checkpoint = Checkpoint(path, "job")
        assert checkpoint.open().line == 0
        checkpoint.close()


def test_job_fingerprint_depends_on_every_part() -> None:
    base = {"schema": PERSON, "max_tokens": 10}
    assert job_fingerprint(base) == job_fingerprint(dict(reversed(base.items())))
    assert job_fingerprint(base) != job_fingerprint({**base, "max_tokens": 11})


def test_signals_are_held_while_a_line_is_written(tmp_path: Path) -> None:
    # A SIGTERM raised by the writer itself must wait until the line is whole.
    code = (
        "import os, signal, sys\n"
        "from qwenjson.stream import LineOutput, signals_held\n"
        "signal.signal(signal.SIGTERM, lambda *a: (sys.stdout.write('|handled'), sys.exit(3)))\n"
        "class Out:\n"
        "    def write(self, b):\n"
        "        os.kill(os.getpid(), signal.SIGTERM); sys.__stdout__.buffer.write(b)\n"
        "    def flush(self): sys.__stdout__.buffer.flush()\n"
        "with signals_held():\n"
        "    LineOutput(Out()).write_line('{\"whole\":true}')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 3
    assert r.stdout == b'{"whole":true}\n|handled'


def test_signals_are_held_when_another_thread_takes_them(tmp_path: Path) -> None:
    # With the main thread's mask alone, the kernel hands the signal to another thread (as
    # llama.cpp and Ray start), and Python ran the handler inside the block at once.
    code = (
        "import os, signal, sys, threading, time\n"
        "from qwenjson.stream import signals_held\n"
        "stop = threading.Event()\n"
        "threading.Thread(target=stop.wait, daemon=True).start()\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('handled', flush=True), sys.exit(3)))\n"
        "with signals_held():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.3)\n"
        "    print('block ended', flush=True)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (3, b"block ended\nhandled\n")  # in order: SIGTERM first


# -- the command line (fake model) ----------------------------------------------------------------


@pytest.fixture
def cli_run(run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """The ``run`` fixture with a fake model that answers ``answer`` (default: ``person``)."""
    from qwenjson import pipeline

    def invoke(
        *args: str, stdin: bytes = b"", answer: Callable[[str, int], str] | None = None
    ) -> Run:
        fake = FakeModel(answer or (lambda t, _: person(t)))
        monkeypatch.setattr(pipeline, "open_model", lambda *a, **k: fake)
        return run(*args, stdin=stdin)

    return invoke


SCHEMA_ARG = json.dumps(PERSON)


def test_cli_jsonl_with_field_prints_records_and_reports_failures(
    cli_run: Callable[..., Run],
) -> None:
    stdin = b'{"id":1,"text":"Ann"}\n\n{"id":3,"text":"Bo"}\n'
    r = cli_run("extract", "-s", SCHEMA_ARG, "--jsonl", "--field", "text", stdin=stdin)
    assert r.code == EXIT_SOME_RECORDS_FAILED
    assert r.out == (
        '{"id":1,"extracted":{"name":"Ann","age":3}}\n{"id":3,"extracted":{"name":"Bo","age":2}}\n'
    )
    assert r.err == "Error: line 2: empty line\nError: 1 of 3 record(s) failed\n"


def test_cli_errors_file_and_stop(cli_run: Callable[..., Run], tmp_path: Path) -> None:
    errors = tmp_path / "errors.jsonl"
    r = cli_run(
        "extract", "-s", SCHEMA_ARG, "--jsonl", "--errors", str(errors), stdin=b"\xff\nok\n"
    )
    assert (r.code, r.out) == (EXIT_SOME_RECORDS_FAILED, '{"name":"ok","age":2}\n')
    assert r.err == "Error: 1 of 2 record(s) failed\n"
    assert json.loads(errors.read_text()) == {
        "line": 1,
        "error": "not UTF-8 text (invalid byte 0xff at offset 0)",
        "exit_code": EXIT_INPUT,
    }
    r = cli_run("extract", "-s", SCHEMA_ARG, "--jsonl", "--on-error", "stop", stdin=b"a\n\nc\n")
    assert (r.code, r.out) == (EXIT_INPUT, '{"name":"a","age":1}\n')
    assert r.err == "Error: line 2: empty line\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--field", "text"], "--field needs --jsonl"),
        (
            ["--no-chunks", "--chunk-tokens", "100"],
            "--chunk-tokens and --chunk-overlap can't be used with --no-chunks",
        ),
        (
            ["--jsonl", "--pretty"],
            "--pretty can't be used with --jsonl or --each (one document per line)",
        ),
        (["--jsonl", "--errors", "e", "--on-error", "skip"], "--errors needs --on-error record"),
        (
            ["--jsonl", "--into", "doc"],
            "--into needs --field (without it, a line is the text itself)",
        ),
        (  # given, even as its default value (was accepted and ignored)
            ["--jsonl", "--into", "extracted"],
            "--into needs --field (without it, a line is the text itself)",
        ),
        (["--into", "extracted"], "--into needs --jsonl"),
        (
            ["--keep-empty", "--abstain-below", "0.3"],
            "--abstain-below can't be used with --keep-empty (it keeps every value)",
        ),
        (
            ["--truncate", "head", "--chunk-tokens", "64"],
            "--chunk-tokens and --chunk-overlap can't be used with --truncate (the text is cut "
            "to fit, not read in pieces)",
        ),
        (  # checked once, not as a failure of every record (exit 8)
            ["--jsonl", "--chunk-overlap", "200"],
            "--chunk-overlap 200 must be less than half a piece (256 tokens; --chunk-tokens "
            "sets it)",
        ),
        (
            ["--ctx", "256"],
            "--max-tokens 1024 leaves no room in a context of 256 tokens for the prompt and "
            "the text: lower it, or raise --ctx",
        ),
        (
            ["--jsonl", "--field", "text", "--evidence", "--into", "evidence"],
            "--into evidence would be overwritten by --evidence's own 'evidence' key",
        ),
        (["--no-cache", "--cache-dir", "d"], "--cache-dir can't be used with --no-cache"),
    ],
)
def test_cli_option_combinations_that_make_no_sense_exit_2(
    cli_run: Callable[..., Run], args: list[str], message: str
) -> None:
    r = cli_run("extract", "-s", SCHEMA_ARG, *args, stdin=b"x\n")
    assert (r.code, r.out, r.err) == (2, "", f"Error: {message}\n")


def test_cli_each_prints_one_line_per_item(cli_run: Callable[..., Run]) -> None:
    r = cli_run(
        "extract",
        "-s",
        SCHEMA_ARG,
        "--each",
        stdin=b"Ann Bo",
        answer=lambda t, _: items_answer(t.split()),
    )
    assert (r.code, r.err) == (0, "")
    assert r.out == '{"name":"Ann","age":3}\n{"name":"Bo","age":2}\n'


def test_cli_one_document_checkpoint_resumes_and_refuses_its_own_input(
    cli_run: Callable[..., Run], tmp_path: Path
) -> None:
    ck = str(tmp_path / "ck")
    (tmp_path / "in.txt").write_text("Ann")
    r = cli_run(
        "extract", "-s", SCHEMA_ARG, "--input", str(tmp_path / "in.txt"), "--checkpoint", ck
    )
    assert (r.code, r.out) == (0, '{"name":"Ann","age":3}\n')
    again = cli_run(
        "extract", "-s", SCHEMA_ARG, "--input", str(tmp_path / "in.txt"), "--checkpoint", ck
    )
    assert (again.code, again.out) == (0, "")  # done: a rerun prints nothing more
    same = cli_run("extract", "-s", SCHEMA_ARG, "--input", ck, "--checkpoint", ck)
    assert same.code == 2 and "the --checkpoint file is the same file as the input" in same.err


def test_cli_checkpoint_of_another_job_is_refused(
    cli_run: Callable[..., Run], tmp_path: Path
) -> None:
    ck = str(tmp_path / "ck")
    r = cli_run("extract", "-s", SCHEMA_ARG, "--jsonl", "--checkpoint", ck, stdin=b"a\n")
    assert (r.code, r.out) == (0, '{"name":"a","age":1}\n')
    r = cli_run("extract", "-s", SCHEMA_ARG, "--jsonl", "--checkpoint", ck, stdin=b"a\nb\n")
    assert (r.code, r.out) == (0, '{"name":"b","age":1}\n')  # a was done: through a pipe, skipped
    r = cli_run(
        "extract",
        "-s",
        SCHEMA_ARG,
        "--jsonl",
        "--checkpoint",
        ck,
        "--max-tokens",
        "9",
        stdin=b"a\n",
    )
    assert (r.code, r.out) == (2, "")
    assert "belongs to a different job" in r.err


def test_cli_progress_bar_on_a_terminal_and_plain_text_when_piped(
    cli_run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from qwenjson import console

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, highlight=False)
    monkeypatch.setattr(console, "stderr", terminal)
    r = cli_run("extract", "-s", SCHEMA_ARG, "--jsonl", stdin=b"a\n\nc\n")
    assert r.code == EXIT_SOME_RECORDS_FAILED
    assert r.out == '{"name":"a","age":1}\n{"name":"c","age":1}\n'  # stdout: documents only
    shown = screen.getvalue()
    assert "records" in shown and "1 failed" in shown and "\x1b[" in shown
    # Piped (the other CLI tests): the same messages with no escape codes at all.
    monkeypatch.undo()
    piped = cli_run("extract", "-s", SCHEMA_ARG, "--jsonl", stdin=b"a\n\nc\n")
    assert piped.err == "Error: line 2: empty line\nError: 1 of 3 record(s) failed\n"


# -- on the real model (SmolLM2-135M) ----------------------------------------------------------


def mixed_records() -> tuple[bytes, dict[int, str]]:
    """20 JSONL records: 16 good ones ({id, text, src}) and 4 bad; and line → text of the good."""
    lines: list[bytes] = []
    good: dict[int, str] = {}
    for i in range(20):
        line = i + 1
        if line == 4:
            lines.append(b"")
        elif line == 8:
            lines.append("王芳，30岁".encode("gbk"))
        elif line == 12:
            lines.append(json.dumps({"id": line, "text": "word " * 800}).encode())
        elif line == 16:
            lines.append(json.dumps({"id": line, "body": "no text field"}).encode())
        else:
            good[line] = TEXTS[i % len(TEXTS)]
            record = {"id": line, "text": good[line], "src": f"s{line}"}
            lines.append(json.dumps(record, ensure_ascii=False).encode())
    return b"\n".join(lines) + b"\n", good


@pytest.mark.slow
@pytest.mark.model
def test_real_mixed_batch_gives_exactly_the_right_outputs_and_errors(tmp_path: Path) -> None:
    data, good = mixed_records()
    errors = tmp_path / "errors.jsonl"
    r = subprocess.run(
        # (--no-chunks: line 12, longer than the context, is one of the records that fail.)
        qwenjson_argv("--jsonl", "--field", "text", "--errors", str(errors), "--no-chunks"),
        input=data,
        capture_output=True,
        timeout=600,
    )
    assert r.returncode == EXIT_SOME_RECORDS_FAILED, r.stderr.decode()
    assert r.stderr.decode() == "Error: 4 of 20 record(s) failed\n"
    logged = [json.loads(x) for x in errors.read_text("utf-8").splitlines()]
    assert [(x["line"], x["exit_code"]) for x in logged] == [(4, 6), (8, 6), (12, 6), (16, 6)]
    assert logged[0]["error"] == "empty line"
    assert logged[1]["error"] == "not UTF-8 text (invalid byte 0xcd at offset 0)"
    assert logged[2]["error"].startswith("the input is too long: the prompt takes ")
    assert "but the context holds 512" in logged[2]["error"]
    assert logged[3]["error"] == "no field 'text' in the record"

    out = r.stdout.decode("utf-8").splitlines()
    rows = [json.loads(x) for x in out]
    assert [row["id"] for row in rows] == sorted(good)  # each good record once, in order
    validator = jsonschema.Draft202012Validator(REAL_PERSON)
    # The reference: what `qwenjson extract` prints for each text on its own.
    alone = {}
    for text in TEXTS:
        single = subprocess.run(
            qwenjson_argv(), input=text.encode(), capture_output=True, timeout=300
        )
        assert single.returncode == 0, single.stderr.decode()
        alone[text] = single.stdout.decode("utf-8").rstrip("\n")
    for line, row in zip(out, rows, strict=True):
        validator.validate(row["extracted"])
        text = good[row["id"]]
        assert list(row) == ["id", "src", "extracted"] and row["src"] == f"s{row['id']}"
        assert line == f'{{"id":{row["id"]},"src":"s{row["id"]}","extracted":{alone[text]}}}'


class _CountingEngine:
    """The real engine, counting the text chunks it has generated so far (all calls)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.chunks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, *args: Any, on_text: Callable[[str], None] | None = None, **kw: Any) -> Any:
        def counted(text: str) -> None:
            self.chunks += 1
            if on_text is not None:
                on_text(text)

        return self._engine.generate(*args, on_text=counted, **kw)

    def close(self) -> None:
        pass


class _FirstWrite(io.BytesIO):
    """stdout's bytes, and how many chunks the engine had generated at the first write."""

    def __init__(self, engine: _CountingEngine) -> None:
        super().__init__()
        self.engine = engine
        self.chunks_then: int | None = None

    def write(self, data: Any) -> int:
        if self.chunks_then is None and len(data):
            self.chunks_then = self.engine.chunks
        return super().write(data)


@pytest.mark.model
def test_real_each_prints_items_before_the_document_is_complete(
    smollm2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process, so the order is counted, not timed: the first item reaches stdout while
    # the engine still has text of the list to generate. (Through a real pipe, records stream
    # as test_real_jsonl_streams_each_record_while_input_is_still_open shows; a child's first
    # item against its exit was a race of about 0.5 s on a loaded CI machine.)
    from qwenjson import cli, pipeline
    from qwenjson.engine import Engine

    item = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 16}},
        "required": ["name"],
        "additionalProperties": False,
    }
    names = [
        f"{first} {last}"
        for first in ("Anna", "Bruno", "Chen", "Dana", "Emil", "Fatima")
        for last in ("Berg", "Costa", "Wei", "Evans", "Ford")
    ]
    text = "Guests: " + ", ".join(names) + "."
    with Engine(smollm2, n_ctx=512, n_threads=1, n_threads_batch=1) as real:
        engine = _CountingEngine(real)
        monkeypatch.setattr(pipeline, "open_model", lambda *a, **k: engine)
        out, err = _FirstWrite(engine), io.BytesIO()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, write_through=True))
        argv = ["extract", "--schema", json.dumps(item), "--each", "--max-tokens", "240"]
        code = cli.run([*argv, "--ctx", "512", "--no-cache", "-q"])
    assert code == 0, err.getvalue().decode()
    items = [json.loads(x) for x in out.getvalue().decode().splitlines()]
    assert len(items) >= 2
    for value in items:
        jsonschema.Draft202012Validator(item).validate(value)
    assert out.chunks_then is not None and 0 < out.chunks_then < engine.chunks, (
        out.chunks_then,
        engine.chunks,
    )


@pytest.mark.model
def test_real_jsonl_streams_each_record_while_input_is_still_open() -> None:
    # stdin stays open, so the process can't have finished: the line arrived while it runs.
    with running("--jsonl") as p:
        p.stdin.write(TEXTS[0].encode() + b"\n")
        p.stdin.flush()
        first = p.stdout.readline()
        assert p.popen.poll() is None
        jsonschema.Draft202012Validator(REAL_PERSON).validate(json.loads(first))
        p.stdin.write(TEXTS[1].encode() + b"\n")
        p.stdin.close()
        rest = p.stdout.read()
        assert p.popen.wait(timeout=300) == 0
        assert len(rest.decode().splitlines()) == 1


@pytest.mark.model
def test_real_engine_is_usable_after_a_timeout_escapes_generate(smollm2: Path) -> None:
    from qwenjson.engine import Engine

    class Steps:
        now = 0.0

        def __call__(self) -> float:
            return self.now

        def tick(self, _: str) -> None:
            self.now += 1.0

    clock = Steps()
    with (
        Engine(smollm2, n_ctx=512, n_threads=1) as used,
        Engine(smollm2, n_ctx=512, n_threads=1) as fresh,
    ):
        job = prepare_job(REAL_PERSON)
        options = ExtractOptions(max_tokens=48)
        plan = plan_for(REAL_PERSON, used, options, job=job)
        timed = Runner(plan, used, Limits(timeout=2.5), clock=clock)
        with pytest.raises(TimeoutExpired, match=r"--timeout of 2\.5s ran out"):
            timed.run(TEXTS[0], lambda _: None, on_text=clock.tick)
        after: list[str] = []
        timed.limits = Limits()
        timed.run(TEXTS[1], after.append)
        alone: list[str] = []
        Runner(plan_for(REAL_PERSON, fresh, options, job=job), fresh).run(TEXTS[1], alone.append)
    assert after == alone
    jsonschema.Draft202012Validator(REAL_PERSON).validate(json.loads(after[0]))


@pytest.mark.model
@pytest.mark.parametrize("keep", ["head", "tail"])
def test_real_truncate_fits_a_long_input_into_the_context(keep: str) -> None:
    fact = "Alice Martin is 34 and lives in Lyon."
    filler = "The weather was mild and nothing else happened that day. " * 60
    text = fact + " " + filler if keep == "head" else filler + fact
    r = subprocess.run(
        qwenjson_argv("--truncate", keep), input=text.encode(), capture_output=True, timeout=300
    )
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert re.fullmatch(
        rf"Warning: input cut from (\d+) to (\d+) tokens \(--truncate {keep}\)\n", err
    )
    before, after = map(int, re.findall(r"\d+", err))
    assert before > 512 > after
    jsonschema.Draft202012Validator(REAL_PERSON).validate(json.loads(r.stdout))
    # With --no-chunks instead, the same input is refused with the token counts.
    refused = subprocess.run(
        qwenjson_argv("--no-chunks"), input=text.encode(), capture_output=True, timeout=300
    )
    assert (refused.returncode, refused.stdout) == (EXIT_INPUT, b"")
    assert f"(the text {before})" in refused.stderr.decode()


def test_a_raw_stdout_that_takes_part_of_a_line_gets_the_rest() -> None:
    # Under PYTHONUNBUFFERED=1 stdout's buffer is a raw file: a write may take part of the data
    # (a full disk, a signal, a non-blocking pipe) and say so. A real pipe in non-blocking mode
    # takes at most its capacity per write and nothing (None) while full.
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    raw = io.FileIO(write_fd, "wb", closefd=True)
    line = "x" * 300_000
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(read_fd, 7_000):
            got.extend(chunk)
            time.sleep(0.001)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        LineOutput(cast(BinaryIO, raw)).write_line(line)
    finally:
        raw.close()
        reader.join()
        os.close(read_fd)
    assert got == (line + "\n").encode()


def test_a_batch_carries_on_when_its_log_reader_goes_away() -> None:
    # `qwenjson … 2> >(head -1)`: stderr's reader leaves after the first message. Rich's default
    # pointed stdout at /dev/null and exited 1; the records still to come must reach stdout.
    lines = "\n".join(['{"text": ""}', *(json.dumps({"text": t}) for t in TEXTS[:2])]) + "\n"
    proc = subprocess.Popen(
        qwenjson_argv("--jsonl", "--field", "text", "--on-error", "record"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.close()  # gone before the first message
    out, _ = proc.communicate(lines.encode(), timeout=300)
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 8  # one record failed; the message could not be shown
    assert len(records) == 2


@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
def test_a_line_of_exactly_the_limit_is_read_whole_with_either_line_end(end: bytes) -> None:
    limit = MAX_INPUT_BYTES
    lines = list(read_lines(io.BytesIO(b"x" * limit + end + b"x" * (limit + 1) + end + b"y\n")))
    assert [len(line) for line in lines] == [limit, limit + 1, 1]  # the second one is refused


def test_a_checkpointed_document_keeps_a_second_bom(tmp_path: Path) -> None:
    # The reader took the first BOM; parsing the document again for the checkpoint took the
    # second, so the model saw other text with --checkpoint than without. (The second is the
    # text's own, and the model reads a text's leading U+FEFF as a blank: pipeline.body.)
    seen = []
    for checkpoint in (None, Checkpoint(tmp_path / "ckpt", "job")):
        fake = FakeModel(lambda t, _: person(t))
        output = io.BytesIO()
        run_batch(
            ["\ufeffAnn".encode()],
            runner(fake),
            BatchOptions(document=True),
            output=LineOutput(output),
            checkpoint=checkpoint,
        )
        seen.append((fake.users, output.getvalue()))
    assert seen[0] == seen[1]
    assert seen[0] == (["Ann"], b'{"name":"Ann","age":3}\n')


def test_a_line_reaches_a_writer_as_bytes_and_a_wrapper_that_counts_nothing_gets_it_once() -> None:
    # A writer may read what it is given as bytes (it got a memoryview), and a wrapper with a
    # file descriptor whose write returns None took the line: it was written again and again.
    read_fd, write_fd = os.pipe()
    got: list[Any] = []

    class Wrapper:
        def write(self, data: Any) -> None:
            got.append(data)
            data.decode()  # bytes, as written

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return write_fd

    try:
        LineOutput(cast(BinaryIO, Wrapper())).write_line('{"a": 1}')
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert got == [b'{"a": 1}\n']


def test_each_prints_equal_items_of_dates_and_numbers_each_time() -> None:
    # Two purchases of one price on one day: the document kept both, --each printed one (its
    # stream dropped repeats wherever anything in the item was grounded, numbers too).
    purchase = {
        "type": "object",
        "properties": {"date": {"type": "string", "format": "date"}, "amount": {"type": "number"}},
    }
    one = {"date": "2020-01-01", "amount": 3.5}
    answer = json.dumps({"items": [one, one, {"date": "2020-01-02", "amount": 2.0}]})
    fake = FakeModel(lambda _text, _attempt: answer)
    printed: list[str] = []
    runner(fake, purchase, each=True).run(
        "2020-01-01 coffee 3.50; 2020-01-01 coffee 3.50; 2020-01-02 tea 2.00", printed.append
    )
    assert len(printed) == 3


def test_each_prints_an_item_repeated_without_its_text_each_time() -> None:
    # The item schema has a text field (shop), but these purchases were written without it:
    # the document keeps both, and so does the stream (it dropped every repeat once any text
    # rule existed).
    purchase = {
        "type": "object",
        "properties": {"amount": {"type": "number"}, "shop": {"type": "string"}},
    }
    answer = json.dumps({"items": [{"amount": 3.5}, {"amount": 3.5}]})
    fake = FakeModel(lambda _text, _attempt: answer)
    printed: list[str] = []
    runner(fake, purchase, each=True).run("coffee 3.50; coffee 3.50", printed.append)
    assert len(printed) == 2


def test_read_lines_holds_an_unended_last_line_unless_whole_or_blank() -> None:
    import io

    from qwenjson.records import is_json_object, read_lines

    def read(
        data: bytes, complete: Callable[[bytes], bool] | None = None
    ) -> tuple[list[bytes], list[int]]:
        held: list[int] = []
        return list(read_lines(io.BytesIO(data), held.append, complete)), held

    assert read(b"a\nb") == ([b"a"], [2])
    # An empty file saved with a BOM: no lines, as an empty one (it was "line 1: empty line").
    assert lines_of(b"\xef\xbb\xbf") == lines_of(b"") == []
    assert read(b"\xef\xbb\xbf") == ([], [])
    assert lines_of(b"\xef\xbb\xbf\n") == [b"\xef\xbb\xbf"]  # a line: blank, its own error
    assert read(b"a\nb\n") == ([b"a", b"b"], [])
    # A blank one fails as "empty line" either way (it said "no line end yet" for ever).
    assert read(b"a\n\r") == ([b"a", b""], [])
    # A whole JSON object, its "\r" taken as a "\r\n" would be.
    assert read(b'{"t": 1}\r', is_json_object) == ([b'{"t": 1}'], [])
    assert read(b'{"t": 1', is_json_object) == ([], [1])


@pytest.mark.parametrize("keep_empty", [False, True])
def test_each_prints_the_same_items_with_and_without_evidence(keep_empty: bool) -> None:
    # A repeated item of grounded text: --each dropped it as it streamed, also with
    # --keep-empty, where the document (and so --each --evidence) keeps every value.
    person = {"type": "object", "properties": {"name": {"type": "string"}}}
    answer = json.dumps({"items": [{"name": "Ann"}, {"name": "Bob"}, {"name": "Ann"}]})
    printed: dict[bool, list[Any]] = {}
    for evidence in (False, True):
        lines: list[str] = []
        options = ExtractOptions(keep_empty=keep_empty, evidence=evidence)
        fake = FakeModel(lambda _text, _attempt: answer)
        runner(fake, person, each=True, options=options).run("Ann and Bob.", lines.append)
        printed[evidence] = [json.loads(line) for line in lines]
    assert printed[False] == [p["data"] for p in printed[True]]
    assert len(printed[False]) == (3 if keep_empty else 2)


@pytest.mark.parametrize("log", ["full disk", "read-only"])
def test_a_batch_carries_on_when_its_log_cannot_be_written(tmp_path: Path, log: str) -> None:
    # `2>>log` on a full disk (ENOSPC), or a stderr a wrapper left open for reading (EBADF):
    # the first message raised, the records after it were lost and the exit code was 1.
    lines = "\n".join(['{"text": ""}', *(json.dumps({"text": t}) for t in TEXTS[:2])]) + "\n"
    if log == "full disk":
        stderr = open("/dev/full", "wb")  # noqa: SIM115 (closed below)
    else:
        (tmp_path / "log").write_bytes(b"")
        stderr = open(tmp_path / "log", "rb")  # noqa: SIM115
    with stderr:
        done = subprocess.run(
            qwenjson_argv("--jsonl", "--field", "text", "--on-error", "record"),
            input=lines.encode(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=300,
        )
        # One document, no input: exit 6 (it was 1), with nothing on stdout.
        empty = subprocess.run(
            qwenjson_argv(), input=b"", stdout=subprocess.PIPE, stderr=stderr, timeout=300
        )
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert done.returncode == 8  # one record failed; the message could not be shown
    assert len(records) == 2
    assert (empty.returncode, empty.stdout) == (6, b"")


@pytest.mark.parametrize("stalled", ["stderr", "errors fifo"])
def test_a_reader_that_stops_reading_does_not_hold_off_the_total_timeout(
    tmp_path: Path, stalled: str
) -> None:
    # A failed record's message was written in a held block (its line and the checkpoint go
    # together): a reader of stderr, or of an --errors FIFO, that stopped reading kept the
    # process in that write for ever; SIGTERM and --total-timeout could not end it. A message
    # quoting a 10,000-character key comes when the pipe is nearly full: more than it takes.
    long_key = "k" * 10_000
    big = f'{{"{long_key}": 1, "{long_key}": 2}}\n'.encode()
    lines = b"[1]\n" * 1_300 + big + b"[1]\n" * 20_000
    argv = qwenjson_argv("--jsonl", "--field", "text", "--total-timeout", "6")
    keep: list[int] = []
    if stalled == "errors fifo":
        fifo = tmp_path / "errors"
        os.mkfifo(fifo)
        keep.append(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # open, never read
        argv += ["--on-error", "record", "--errors", str(fifo)]
    read_fd, write_fd = os.pipe()  # stderr's reader: never reads
    keep.append(read_fd)
    # As a shell or cron starts it: with PYTHONUNBUFFERED, Python drops what a signal cuts
    # off a write to a raw stderr, which hid a long message's endless write.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    try:
        (tmp_path / "in.jsonl").write_bytes(lines)
        with open(tmp_path / "in.jsonl", "rb") as stdin:
            done = subprocess.run(
                argv, stdin=stdin, stdout=subprocess.PIPE, stderr=write_fd, env=env, timeout=60
            )
        stopped = read_fd if stalled == "stderr" else keep[0]  # the reader that stopped
        os.set_blocking(stopped, False)
        waiting = len(os.read(stopped, 1 << 20))
    finally:
        os.close(write_fd)
        for fd in keep:
            os.close(fd)
    assert (done.returncode, done.stdout) == (7, b"")
    assert waiting >= 60_000  # the reader's pipe was full: the stall did happen


def test_a_batch_with_colours_forced_into_a_log_file_finishes(tmp_path: Path) -> None:
    # FORCE_COLOR makes Rich draw the progress bar into a log file as on a terminal, and put
    # its proxy on sys.stderr: the messages' writer printed into that proxy, which printed
    # through the writer again, without end (the run spun until killed, nothing on stdout).
    lines = "\n".join(json.dumps({"text": t}) for t in TEXTS[:2]) + "\n"
    env = {**os.environ, "FORCE_COLOR": "1"}
    with open(tmp_path / "log", "wb") as log:
        done = subprocess.run(
            qwenjson_argv("--jsonl", "--field", "text"),
            input=lines.encode(),
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            timeout=120,
        )
    assert done.returncode == 0
    assert len(done.stdout.decode().splitlines()) == 2
