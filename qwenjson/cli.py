"""The command line: a thin Typer layer, and the only place that knows exit codes and the terminal.

Every failure is a ``QwenJsonError`` raised by the core; ``run`` prints it once as
``Error: …`` on stderr and returns its exit code. Stdout carries JSON only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Literal, NoReturn

import typer

from qwenjson import console, deadline
from qwenjson.errors import (
    EXIT_INTERNAL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    InputError,
    ModelError,
    OutputError,
    QwenJsonError,
    UsageError,
)
from qwenjson.stream import output_errors, signals_held

if TYPE_CHECKING:
    from qwenjson.batch import BatchOptions, RecordRunner

EXIT_CODES_HELP = """\
Exit codes: 0 ok; 1 internal error (a bug: please report it); 2 usage; 3 schema (missing, not
JSON, not a valid JSON Schema, or uses a keyword qwenjson can't enforce); 4 model (unknown,
missing, not a GGUF, download or checksum failed); 5 no valid output (the model's answer failed
validation after all retries, or ran out of --max-tokens); 6 input (empty, not UTF-8, longer than
the context with --no-chunks, larger than 32 MiB); 7 timeout; 8 some records of a --jsonl batch
failed (each reported with its line); 9 cannot write stdout or --errors (disk full, closed); 130
interrupted (SIGINT); 141 stdout closed early (SIGPIPE, e.g. | head); 143 terminated (SIGTERM).
"""

app = typer.Typer(
    name="qwenjson",
    help="Turn unstructured text into JSON that matches a JSON Schema, "
    "with a small local model.\n\n"
    "Example: qwenjson extract --schema person.json < note.txt\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
schema_app = typer.Typer(
    help="Inspect schemas: what qwenjson enforces, and the concise syntax.\n\n"
    "Example: qwenjson schema check person.json",
    no_args_is_help=True,
)
app.add_typer(schema_app, name="schema")

EXIT_SIGPIPE = 141

# llama.cpp's own limit (GGML_MAX_N_THREADS): more and it crashes (SIGSEGV) instead of refusing.
MAX_THREADS = 512


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that cleanup runs and the exit code is 143."""


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise _Terminated()


def write_document(text: str) -> None:
    """Write one JSON document and a newline to stdout, whole, and flush it."""
    data = (text + "\n").encode("utf-8")
    with signals_held(), output_errors("stdout"):  # stdout never ends in a partial line
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _read_input(input_file: Path | None) -> str:
    from qwenjson.batch import read_bounded
    from qwenjson.pipeline import decode_input

    if input_file is not None and str(input_file) != "-":
        name = str(input_file)
        try:
            with input_file.open("rb") as f:
                data = read_bounded(f, f"input file {name!r}")
        except FileNotFoundError:
            raise InputError(f"input file {name!r} not found") from None
        except OSError as e:
            raise InputError(f"cannot read input file {name!r}: {e.strerror}") from e
        return decode_input(data, origin=name)
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no input: pipe the text on stdin or give --input FILE")
    return decode_input(read_bounded(sys.stdin.buffer, "stdin"))


SchemaOpt = Annotated[
    str,
    typer.Option(
        "--schema",
        "-s",
        help="JSON Schema: a file, inline JSON, or the concise syntax ('name, age int 0..150').",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registry name (see `qwenjson models`), path to a .gguf, or hf:REPO/FILE. "
        "[default: qwen2.5-0.5b-instruct]",
        show_default=False,
    ),
]


@app.command()
def extract(
    context: typer.Context,
    schema: SchemaOpt,
    model: ModelOpt = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Read the text from FILE instead of stdin."),
    ] = None,
    instruction: Annotated[
        str | None,
        typer.Option(help="Extra instruction for the model, e.g. 'dates as YYYY-MM-DD'."),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(min=1, help="Most tokens to generate for one document.")
    ] = 1024,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="0 is greedy: the same input gives the same output.")
    ] = 0.0,
    seed: Annotated[
        int, typer.Option(min=0, help="Random seed (used when --temperature > 0).")
    ] = 0,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_THREADS,
            help="CPU threads for decoding (and for the prompt, unless --prompt-threads). "
            "[default: the cores other processes leave free, checked before each record: "
            "decoding on all of them up to 4, beyond that one left idle (at most 8); the "
            "prompt on all of them]",
        ),
    ] = None,
    prompt_threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_THREADS,
            help="CPU threads for evaluating the prompt. [default: see --threads]",
        ),
    ] = None,
    ctx: Annotated[int, typer.Option(min=256, help="Context size in tokens.")] = 4096,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the evaluated prompt prefix here, so the next run skips it. "
            "[default: ~/.cache/qwenjson/kv]",
            show_default=False,
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Don't read or write the prompt-prefix cache.")
    ] = False,
    retries: Annotated[
        int,
        typer.Option(min=0, help="Extra attempts when a document fails validation."),
    ] = 2,
    keep_empty: Annotated[
        bool,
        typer.Option(
            "--keep-empty",
            help='Keep object members the model left as "". By default those the schema '
            "lets go are dropped (a small model writes them for fields the text doesn't give).",
        ),
    ] = False,
    grounding: Annotated[
        bool,
        typer.Option(
            "--grounding/--no-grounding",
            help="Free-text strings may only be copied from the input text (a value the text "
            "doesn't contain can't be written; a field the text has no value for is left out). "
            'Per field, "x-grounded": true|false in the schema decides either way; '
            "--no-grounding changes the default for the rest.",
        ),
    ] = True,
    evidence: Annotated[
        bool,
        typer.Option(
            "--evidence",
            help='Print {"data": DOC, "evidence": {"/pointer": [start, end] | null, ...}, '
            '"confidence": {"/pointer": p, ...}}: for every value, where in the input it comes '
            "from (code point offsets, text[start:end]) and the model's probability for it. "
            "With --field, the two maps go beside the document.",
        ),
    ] = False,
    require_evidence: Annotated[
        bool,
        typer.Option(
            "--require-evidence",
            help="Fail (exit 5) when a value that needs a source in the text has none: a "
            "required grounded string the model had to be pushed to, or a number the text "
            "doesn't contain.",
        ),
    ] = False,
    pretty: Annotated[bool, typer.Option(help="Indent the JSON output.")] = False,
    offline: Annotated[
        bool,
        typer.Option(
            help="Never download; fail if the model isn't cached (also HF_HUB_OFFLINE=1)."
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress, previews or warnings on stderr."),
    ] = False,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl",
            help="Batch: each input line is a record; one output line per record, in input "
            "order, written as each record finishes. One model load for all records.",
        ),
    ] = False,
    field: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="With --jsonl: each line is a JSON object whose NAME field holds the text. "
            "The output line is that object without NAME, plus the document under --into.",
        ),
    ] = None,
    into: Annotated[
        str, typer.Option(metavar="KEY", help="With --field: the key the document goes under.")
    ] = "extracted",
    each: Annotated[
        bool,
        typer.Option(
            "--each",
            help='The schema is one item: extract a list of them ({"items": [...]}) and print '
            "each item as its own line as soon as it closes, validated on its own. Printed "
            "items stay printed if the list fails later (the exit code says so), and once one "
            "is out the list is not retried.",
        ),
    ] = False,
    on_error: Annotated[
        Literal["record", "skip", "stop"] | None,
        typer.Option(
            help="With --jsonl, a failed record: 'record' (the default) reports it and goes "
            "on, 'skip' goes on silently, 'stop' ends the batch with that record's exit code. "
            "A batch in which any record failed exits 8.",
            show_default=False,
        ),
    ] = None,
    errors_file: Annotated[
        Path | None,
        typer.Option(
            "--errors",
            metavar="FILE",
            help="With --on-error record: append one JSON object per failed record "
            '({"line": N, "error": "...", "exit_code": K}) to FILE instead of writing '
            "'Error: line N: ...' on stderr.",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Log finished records (with --jsonl) and finished pieces of a text longer than "
            "the context in FILE; a rerun after a crash or kill -9 goes on from there and "
            "duplicates nothing: the output is the same as an uninterrupted run's. Append stdout "
            "to a file (>> out.jsonl): its lines after the last logged point are cut off and "
            "redone (through a pipe, a kill can repeat what was in flight). A checkpoint from "
            "another schema, model, options or input is refused.",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Seconds for one document (for each record with --jsonl, where a record "
            "that runs out fails on its own); exit 7.",
        ),
    ] = None,
    total_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Seconds for the whole run, model load included; exit 7 (with --checkpoint, "
            "a rerun goes on from there).",
        ),
    ] = None,
    truncate: Annotated[
        Literal["head", "tail"] | None,
        typer.Option(
            help="Input longer than the context: keep its beginning (head) or its end (tail), "
            "cut by tokens, instead of extracting it in pieces.",
            show_default=False,
        ),
    ] = None,
    chunks: Annotated[
        bool,
        typer.Option(
            "--chunks/--no-chunks",
            help="A text longer than the context is split at paragraphs or sentences into "
            "overlapping pieces, each extracted, the results merged: with --each every item "
            "once, in order; otherwise each field from the first piece that has a source for it "
            "(README: Long texts). --no-chunks refuses such a text (exit 6).",
        ),
    ] = True,
    chunk_tokens: Annotated[
        int | None,
        typer.Option(
            min=16,
            metavar="N",
            help="Most tokens of text in one piece; a longer text is split even if it fits the "
            "context. [default: 256, or what fits beside the prompt and --max-tokens if less; "
            "a text that fits is read whole]",
            show_default=False,
        ),
    ] = None,
    chunk_overlap: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Tokens each piece repeats from the end of the one before. [default: an "
            "eighth of a piece]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Extract one JSON document matching --schema from the text on stdin.

    Prints one line of compact JSON (indented with --pretty) that has passed validation;
    with --jsonl, one line per input record; with --each, one line per item.

    Example: qwenjson extract --schema person.json < note.txt

    Example: qwenjson extract --schema person.json --jsonl --field text --checkpoint ck
    < notes.jsonl >> people.jsonl

    Example: qwenjson extract --each -s 'name, role' --checkpoint report.ck
    < long_report.txt >> people.jsonl
    """
    from qwenjson.batch import BatchOptions, RecordOptions, RecordRunner, prepare_job
    from qwenjson.kvcache import default_cache_dir
    from qwenjson.pipeline import ExtractOptions, open_model
    from qwenjson.validate import load_schema

    started = time.monotonic()
    batch_only = {"--field": field, "--on-error": on_error, "--errors": errors_file}
    batch_only["--into"] = into if into != "extracted" else None
    for name, value in batch_only.items():
        if value is not None and not jsonl:
            raise UsageError(f"{name} needs --jsonl")
    if errors_file is not None and on_error not in (None, "record"):
        raise UsageError("--errors needs --on-error record")
    if not chunks and (chunk_tokens is not None or chunk_overlap is not None):
        raise UsageError("--chunk-tokens and --chunk-overlap can't be used with --no-chunks")
    if pretty and (jsonl or each):
        raise UsageError("--pretty can't be used with --jsonl or --each (one document per line)")
    if model is not None and not model.strip():
        raise ModelError("--model is empty: give a registry name, a .gguf path or hf:REPO/FILE")
    for name, value in (("--instruction", instruction), ("--field", field), ("--into", into)):
        _check_utf8(name, value)
    # The whole run, model load and input reads included, within --total-timeout (until the
    # command's context closes): the alarm stops what the clock checks between tokens never
    # reach (a blocked read, a FIFO).
    context.with_resource(
        deadline.limit(total_timeout, lambda: _total_timeout_expired(total_timeout))
    )
    schema_value = load_schema(schema)
    job = prepare_job(schema_value, each=each)
    source = _open_records(input_file) if jsonl else None
    text = "" if jsonl else _read_input(input_file)
    offline = offline or _env_flag("HF_HUB_OFFLINE")
    _warn_about_build(quiet)
    with console.download_progress("Downloading model", enabled=not quiet) as progress:
        generator = open_model(
            model,
            offline=offline,
            threads=threads,
            prompt_threads=prompt_threads,
            n_ctx=ctx,
            progress=progress,
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
        )
    try:
        options = ExtractOptions(
            instruction=instruction,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            retries=retries,
            keep_empty=keep_empty,
            grounding=grounding,
            evidence=evidence,
            require_evidence=require_evidence,
        )
        record = RecordOptions(
            each=each,
            truncate=truncate,
            timeout=timeout,
            chunks=chunks,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )
        runner = RecordRunner(
            job, generator, options, record, total_timeout=total_timeout, started=started
        )
        notice = None if quiet else console.warning
        # Everything that decides what a record's output is: a checkpoint of another job is
        # refused. (Threads, timeouts and error handling don't change outputs.)
        job_parts = {
            "schema": schema_value,
            "model": str(model or ""),
            "ctx": ctx,
            # (--keep-empty only when given: checkpoints written before it existed match.)
            "options": [instruction, max_tokens, temperature, seed, retries]
            + (["keep-empty"] if keep_empty else []),
            # Grounding changed what every record prints: checkpoints from before it (no
            # such key) are refused rather than resumed with mixed outputs.
            "grounding": [grounding, evidence, require_evidence],
            "records": [field, into, each, truncate],
            # So did chunking (a record longer than the context was a failure before).
            "chunks": [chunks, chunk_tokens, chunk_overlap, "jsonl" if jsonl else "document"],
        }
        if source is not None:
            _extract_jsonl(
                runner,
                source,
                BatchOptions(
                    field=field, into=into, on_error=on_error or "record", evidence=evidence
                ),
                errors_file,
                checkpoint,
                job_parts,
                quiet,
            )
        elif checkpoint is not None:
            _extract_document(runner, text, pretty, checkpoint, job_parts, quiet, input_file)
        else:
            from qwenjson.pieces import PieceHooks

            with console.piece_progress(enabled=not quiet) as bar:
                on_text = bar.on_text if bar is not None else None
                clear = bar.clear if bar is not None else None
                writer = _document_writer(pretty, before=clear)
                hooks = PieceHooks(progress=bar.on_piece if bar is not None else None)
                runner.run(text, writer, on_text=on_text, notice=notice, pieces=hooks)
    finally:
        generator.close()


def _check_utf8(name: str, value: str | None) -> None:
    """Refuse an argument with bytes that aren't UTF-8 (Python keeps them as lone surrogates,
    which can reach neither the model nor stdout)."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(value[e.start]) & 0xFF
        raise UsageError(f"{name} is not UTF-8 text (byte 0x{byte:02x} at {e.start})") from None


def _total_timeout_expired(seconds: float | None) -> QwenJsonError:
    from qwenjson.batch import TotalTimeoutExpired

    return TotalTimeoutExpired(f"--total-timeout of {seconds:g}s ran out")


def _document_writer(
    pretty: bool, before: Callable[[], None] | None = None
) -> Callable[[str], None]:
    """Writes each document to stdout; ``before`` first (clearing the token preview, which
    would otherwise run into the document on a terminal)."""

    def write(document: str) -> None:
        if before is not None:
            before()
        if pretty:
            document = json.dumps(json.loads(document), ensure_ascii=False, indent=2)
        write_document(document)

    return write


def _open_records(input_file: Path | None) -> BinaryIO:
    """The binary stream of --jsonl records: --input FILE, or stdin."""
    if input_file is not None and str(input_file) != "-":
        try:
            return input_file.open("rb")
        except FileNotFoundError:
            raise InputError(f"input file {str(input_file)!r} not found") from None
        except OSError as e:
            raise InputError(f"cannot read input file {str(input_file)!r}: {e.strerror}") from e
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no input: pipe the records on stdin or give --input FILE")
    return sys.stdin.buffer


def _extract_jsonl(
    runner: RecordRunner,
    source: BinaryIO,
    options: BatchOptions,
    errors_file: Path | None,
    checkpoint_file: Path | None,
    job_parts: dict[str, Any],
    quiet: bool,
) -> None:
    from qwenjson.batch import (
        Checkpoint,
        ErrorLog,
        count_lines,
        job_fingerprint,
        read_lines,
        run_batch,
    )
    from qwenjson.stream import stream_fd

    errors = ErrorLog(errors_file, show=console.error)
    checkpoint = None
    if checkpoint_file is not None:
        checkpoint = Checkpoint(checkpoint_file, job_fingerprint(job_parts))
    fd = stream_fd(source)
    show_bar = not quiet and console.stderr.is_terminal
    total = count_lines(fd) if show_bar and fd is not None else None
    try:
        with console.batch_progress(total, enabled=not quiet) as bar:
            run_batch(
                read_lines(source),
                runner,
                options,
                errors=errors,
                checkpoint=checkpoint,
                on_text=bar.on_text if bar is not None else None,
                on_record=bar.on_record if bar is not None else None,
                notice=None if quiet else console.warning,
                input_fd=fd,
                on_piece=bar.on_piece if bar is not None else None,
            )
    finally:
        errors.close()
        if checkpoint is not None:
            checkpoint.close()


def _extract_document(
    runner: RecordRunner,
    text: str,
    pretty: bool,
    checkpoint_file: Path,
    job_parts: dict[str, Any],
    quiet: bool,
    input_file: Path | None,
) -> None:
    """One document with ``--checkpoint``: a one-record batch whose pieces are logged."""
    from qwenjson.batch import BatchOptions, Checkpoint, job_fingerprint, run_batch
    from qwenjson.stream import stream_fd

    checkpoint = Checkpoint(checkpoint_file, job_fingerprint(job_parts))
    # The input's file, so that it is refused as the checkpoint or stdout (a rerun would read
    # what the first run wrote).
    source = _open_records(input_file)
    try:
        with console.piece_progress(enabled=not quiet) as bar:
            run_batch(
                [text.encode("utf-8")],
                runner,
                BatchOptions(document=True, pretty=pretty),
                checkpoint=checkpoint,
                on_text=bar.on_text if bar is not None else None,
                on_piece=bar.on_piece if bar is not None else None,
                notice=None if quiet else console.warning,
                input_fd=stream_fd(source),
            )
    finally:
        checkpoint.close()
        if source is not sys.stdin.buffer:
            source.close()


@app.command()
def grammar(schema: SchemaOpt) -> None:
    """Print the GBNF grammar compiled from --schema (for llama.cpp's --grammar-file).

    Example: qwenjson grammar --schema person.json > person.gbnf
    """
    from qwenjson.pipeline import prepare_schema
    from qwenjson.validate import load_schema

    prepared = prepare_schema(load_schema(schema))
    write_document(prepared.compiled.grammar.rstrip("\n"))


@schema_app.command("check")
def schema_check(
    file: Annotated[str, typer.Argument(help="Schema file, inline JSON, or concise syntax.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List each keyword with its JSON pointer: enforced, validated-after or unsupported.

    Exits 3 when any keyword is unsupported.

    Example: qwenjson schema check person.json
    """
    from qwenjson.errors import SchemaError
    from qwenjson.schema import check_schema
    from qwenjson.validate import load_schema

    uses = check_schema(load_schema(file))
    lines = []
    for use in uses:
        if as_json:
            row: dict[str, Any] = {
                "pointer": use.pointer,
                "keyword": use.keyword,
                "status": use.status,
            }
            if use.note:
                row["note"] = use.note
            lines.append(json.dumps(row, ensure_ascii=False))
        else:
            note = f"  ({use.note})" if use.note else ""
            lines.append(f"{use.status:<16} {use.pointer or '/'} {use.keyword}{note}")
    if lines:
        write_document("\n".join(lines))
    unsupported = [u for u in uses if u.status == "unsupported"]
    if unsupported:
        first = unsupported[0]
        raise SchemaError(
            f"{len(unsupported)} unsupported keyword(s), first {first.keyword!r}",
            first.pointer,
        )


@schema_app.command("dsl")
def schema_dsl(
    text: Annotated[str, typer.Argument(help="Concise schema, e.g. 'name, age int 0..150'.")],
) -> None:
    """Print the JSON Schema that a concise schema means.

    Example: qwenjson schema dsl 'name, age int 0..150, tags [str], mood? happy|sad'
    """
    from qwenjson.dsl import parse_dsl

    write_document(json.dumps(parse_dsl(text), ensure_ascii=False, indent=2))


@app.command()
def pull(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Registry name (see `qwenjson models`) or hf:OWNER/REPO/FILE.gguf[@REVISION]. "
            "[default: qwen2.5-0.5b-instruct]",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download a model into the Hugging Face cache, check its sha256, print its path.

    An interrupted download resumes where it stopped; two pulls at once (two cron jobs) share
    one download. A model pinned to a commit is never fetched twice; one that follows a branch
    (hf:… without @REVISION) is checked for a newer file. Honours HF_HOME, HF_HUB_CACHE,
    HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE (offline, it only checks the cached copy).

    Example: qwenjson pull qwen2.5-0.5b-instruct-q4_0
    """
    from qwenjson.hub import format_size
    from qwenjson.hub import pull as hub_pull
    from qwenjson.registry import DEFAULT_MODEL, resolve_model

    ref = resolve_model(name or DEFAULT_MODEL)
    if ref.spec is None:
        raise UsageError(
            f"{name} is a local file: pull takes a registry name or hf:OWNER/REPO/FILE.gguf"
        )
    spec = ref.spec
    with console.download_progress(f"Downloading {spec.name}", enabled=not quiet) as progress:
        # HF_HUB_OFFLINE is honoured by hub_pull; refresh: a branch revision may have moved.
        path = hub_pull(spec, progress=progress, refresh=True)
    if not quiet and console.stderr.is_terminal:
        size = format_size(path.stat().st_size)
        console.info(f"{spec.name}: {size}, sha256 verified")
    write_document(str(path))


def _downloaded_cell(row: dict[str, Any]) -> str:
    if row["downloaded"]:
        return "yes"
    part, size = row["partial_bytes"], row["size"]
    if part is not None and size:
        return f"partly ({min(99, part * 100 // size)}%)"
    return "no"


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array, for scripts.")] = False,
) -> None:
    """List the registry's models: quantization, size, whether downloaded, and where.

    Add your own in a TOML file named by QWENJSON_MODELS_FILE (same format as models.toml).

    Example: qwenjson models --json
    """
    from qwenjson.hub import format_size, hub_cache_dir, local_path, partial_bytes
    from qwenjson.registry import DEFAULT_MODEL, load_registry

    rows: list[dict[str, Any]] = []
    for name, spec in sorted(load_registry().items()):
        path = local_path(spec)
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_MODEL,
                "quant": spec.quant or None,
                "size": spec.size or (path.stat().st_size if path is not None else None),
                "downloaded": path is not None,
                # An interrupted pull's bytes so far (the next pull resumes from there).
                "partial_bytes": partial_bytes(spec) if path is None else None,
                "path": str(path) if path is not None else None,
                "repo": spec.repo,
                "file": spec.file,
                "revision": spec.revision,
                "sha256": spec.sha256,
                "context": spec.context,
                "license": spec.license or None,
                "description": spec.description,
            }
        )
    if as_json:
        write_document(json.dumps(rows, ensure_ascii=False))
        return
    table = [("NAME", "QUANT", "SIZE", "DOWNLOADED", "DESCRIPTION")]
    for row in rows:
        table.append(
            (
                _printable(row["name"]) + (" *" if row["default"] else ""),
                _printable(row["quant"] or "-"),
                format_size(row["size"]) if row["size"] else "-",
                _downloaded_cell(row),
                _printable(row["description"]),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines: list[str] = []
    rows_or_header: list[dict[str, Any] | None] = [None, *rows]
    for line, entry in zip(table, rows_or_header, strict=True):
        cells = [c.ljust(w) for c, w in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[4]]))
        if entry is not None and entry["path"]:
            lines.append(f"    {_printable(entry['path'])}")  # on its own line: paths are long
    lines.append(f"(* the default; downloads go to {hub_cache_dir()})")
    write_document("\n".join(line.rstrip() for line in lines))


# Characters that would steer the terminal rather than show: escape codes, carriage returns and
# newlines (a forged table line), bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), for a table on a terminal
    (the values come from a user's TOML file)."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def _warn_about_build(quiet: bool) -> None:
    from qwenjson.buildcheck import amx_warning

    message = amx_warning()
    if message and not quiet:
        console.warning(message)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code; errors are printed, never raised."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if sys.stdout is None:  # started with stdout closed (>&-): say so before any work
            raise OutputError("cannot write to stdout: it is closed", stdout=True)
        # Not app(...): typer's own main loop turns Ctrl-C into a *returned* 130 (so the
        # process would exit 0) and a closed stdout into exit 1. Invoked directly, the
        # command's KeyboardInterrupt and BrokenPipeError reach the handlers below.
        command = typer.main.get_command(app)
        # Shell completion calls back with _QWENJSON_COMPLETE set (and exits): click's main()
        # would do this, but run() invokes the command itself.
        command._main_shell_completion({}, "qwenjson")
        with deadline.alarms(), command.make_context("qwenjson", args) as ctx:
            command.invoke(ctx)
    except QwenJsonError as e:
        console.error(str(e))
        if isinstance(e, OutputError) and e.stdout:
            _stdout_closed()  # Python's exit-time flush must not fail on it again
        return e.exit_code
    except typer.Exit as e:
        return int(e.exit_code)
    except _CLICK_EXCEPTION as e:
        e.show(file=sys.stderr)
        return EXIT_USAGE if e.exit_code == 2 else int(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.error("interrupted")
        return EXIT_SIGINT
    except _Terminated:
        console.error("terminated")
        return EXIT_SIGTERM
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as e:
        if os.environ.get("QWENJSON_DEBUG") or "PYTEST_CURRENT_TEST" in os.environ:
            raise
        console.error(f"internal error: {type(e).__name__}: {e} (set QWENJSON_DEBUG=1 for details)")
        return EXIT_INTERNAL
    return 0


# The click this typer runs on: typer >= 0.26 vendors its own copy (typer._click), whose
# exceptions are not the installed click's; typer.Exit and typer.Abort are public either way.
_CLICK_EXCEPTION: Any = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def _stdout_closed() -> int:
    # The reader went away (`| head -1`) or the disk is full: keep Python's exit-time flush of
    # stdout from raising again.
    if sys.stdout is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_SIGPIPE


def _hold_closed_std_fds() -> None:
    """Put /dev/null on whichever of fds 0-2 the shell closed (``2>&-``): otherwise the next file
    opened (the checkpoint, the model) gets that number and llama.cpp's log lands in it. A closed
    stdout stays an error (exit 9), a closed stdin means no input, and stderr says nothing."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


def main() -> NoReturn:
    """Console-script entry point."""
    _hold_closed_std_fds()
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.exit(run())
