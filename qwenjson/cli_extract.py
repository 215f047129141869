"""``qwenjson extract``: its options, and turning them into a ``Plan`` and a ``Runner``.

The command checks the options that go together, reads and prepares the schema (one check, one
compile) before anything slow, loads the model, builds the plan and hands it to a driver
(``qwenjson.cli_drivers``). ``qwenjson.cli`` registers it and maps errors to exit codes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from qwenjson import console, deadline
from qwenjson.cpu import MAX_THREADS
from qwenjson.errors import ModelError, QwenJsonError, UsageError
from qwenjson.fields import ABSTAIN_BELOW

__all__ = ["MAX_THREADS", "ModelOpt", "SchemaOpt", "extract"]


def nonempty_path(value: str) -> Path:
    """A path option's value; the empty string is refused (exit 2): an unset variable in a cron
    line (``--checkpoint "$CKPT"``) would otherwise name the current directory."""
    if not value:
        raise typer.BadParameter("empty (an unset variable?): give a path")
    return Path(value)


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


def extract(
    context: typer.Context,
    schema: SchemaOpt,
    model: ModelOpt = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            parser=nonempty_path,
            help="Read the text from FILE instead of stdin.",
        ),
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
    # min and max: pipeline.MIN_CTX and MAX_CTX (not imported here: --help stays quick).
    ctx: Annotated[
        int, typer.Option(min=256, max=2**32 - 1, help="Context size in tokens.")
    ] = 4096,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            parser=nonempty_path,
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
            help='Keep every value as the model wrote it: members it left as "" (by default '
            "those the schema lets go are dropped: a small model writes them for fields the "
            "text doesn't give) and values with no source or unsure (marked by --evidence).",
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
            "doesn't contain. Values abstention takes out (an optional or nullable object with "
            "such a member, left out or null) don't count; with --no-grounding only the "
            "fields marked x-grounded: true need a source.",
        ),
    ] = False,
    abstain_below: Annotated[
        float,
        typer.Option(
            "--abstain-below",
            min=0.0,
            max=1.0,
            metavar="P",
            help="Leave out an optional string copied from the text (a required, nullable one "
            "becomes null) when the model's confidence in it is below P, as if the text had "
            "none. 0 keeps them all, as --keep-empty does (which it can't be given with). The "
            "strings of a list of strings, dates and numbers are kept.",
        ),
    ] = ABSTAIN_BELOW,
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
            "on, 'skip' goes on without a message per record (the count is reported at the end), "
            "'stop' ends the batch with that record's exit code. A batch in which any record "
            "failed exits 8.",
            show_default=False,
        ),
    ] = None,
    errors_file: Annotated[
        Path | None,
        typer.Option(
            "--errors",
            metavar="FILE",
            parser=nonempty_path,
            help="With --on-error record: append one JSON object per failed record "
            '({"line": N, "error": "...", "exit_code": K}) to FILE instead of writing '
            "'Error: line N: ...' on stderr.",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            parser=nonempty_path,
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
            "once, in order; otherwise each field from the piece the model was surest of "
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
            help="Tokens each piece repeats from the end of the one before, under half a piece "
            "(at most --chunk-tokens, and what the context holds beside the prompt and "
            "--max-tokens: checked before any record, exit 2). [default: an eighth of a piece]",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="With --jsonl: run the records on a Ray cluster (pip install 'qwenjson[ray]'), "
            "one model per worker, output as without --ray: 'auto' is the cluster `ray start` "
            "made on this machine, 'local' a private one for this run, else the head's "
            "HOST[:PORT]. A model path must exist on every node; a registry name is downloaded "
            "(and checked) by each. An unreachable cluster or a record whose worker died 3 "
            "times is exit 10.",
            show_default=False,
        ),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="With --ray: how many workers, each with its own model and --threads "
            "threads (1 with --ray unless given). [default: each node's CPUs / --threads, "
            "within those free]",
            show_default=False,
        ),
    ] = None,
    unordered: Annotated[
        bool,
        typer.Option(
            "--unordered",
            help='With --ray: print records as they finish, each line {"line": N, "data": '
            "LINE} (LINE: what the ordered run prints); not with --checkpoint.",
        ),
    ] = False,
) -> None:
    """Extract one JSON document matching --schema from the text on stdin.

    Prints one line of compact JSON (indented with --pretty) that has passed validation;
    with --jsonl, one line per input record; with --each, one line per item.

    Example: qwenjson extract --schema person.json < note.txt

    Example: qwenjson extract --schema person.json --jsonl --field text --checkpoint ck
    < notes.jsonl >> people.jsonl

    Example: qwenjson extract --each -s 'name, role' --checkpoint report.ck
    < long_report.txt >> people.jsonl

    Example: qwenjson extract -s person.json --jsonl --field text --ray auto --threads 1
    < notes.jsonl > people.jsonl
    """
    from qwenjson import cli_drivers
    from qwenjson.kvcache import default_cache_dir
    from qwenjson.pipeline import ExtractOptions, open_model
    from qwenjson.plan import Layout, Plan, RecordOptions, model_sha256, prepare_job
    from qwenjson.runner import Limits, Runner
    from qwenjson.validate import read_schema

    started = time.monotonic()

    def given(name: str) -> bool:
        """Whether the option was given (on the command line), not left at its default."""
        # By the source's name: typer carries its own copy of click's ParameterSource.
        source = context.get_parameter_source(name)
        return source is not None and source.name != "DEFAULT"

    batch_only = {"--field": field, "--on-error": on_error, "--errors": errors_file}
    batch_only["--into"] = into if given("into") else None
    for name, value in batch_only.items():
        if value is not None and not jsonl:
            raise UsageError(f"{name} needs --jsonl")
    if given("into") and field is None:
        raise UsageError("--into needs --field (without it, a line is the text itself)")
    if given("abstain_below") and keep_empty:
        raise UsageError("--abstain-below can't be used with --keep-empty (it keeps every value)")
    for name, seconds in (("--timeout", timeout), ("--total-timeout", total_timeout)):
        if seconds == 0:
            # As the library refuses it: 0 s can only ever time out.
            raise UsageError(f"{name} must be above 0 seconds")
    for name, value in (("--field", field), ("--into", into)):
        if value == "":
            raise UsageError(f"{name} is empty (an unset variable?): give a key name")
    cli_drivers.check_ray_options(ray, ray_actors, unordered, jsonl, checkpoint)
    if errors_file is not None and on_error not in (None, "record"):
        raise UsageError("--errors needs --on-error record")
    if not chunks and (chunk_tokens is not None or chunk_overlap is not None):
        raise UsageError("--chunk-tokens and --chunk-overlap can't be used with --no-chunks")
    if truncate is not None and (chunk_tokens is not None or chunk_overlap is not None):
        raise UsageError(
            "--chunk-tokens and --chunk-overlap can't be used with --truncate (the text is cut "
            "to fit, not read in pieces)"
        )
    from qwenjson.pieces import DEFAULT_PIECE_TOKENS

    if chunk_overlap is not None and chunk_overlap >= (chunk_tokens or DEFAULT_PIECE_TOKENS) // 2:
        # Checked here once, not per record of a batch (each would fail with exit 8).
        raise UsageError(
            f"--chunk-overlap {chunk_overlap} must be less than half a piece "
            f"({chunk_tokens or DEFAULT_PIECE_TOKENS} tokens; --chunk-tokens sets it)"
        )
    if max_tokens >= ctx:
        raise UsageError(
            f"--max-tokens {max_tokens} leaves no room in a context of {ctx} tokens for the "
            "prompt and the text: lower it, or raise --ctx"
        )
    if evidence and field is not None and into in ("evidence", "confidence"):
        raise UsageError(f"--into {into} would be overwritten by --evidence's own {into!r} key")
    if no_cache and cache_dir is not None:
        raise UsageError("--cache-dir can't be used with --no-cache")
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
    schema_value = read_schema(schema)
    job = prepare_job(schema_value, each=each)  # the one metaschema check and compile
    source = cli_drivers.open_records(input_file) if jsonl else None
    text = "" if jsonl else cli_drivers.read_input(input_file)
    offline = offline or _env_flag("HF_HUB_OFFLINE")
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
        abstain_below=abstain_below,
    )
    record = RecordOptions(
        each=each,
        truncate=truncate,
        chunks=chunks,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
    )
    layout = Layout(jsonl=jsonl, field=field, into=into, pretty=pretty)
    settings = cli_drivers.Settings(
        input_file=input_file,
        on_error=on_error or "record",
        errors_file=errors_file,
        checkpoint=checkpoint,
        quiet=quiet,
    )
    if ray is not None and source is not None:
        from qwenjson.actors import worker_spec

        # The plan without the model: each worker fills in its model file's sha256, and the
        # checkpoint is named by that plan's fingerprint, the one a local run would have.
        spec = worker_spec(
            Plan(schema_value, "", ctx, options, record, layout, job=job),
            model=model,
            threads=threads or 1,  # one worker per core by default: see --ray-actors
            prompt_threads=prompt_threads or threads or 1,
            offline=offline,
            cache=not no_cache,
            cache_dir=str(cache_dir) if cache_dir is not None else None,  # else each node's
            timeout=timeout,
        )
        run = cli_drivers.RayRun(ray, ray_actors, not unordered, total_timeout, started)
        cli_drivers.drive_ray(run, spec, settings, source)
        return
    _warn_about_build(quiet)
    generator = None
    try:  # (closed here even when Ctrl-C comes as the progress bar closes)
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
        plan = Plan(schema_value, model_sha256(generator), ctx, options, record, layout, job=job)
        runner = Runner(plan, generator, Limits(timeout, total_timeout, started))
        cli_drivers.drive(runner, settings, text, source)
    finally:
        if generator is not None:
            generator.close()


def _check_utf8(name: str, value: str | None) -> None:
    """Refuse an argument with bytes that aren't UTF-8 (Python keeps them as lone surrogates,
    which can reach neither the model nor stdout)."""
    from qwenjson.utf8 import not_utf8

    if value is not None and (bad := not_utf8(value)):
        raise UsageError(f"{name} is not UTF-8 text ({bad})")


def _total_timeout_expired(seconds: float | None) -> QwenJsonError:
    from qwenjson.runner import TotalTimeoutExpired

    return TotalTimeoutExpired(f"--total-timeout of {seconds:g}s ran out")


def _warn_about_build(quiet: bool) -> None:
    from qwenjson.buildcheck import amx_warning

    message = amx_warning()
    if message and not quiet:
        console.warning(message)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
