"""The command line: a thin Typer layer, and the only place that knows exit codes and the terminal.

Every failure is a ``QwenJsonError`` raised by the core; ``run`` prints it once as
``Error: …`` on stderr and returns its exit code. Stdout carries JSON only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer

from qwenjson import console
from qwenjson.errors import (
    EXIT_INTERNAL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    InputError,
    QwenJsonError,
    UsageError,
)

EXIT_CODES_HELP = """\
Exit codes: 0 ok; 1 internal error (a bug: please report it); 2 usage; 3 schema (missing, not
JSON, not a valid JSON Schema, or uses a keyword qwenjson can't enforce); 4 model (unknown,
missing, not a GGUF, download or checksum failed); 5 no valid output (the model's answer failed
validation after all retries, or ran out of --max-tokens); 6 input (empty, not UTF-8, longer than
the context); 7 timeout; 130 interrupted (SIGINT); 141 stdout closed early (SIGPIPE, e.g. | head);
143 terminated (SIGTERM).
"""

app = typer.Typer(
    name="qwenjson",
    help="Turn unstructured text into JSON that matches a JSON Schema, "
    "with a small local model.\n\n"
    "Example: qwenjson extract --schema person.json < note.txt\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
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


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that cleanup runs and the exit code is 143."""


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise _Terminated()


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a line goes out, so stdout never ends in a partial line."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_document(text: str) -> None:
    """Write one JSON document and a newline to stdout, whole, and flush it."""
    data = (text + "\n").encode("utf-8")
    with _signals_deferred():
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _read_input(input_file: Path | None) -> str:
    from qwenjson.pipeline import decode_input

    if input_file is not None and str(input_file) != "-":
        try:
            data = input_file.read_bytes()
        except FileNotFoundError:
            raise InputError(f"input file {str(input_file)!r} not found") from None
        except OSError as e:
            raise InputError(f"cannot read input file {str(input_file)!r}: {e.strerror}") from e
        return decode_input(data, origin=str(input_file))
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no input: pipe the text on stdin or give --input FILE")
    return decode_input(sys.stdin.buffer.read())


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
    seed: Annotated[int, typer.Option(help="Random seed (used when --temperature > 0).")] = 0,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads. [default: all cores, at most 4]")
    ] = None,
    ctx: Annotated[int, typer.Option(min=256, help="Context size in tokens.")] = 4096,
    retries: Annotated[
        int,
        typer.Option(min=0, help="Extra attempts when a document fails validation."),
    ] = 2,
    pretty: Annotated[bool, typer.Option(help="Indent the JSON output.")] = False,
    offline: Annotated[
        bool,
        typer.Option(
            help="Never download; fail if the model isn't cached (also HF_HUB_OFFLINE=1)."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress or previews on stderr.")
    ] = False,
) -> None:
    """Extract one JSON document matching --schema from the text on stdin.

    Prints one line of compact JSON (indented with --pretty) that has passed validation.

    Example: qwenjson extract --schema person.json < note.txt
    """
    from qwenjson.pipeline import ExtractOptions, Extractor, open_model, prepare_schema
    from qwenjson.validate import load_schema

    prepared = prepare_schema(load_schema(schema))
    text = _read_input(input_file)
    offline = offline or _env_flag("HF_HUB_OFFLINE")
    with console.download_progress("Downloading model", enabled=not quiet) as progress:
        generator = open_model(
            model, offline=offline, threads=threads, n_ctx=ctx, progress=progress
        )
    try:
        options = ExtractOptions(
            instruction=instruction,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            retries=retries,
        )
        extractor = Extractor(prepared, generator, options)
        with console.token_preview(enabled=not quiet) as on_text:
            result = extractor.run(text, on_text=on_text)
    finally:
        generator.close()
    out = json.dumps(result.data, ensure_ascii=False, indent=2) if pretty else result.json
    write_document(out)


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


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code; errors are printed, never raised."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="qwenjson", standalone_mode=False)
    except QwenJsonError as e:
        console.error(str(e))
        return e.exit_code
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show(file=sys.stderr)
        return EXIT_USAGE if e.exit_code == 2 else int(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
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


def _stdout_closed() -> int:
    # The reader went away (`| head -1`): say nothing, and keep Python's exit-time flush of
    # stdout from raising again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_SIGPIPE


def main() -> NoReturn:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.exit(run())
