"""Every row of the hardening issue (#15) through the real command, on the real test model.

Each case runs ``python -m qwenjson`` in a subprocess, as a user would (no pytest hooks inside),
and checks the exit code, the message on stderr, that no "internal error" is reported, and that
stdout is empty or every line of it is strict JSON. Add a row here for every new way a user's
input, files or environment can go wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from qwenjson import jsonstrict
from qwenjson.errors import (
    EXIT_INPUT,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SCHEMA,
    EXIT_SOME_RECORDS_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    InputError,
)
from tests.grammar_engine import default_model_path

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]
MODEL = str(default_model_path())
M = ("-m", MODEL, "--threads", "1")
EXTRACT = ("extract", "-s", "name", *M)


@dataclass
class Result:
    code: int
    out: bytes
    err: str
    seconds: float


def cli_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user's shell: this checkout's package, no pytest, caches in ``tmp``."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "QWENJSON_DEBUG")
    }
    env["PYTHONPATH"] = str(REPO)
    env["HF_HOME"] = str(tmp / "hf")
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra or {})
    return env


def qwenjson(
    tmp: Path,
    *args: str,
    stdin: bytes = b"",
    stdout: Path | None = None,
    redirect: str = "",
    env: dict[str, str] | None = None,
) -> Result:
    """Run the command in ``tmp``; ``stdout``: to that file; ``redirect``: a shell's (``>&-``)."""
    command = [sys.executable, "-m", "qwenjson", *args]
    if redirect:
        command = ["sh", "-c", f'exec "$@" {redirect}', "sh", *command]
    started = time.monotonic()
    out_file = open(stdout, "ab") if stdout is not None else None  # noqa: SIM115
    try:
        r = subprocess.run(
            command,
            input=stdin,
            stdout=out_file or subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp,
            env=cli_env(tmp, env),
            timeout=120,
        )
    finally:
        if out_file is not None:
            out_file.close()
    out = stdout.read_bytes() if stdout is not None and stdout.is_file() else r.stdout or b""
    return Result(
        r.returncode, out, r.stderr.decode("utf-8", "replace"), time.monotonic() - started
    )


def check(r: Result, code: int, message: str, *, json_out: bool = True) -> None:
    """The one rule: the documented exit code, an ``Error:`` line saying why, no internal error,
    and stdout empty or strict JSON line by line."""
    assert r.code == code, (r.code, r.err)
    assert "internal error" not in r.err and "Traceback" not in r.err, r.err
    if message:
        assert re.search(message, r.err), (message, r.err)
    if code != EXIT_OK:
        assert r.err.startswith("Error: ") or "\nError: " in r.err, r.err
    if json_out:
        for line in r.out.decode("utf-8").splitlines():
            jsonstrict.loads(line)


PATTERN_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^(?=a)(a|aa)+$"}},
        "required": ["code"],
    }
)


@pytest.mark.slow
def test_row1_a_backtracking_pattern_obeys_the_time_limits(tmp_path: Path) -> None:
    text = b'The code is "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab".\n'
    args = ("extract", *M, "--retries", "0", "-s", PATTERN_SCHEMA)
    r = qwenjson(tmp_path, *args, "--timeout", "3", stdin=text)
    check(r, EXIT_TIMEOUT, r"--timeout of 3s ran out")
    assert r.seconds < 20
    r = qwenjson(tmp_path, *args, "--total-timeout", "4", stdin=text)
    check(r, EXIT_TIMEOUT, r"--total-timeout of 4s ran out")
    assert r.seconds < 20


def test_row2_a_record_with_nan_fails_and_stdout_stays_json(tmp_path: Path) -> None:
    records = b'{"text":"John is 42","x":NaN,"y":Infinity}\n{"text":"Ann is 7","big":1e400}\n'
    r = qwenjson(
        tmp_path, "extract", "-s", "name, age int", *M, "--jsonl", "--field", "text", stdin=records
    )
    check(
        r, EXIT_SOME_RECORDS_FAILED, r"line 1: not strict JSON: NaN is not a JSON number \(at /x\)"
    )
    assert "line 2: not strict JSON: 1e400 is too large for a number (at /big)" in r.err
    assert r.out == b""


def test_row3_errors_file_that_is_stdout_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = qwenjson(
        tmp_path,
        *EXTRACT,
        "--jsonl",
        "--errors",
        "/dev/stdout",
        stdin=b"a\n\nb\n",
        stdout=out,
    )
    check(r, EXIT_USAGE, r"the --errors file is the same file as stdout")
    assert out.read_bytes() == b""


def test_row4_a_recursive_schema_works_in_extract(tmp_path: Path) -> None:
    schema = '{"type":"array","items":{"$ref":"#"}}'
    r = qwenjson(tmp_path, "extract", *M, "-s", schema, stdin=b"hi\n")
    check(r, EXIT_OK, "")
    document = json.loads(r.out)
    assert isinstance(document, list)


def test_row5_a_long_concise_schema_is_read_as_concise(tmp_path: Path) -> None:
    concise = ", ".join(f"f{i} int" for i in range(40))
    assert len(concise) > 255
    r = qwenjson(tmp_path, "grammar", "-s", concise)
    check(r, EXIT_OK, "", json_out=False)
    assert '\\"f39\\"' in r.out.decode()


@pytest.mark.slow
def test_row6_unbounded_input_is_refused_and_reads_obey_time_limits(tmp_path: Path) -> None:
    r = qwenjson(tmp_path, *EXTRACT, "--input", "/dev/zero", "--total-timeout", "30")
    check(r, EXIT_INPUT, r"'/dev/zero' is larger than 32 MiB")
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", "--input", "/dev/zero")
    check(r, EXIT_INPUT, r"line 1 is larger than 32 MiB")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes: the read blocks until the time limit
    for batch in ((), ("--jsonl",)):
        r = qwenjson(
            tmp_path,
            *EXTRACT,
            *batch,
            "--input",
            str(fifo),
            "--total-timeout",
            "2",
        )
        check(r, EXIT_TIMEOUT, r"--total-timeout of 2s ran out")
        assert r.seconds < 15


def test_row7_a_lone_surrogate_fails_its_record_and_the_batch_goes_on(tmp_path: Path) -> None:
    records = b'{"text":"a \\ud800"}\n{"text":"Ann Lee is here", "k": "\\udc00"}\n{"text":"Bob"}\n'
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", "--field", "text", stdin=records)
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 1: not strict JSON: a string holds a lone surrogate")
    assert "line 2: " in r.err
    assert len(r.out.splitlines()) == 1  # line 3 was done


def test_schema_dsl_of_an_argument_that_isnt_utf8_names_the_byte(tmp_path: Path) -> None:
    r = qwenjson(tmp_path, "schema", "dsl", "a: caf\udce9")  # the byte 0xe9, as argv gives it
    check(r, EXIT_SCHEMA, r"the concise schema is not UTF-8 text \(byte 0xe9 at byte 6\)")


def test_schema_dsl_prints_no_schema_that_extract_would_refuse(tmp_path: Path) -> None:
    r = qwenjson(tmp_path, "schema", "dsl", "a int 0.." + "9" * 400)
    check(r, EXIT_SCHEMA, r"not a usable JSON Schema: an integer of 400 digits")
    bom = qwenjson(tmp_path, "schema", "dsl", "\ufeffname, age int")  # `"$(cat file)"`
    assert bom.code == 0 and json.loads(bom.out)["required"] == ["name", "age"]


@pytest.mark.parametrize("evidence", [(), ("--evidence",)], ids=["plain", "evidence"])
def test_the_records_other_numbers_go_out_as_written(
    tmp_path: Path, evidence: tuple[str, ...]
) -> None:
    kept = '"p":0.30000000000000000001,"e":1E2,"z":-0,"n":[-0.0,1.50,{"b":12345678901234567890.5}]'
    records = ('{"text":"Ann is here",' + kept + "}\n").encode()
    r = qwenjson(tmp_path, *EXTRACT, *evidence, "--jsonl", "--field", "text", stdin=records)
    check(r, EXIT_OK, "")
    assert r.out.decode().startswith("{" + kept + ',"extracted":{')


def test_a_jsonl_input_with_no_lines_is_no_records(tmp_path: Path) -> None:
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", stdin=b"")
    check(r, EXIT_OK, "")
    assert (r.out, r.err) == (b"", "")


def test_a_line_over_32_mib_fails_alone_and_the_batch_goes_on(tmp_path: Path) -> None:
    records = b"Ann is here\n" + b"x" * (33 << 20) + b"\r\nBob is here\n"
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", "--on-error", "record", stdin=records)
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 2: the line is larger than 32 MiB")
    assert len(r.out.splitlines()) == 2  # lines 1 and 3


def test_a_duplicate_key_that_is_a_lone_surrogate_goes_to_the_errors_file(tmp_path: Path) -> None:
    # The message is written to --errors as UTF-8, which can't hold the surrogate itself.
    records = b'{"\\ud800":1,"\\ud800":2,"text":"Ann"}\n{"text":"Bob is here"}\n'
    r = qwenjson(
        tmp_path, *EXTRACT, "--jsonl", "--field", "text", "--errors", "e.jsonl", stdin=records
    )
    check(r, EXIT_SOME_RECORDS_FAILED, "")
    assert len(r.out.splitlines()) == 1
    [error] = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert error["line"] == 1
    assert error["error"].startswith('not strict JSON: duplicate key "\\ud800"')


@pytest.mark.parametrize("batch", [(), ("--jsonl",)], ids=["document", "jsonl"])
def test_a_bad_byte_after_a_bom_is_named_at_its_own_offset(
    tmp_path: Path, batch: tuple[str, ...]
) -> None:
    r = qwenjson(tmp_path, *EXTRACT, *batch, stdin=b"\xef\xbb\xbfab\xffcd\n")
    code = EXIT_SOME_RECORDS_FAILED if batch else EXIT_INPUT
    check(r, code, r"not UTF-8 text \(invalid byte 0xff at offset 5\)")


def _checkpointed(tmp: Path, lines: bytes) -> Result:
    return qwenjson(
        tmp,
        *EXTRACT,
        "--jsonl",
        "--checkpoint",
        "ck",
        stdin=lines,
        stdout=tmp / "out.jsonl",
    )


def test_row8_a_damaged_checkpoint_is_named_and_left_alone(tmp_path: Path) -> None:
    lines = b"Ann is here\nBob is here\nCid is here\n"
    check(_checkpointed(tmp_path, lines), EXIT_OK, "")
    ck = tmp_path / "ck"
    damaged = ck.read_bytes().splitlines(keepends=True)
    damaged[2] = b"garbage\n"
    ck.write_bytes(b"".join(damaged))
    r = _checkpointed(tmp_path, lines)
    check(r, EXIT_USAGE, r"--checkpoint 'ck' is damaged at line 3")
    assert ck.read_bytes() == b"".join(damaged)


def test_row9_stdout_closed_or_full_and_errors_full_are_exit_9(tmp_path: Path) -> None:
    r = qwenjson(tmp_path, *EXTRACT, stdin=b"Ann\n", redirect=">&-")
    check(r, EXIT_OUTPUT, r"cannot write to stdout: it is closed")
    r = qwenjson(tmp_path, *EXTRACT, stdin=b"Ann\n", stdout=Path("/dev/full"))
    check(r, EXIT_OUTPUT, r"cannot write to stdout: No space left on device", json_out=False)
    r = qwenjson(
        tmp_path,
        *EXTRACT,
        "--jsonl",
        "--errors",
        "/dev/full",
        "--checkpoint",
        "ck",
        stdin=b"\n",
        stdout=tmp_path / "out",
    )
    check(r, EXIT_OUTPUT, r"cannot write the --errors file '/dev/full': No space left on device")
    # The failed record is not checkpointed: only the header is there.
    assert len((tmp_path / "ck").read_bytes().splitlines()) == 1


def test_row9_stdout_full_in_a_batch_checkpoints_nothing(tmp_path: Path) -> None:
    r = qwenjson(
        tmp_path,
        *EXTRACT,
        "--jsonl",
        "--checkpoint",
        "ck",
        stdin=b"Ann is here\n",
        stdout=Path("/dev/full"),
    )
    check(r, EXIT_OUTPUT, r"cannot write to stdout: No space left on device", json_out=False)
    assert len((tmp_path / "ck").read_bytes().splitlines()) == 1


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type":"number","maximum":NaN}', r"NaN is not a JSON number \(at /maximum\)"),
        ('{"type":"number","maximum":Infinity}', r"Infinity is not a JSON number \(at /maximum\)"),
        ('{"type":"integer","minimum":1e400}', r"1e400 is too large for a number \(at /minimum\)"),
        ('{"type":"integer","maximum":' + "9" * 5000 + "}", r"5000 digits .*\(at /maximum\)"),
        ("x " + "[" * 5000 + "str" + "]" * 5000, r"nested more than 64 levels deep at column"),
        ('{"items":' * 600 + "{}" + "}" * 600, r"nested more than 128 levels deep \(at /items/"),
        ('{"properties":{},"properties":{}}', r'duplicate key "properties" \(at /\)'),
        # Found by the fuzzer: the compiler computes number bounds with floats.
        ('{"type":"number","maximum":' + "9" * 400 + "}", r"beyond the range of a double"),
    ],
)
def test_row10_row14_numbers_and_nesting_in_schemas_are_exit_3(
    tmp_path: Path, schema: str, message: str
) -> None:
    r = qwenjson(tmp_path, "grammar", "-s", schema)
    check(r, EXIT_SCHEMA, message, json_out=False)
    assert r.out == b""


def test_row10_a_5000_digit_integer_fails_its_record(tmp_path: Path) -> None:
    records = b'{"text":"Ann","n":' + b"7" * 5000 + b"}\n"
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", "--field", "text", stdin=records)
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 1: not strict JSON: an integer of 5000 digits")


def test_row11_a_fifo_model_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    r = qwenjson(
        tmp_path, "extract", "-s", "name", "-m", "./fifo", "--total-timeout", "3", stdin=b"Ann\n"
    )
    check(r, EXIT_MODEL, r"fifo is not a regular file")


def test_row12_a_checkpoint_mismatch_names_the_first_line_that_differs(tmp_path: Path) -> None:
    check(_checkpointed(tmp_path, b"Ann is here\nBob is here\nCid is here\n"), EXIT_OK, "")
    r = _checkpointed(tmp_path, b"Xan is here\nBob is here\nCid is here\n")
    check(
        r, EXIT_USAGE, r"the input differs from the one the checkpoint was made for \(at line 1\)"
    )


def test_row13_models_escapes_control_characters(tmp_path: Path) -> None:
    registry = tmp_path / "models.toml"
    registry.write_text(
        '["evil"]\nrepo = "a/b"\nfile = "m.gguf"\nrevision = "main"\nsha256 = ""\n'
        'description = "\\u001b[31mred\\r\\nforged-model  Q4  1 GB  yes  forged"\n',
        encoding="utf-8",
    )
    r = qwenjson(tmp_path, "models", env={"QWENJSON_MODELS_FILE": str(registry)})
    check(r, EXIT_OK, "", json_out=False)
    table = r.out.decode()
    assert "\x1b" not in table and "\r" not in table
    evil = [line for line in table.splitlines() if "forged" in line]
    assert len(evil) == 1 and evil[0].startswith("evil") and "\\x1b[31mred\\r\\n" in evil[0]


def test_row14_nan_in_a_schema_file_and_an_empty_model_are_refused(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type":"object","maxProperties":-Infinity}')
    r = qwenjson(tmp_path, "extract", "-s", "s.json", *M, stdin=b"Ann\n")
    check(r, EXIT_SCHEMA, r"-Infinity is not a JSON number \(at /maxProperties\)")
    r = qwenjson(tmp_path, "extract", "-s", "name", "-m", "", stdin=b"Ann\n")
    check(r, EXIT_MODEL, r"--model is empty")


@pytest.mark.slow
def test_issue11_a_10_mb_input_is_refused_without_tokenizing_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"the quick brown fox jumps over the lazy dog " * 230_000)  # 10 MB
    r = qwenjson(tmp_path, *EXTRACT, "--input", str(big), "--no-chunks")
    check(r, EXIT_INPUT, r"the input is too long: the prompt takes more than \d+ tokens")
    r = qwenjson(
        tmp_path,
        *EXTRACT,
        "--input",
        str(big),
        "--truncate",
        "head",
        "--ctx",
        "512",
        "--max-tokens",
        "64",
    )
    check(r, EXIT_OK, r"input cut from \d+ to \d+ tokens")


def test_issue11_a_long_text_is_measured_by_the_part_that_could_be_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whole, the 10 MB text above took 12 s and 580 MB to tokenize. What is asserted is what
    # the tokenizer is given, not how long it took (that depends on the machine).
    from qwenjson.pipeline import Extractor, open_model
    from qwenjson.runner import fit_to_context
    from qwenjson.vocab import Vocabulary

    given: list[int] = []
    tokenize = Vocabulary.tokenize

    def recording(self: Vocabulary, text: bytes, **kw: bool) -> list[int]:
        given.append(len(text))
        return tokenize(self, text, **kw)

    big = "the quick brown fox jumps over the lazy dog " * 230_000
    model = open_model(MODEL, threads=1)
    try:
        extractor = Extractor({"type": "object", "properties": {"name": {"type": "string"}}}, model)
        monkeypatch.setattr(Vocabulary, "tokenize", recording)
        with pytest.raises(InputError, match=r"the prompt takes more than \d+ tokens"):
            fit_to_context(extractor, big, None)
        # At most 16 characters a token of the context (runner._CHARS_PER_TOKEN), and the rest
        # of the prompt: under a hundredth of the text.
        assert given and max(given) <= 16 * model.n_ctx + 2_000 < len(big) // 100
    finally:
        model.close()


def test_issue11_shell_completion_answers(tmp_path: Path) -> None:
    env = {
        "_QWENJSON_COMPLETE": "complete_bash",
        "COMP_WORDS": "qwenjson extract --trun",
        "COMP_CWORD": "2",
    }
    r = qwenjson(tmp_path, env=env)
    check(r, EXIT_OK, "", json_out=False)
    assert r.out.decode().split() == ["--truncate"]


def test_issue11_the_token_preview_is_cleared_before_the_document(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """On a terminal, the live preview is taken off before the document is written (else the
    screen shows the preview running into it: `["读书", "跑步{"name":…`)."""
    import io

    from qwenjson import cli, console, pipeline
    from tests.fakes import FakeModel

    events: list[str] = []
    model = FakeModel(answers=['{"name": "Ann"}'])
    monkeypatch.setattr(pipeline, "open_model", lambda *a, **k: model)
    monkeypatch.setattr(console.stderr, "_force_terminal", True)
    real_clear, real_write = console.TokenPreview.clear, cli.write_document

    def clear(self: console.TokenPreview) -> None:
        events.append("clear" if self._live is not None else "nothing to clear")
        real_clear(self)

    def write(text: str) -> None:
        events.append("write")
        real_write(text)

    monkeypatch.setattr(console.TokenPreview, "clear", clear)
    monkeypatch.setattr(cli, "write_document", write)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Ann"), encoding="utf-8"))
    assert cli.run(["extract", "-s", "name"]) == 0
    assert capsysbinary.readouterr().out == b'{"name":"Ann"}\n'
    assert events[:2] == ["clear", "write"]


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (("--total-timeout", "inf"), EXIT_OK, ""),  # an alarm can't be set that far: re-armed
        (("--total-timeout", "1e300"), EXIT_OK, ""),
        (("--seed", "-5"), EXIT_USAGE, r"Invalid value for '--seed'"),
        (("--threads", "100000"), EXIT_USAGE, r"Invalid value for '--threads'"),  # was SIGSEGV
        (("--prompt-threads", "513"), EXIT_USAGE, r"Invalid value for '--prompt-threads'"),
        # llama.cpp's 32 bits made it a 1024-token context, exit 0.
        (("--ctx", str(2**32 + 1024)), EXIT_USAGE, r"Invalid value for '--ctx'"),
    ],
)
def test_options_at_their_limits(
    tmp_path: Path, options: tuple[str, ...], code: int, message: str
) -> None:
    r = qwenjson(tmp_path, *EXTRACT, "--max-tokens", "20", *options, stdin=b"Ann is here\n")
    check(r, code, message)


@pytest.mark.parametrize(
    "options", [("--on-error", "bogus"), ("--timeout", "abc"), ("--no-such-option",)]
)
def test_a_usage_error_says_error_first(tmp_path: Path, options: tuple[str, ...]) -> None:
    # Click's own show() printed "Usage: …" and "Try …" before the "Error: …" line.
    r = qwenjson(tmp_path, *EXTRACT, *options, stdin=b"Ann is here\n")
    check(r, EXIT_USAGE, r"^Error: ")
    assert r.err.splitlines()[-1] == "Try 'qwenjson extract -h' for help."


def test_stderr_closed_still_works_and_logs_into_no_file(tmp_path: Path) -> None:
    r = qwenjson(
        tmp_path, *EXTRACT, "--jsonl", "--checkpoint", "ck", stdin=b"Ann is here\n", redirect="2>&-"
    )
    check(r, EXIT_OK, "")
    assert len(r.out.splitlines()) == 1
    assert all(line.startswith(b"{") for line in (tmp_path / "ck").read_bytes().splitlines())


@pytest.mark.parametrize(
    ("options", "redirect", "message"),
    [
        (("--errors", "in"), "", "the --errors file is the same file as the input"),
        (("--checkpoint", "in"), "", "the --checkpoint file is the same file as the input"),
        ((), ">> in", "stdout is the same file as the input"),
    ],
)
def test_a_batch_never_writes_into_its_own_input(
    tmp_path: Path, options: tuple[str, ...], redirect: str, message: str
) -> None:
    (tmp_path / "in").write_bytes(b"Ann\n\n")
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", "--input", "in", *options, redirect=redirect)
    check(r, EXIT_USAGE, message)
    assert (tmp_path / "in").read_bytes() == b"Ann\n\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("-i", ""), EXIT_USAGE, r"'--input' / '-i': empty \(an unset variable\?\)"),
        (("--cache-dir", ""), EXIT_USAGE, r"'--cache-dir': empty"),
        (("--checkpoint", ""), EXIT_USAGE, r"'--checkpoint': empty"),
        (("--jsonl", "--errors", ""), EXIT_USAGE, r"'--errors': empty"),
        (("--jsonl", "--field", ""), EXIT_USAGE, r"--field is empty"),
        (("--jsonl", "--field", "t", "--into", ""), EXIT_USAGE, r"--into is empty"),
        (("--timeout", "0"), EXIT_USAGE, r"--timeout must be above 0 seconds"),
        (("--total-timeout", "0"), EXIT_USAGE, r"--total-timeout must be above 0 seconds"),
    ],
)
def test_an_empty_path_or_key_is_refused_not_read_as_here(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    # `--checkpoint "$CKPT"` with the variable unset named the current directory ('.'), and
    # `--cache-dir ""` wrote the cache there.
    r = qwenjson(tmp_path, *EXTRACT, *args, stdin=b'{"t": "Tom"}\n')
    check(r, code, message)
    assert r.out == b"" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [("extract", *M, "-s"), ("grammar", "-s"), ("schema", "check")])
def test_an_empty_schema_is_refused_by_name(tmp_path: Path, command: tuple[str, ...]) -> None:
    r = qwenjson(tmp_path, *command, "", stdin=b"Tom")
    check(r, EXIT_SCHEMA, r"the schema is empty")


def test_a_last_line_with_no_line_end_waits_for_the_next_run_under_a_checkpoint(
    tmp_path: Path,
) -> None:
    # A file still being appended to: its half-written last line was extracted and logged, and
    # every later run stopped at "the input differs (at line 3)", exit 2.
    source = tmp_path / "in.txt"

    def run(data: bytes, *more: str) -> Result:
        source.write_bytes(data)
        args = (*EXTRACT, "--jsonl", "--input", str(source), "--checkpoint", "ck", *more)
        return qwenjson(tmp_path, *args, stdout=tmp_path / "out.jsonl")

    r = run(b"Ann is here\nBob is here\nCid is")
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 3 has no line end yet: not read, nor logged")
    assert len(r.out.splitlines()) == 2
    r = run(b"Ann is here\nBob is here\nCid is here\nDan is here\n")
    check(r, EXIT_OK, "")
    assert len(r.out.splitlines()) == 4  # the first two once, the last two now
    # A --field record is whole when it is a JSON object: a file's last one needs no line end.
    (tmp_path / "ck").unlink()
    (tmp_path / "out.jsonl").unlink()
    r = run(b'{"t": "Ann is here"}\n{"t": "Bob is', "--field", "t")
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 2 has no line end yet")
    r = run(b'{"t": "Ann is here"}\n{"t": "Bob is here"}', "--field", "t")
    check(r, EXIT_OK, "")
    assert len(r.out.splitlines()) == 2
    # Through a pipe (`cat growing.txt |`) too.
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", "--checkpoint", "ck2", stdin=b"Ann\nBob is")
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 2 has no line end yet")
    # A CRLF file's last object, its "\r" written and its "\n" not yet: read as the whole line
    # will be (it was logged with its "\r", and the next run stopped at "the input differs").
    (tmp_path / "ck").unlink()
    (tmp_path / "out.jsonl").unlink()
    r = run(b'{"t": "Ann is here"}\r\n{"t": "Bob is here"}\r', "--field", "t")
    check(r, EXIT_OK, "")
    r = run(
        b'{"t": "Ann is here"}\r\n{"t": "Bob is here"}\r\n{"t": "Cid is here"}\r\n', "--field", "t"
    )
    check(r, EXIT_OK, "")
    assert len(r.out.splitlines()) == 3
    # A last line nested past Python's recursion limit: exit 1 (a RecursionError) on every run.
    (tmp_path / "ck").unlink()
    (tmp_path / "out.jsonl").unlink()
    deep = b'{"t": "Bob is here", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = run(b'{"t": "Ann is here"}\n' + deep, "--field", "t")
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 2 has no line end yet")
    r = run(b'{"t": "Ann is here"}\n' + deep + b"\n", "--field", "t")
    check(r, EXIT_SOME_RECORDS_FAILED, r"line 2: not strict JSON: nested more than 128 levels")


def test_a_jsonl_input_that_fails_to_read_is_exit_6(tmp_path: Path) -> None:
    # /proc/self/mem gives EIO at offset 0: exit 1, "internal error", with --jsonl.
    r = qwenjson(tmp_path, *EXTRACT, "--jsonl", "--input", "/proc/self/mem")
    check(r, EXIT_INPUT, r"cannot read line 1: Input/output error")


def _full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full (its reader end kept open, never read)."""
    import fcntl

    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, b"x" * 4096)
    fcntl.fcntl(w, fcntl.F_SETFL, flags)
    return r, w


def _blocked_writing(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """The command with stdout a full pipe, once it waits in a write to it (its reader end)."""
    r, w = _full_pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwenjson", *args],
        stdin=subprocess.PIPE,
        stdout=w,
        stderr=subprocess.PIPE,
        cwd=tmp,
        env=cli_env(tmp),
    )
    os.close(w)
    assert proc.stdin is not None
    proc.stdin.write(b"Ann is here\nBob is here\n")
    proc.stdin.close()
    wchan = Path(f"/proc/{proc.pid}/wchan")
    for _ in range(600):
        if proc.poll() is not None:
            break
        # In the kernel's pipe write, or (since it waits to be able to write) in select.
        if any(word in wchan.read_text() for word in ("pipe_write", "pipe_wait", "select", "poll")):
            return proc, r
        time.sleep(0.1)
    proc.kill()
    os.close(r)
    raise AssertionError(f"never waited on the full pipe: exit {proc.wait()}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stdout_nobody_reads_doesnt_hold_off_a_signal(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    # The write waited with the signals held: only SIGKILL ended the process, and the
    # checkpoint's lock with it kept every later cron run out (exit 2).
    proc, r = _blocked_writing(tmp_path, *EXTRACT, "--jsonl", "--checkpoint", "ck")
    try:
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
    finally:
        proc.kill()
        os.close(r)
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read().decode()
    # Nothing was logged: the checkpoint holds its header alone, and a rerun does both records.
    assert len((tmp_path / "ck").read_bytes().splitlines()) == 1


def test_a_stdout_nobody_reads_doesnt_hold_off_the_total_timeout(tmp_path: Path) -> None:
    proc, r = _blocked_writing(tmp_path, *EXTRACT, "--jsonl", "--total-timeout", "20")
    try:
        assert proc.wait(timeout=90) == EXIT_TIMEOUT
    finally:
        proc.kill()
        os.close(r)
