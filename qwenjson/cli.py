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
from collections.abc import Sequence
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer

from qwenjson import callbacks, console, deadline
from qwenjson.cli_extract import SchemaOpt
from qwenjson.cli_extract import extract as _extract
from qwenjson.errors import (
    EXIT_INTERNAL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    ModelError,
    OutputError,
    QwenJsonError,
    SchemaError,
    UsageError,
)
from qwenjson.stream import output_errors, signals_held, write_whole

EXIT_CODES_HELP = """\
Exit codes: 0 ok; 1 internal error (a bug: please report it); 2 usage; 3 schema (missing, not
UTF-8, not JSON, not a valid JSON Schema, or a keyword qwenjson can't enforce); 4 model (unknown,
missing, not a GGUF, download or checksum failed); 5 no valid output (the model's answer failed
validation after all retries, or ran out of --max-tokens, or --require-evidence found a value
with no source); 6 input (empty, not UTF-8, an --input file missing or unreadable, longer than
the context with --no-chunks, larger than 32 MiB); 7 timeout; 8 some records of a --jsonl batch
failed (each reported with its line, unless --on-error skip); 9 cannot write stdout, --errors or
--checkpoint (disk full, closed); 10 --ray: Ray not installed, the cluster unreachable or out of
workers (a record whose worker died 3 times fails with 10 too); 130 interrupted (SIGINT); 141
stdout closed early (SIGPIPE, e.g. | head); 143 terminated (SIGTERM).
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
app.command("extract")(_extract)  # its options and the plan it builds: qwenjson.cli_extract

EXIT_SIGPIPE = 141


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that cleanup runs and the exit code is 143."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if not callbacks.deferred(signum, frame):
        raise _Terminated()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """Python's own Ctrl-C (KeyboardInterrupt), put off while C calls back into Python."""
    if not callbacks.deferred(signum, frame):
        raise KeyboardInterrupt


def write_document(text: str, *, paths: bool = False) -> None:
    """Write one JSON document and a newline to stdout, whole, and flush it. ``paths``: the
    text holds file paths as the OS gave them (``str(path)``), written back as their bytes
    (a cache under a directory whose name isn't UTF-8)."""
    data = (text + "\n").encode("utf-8", "surrogateescape" if paths else "strict")
    with signals_held(), output_errors("stdout"):  # stdout never ends in a partial line
        sys.stdout.flush()
        write_whole(sys.stdout.buffer, data)


@app.command()
def grammar(schema: SchemaOpt) -> None:
    """Print the GBNF grammar compiled from --schema (for llama.cpp's --grammar-file).

    Example: qwenjson grammar --schema person.json > person.gbnf
    """
    from qwenjson.plan import prepare_job
    from qwenjson.validate import read_schema

    job = prepare_job(read_schema(schema))  # one metaschema check, one compile
    write_document(job.prepared.compiled.grammar.rstrip("\n"))


@schema_app.command("check")
def schema_check(
    file: Annotated[str, typer.Argument(help="Schema file, inline JSON, or concise syntax.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List each keyword with its JSON pointer: enforced, validated-after, annotation or
    unsupported.

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
            # A property name may hold a line break or an escape code: one row per keyword.
            where = _printable(use.pointer or "/")
            lines.append(f"{use.status:<16} {where} {_printable(use.keyword)}{_printable(note)}")
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
    from qwenjson.utf8 import not_utf8
    from qwenjson.validate import check_metaschema

    if bad := not_utf8(text):  # as `schema check` and -s say it, rather than crash writing it
        raise SchemaError(f"the concise schema is not UTF-8 text ({bad})")
    schema = parse_dsl(text.removeprefix("\ufeff"))  # a BOM: as -s reads the text
    check_metaschema(schema)  # what -s would refuse is not printed as a schema either
    write_document(json.dumps(schema, ensure_ascii=False, indent=2))


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
    (hf:… without @REVISION) is checked for a newer file (if the hub can't be reached, the
    verified cached copy is used, with a warning). Honours HF_HOME, HF_HUB_CACHE,
    HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE (offline, it only checks the cached copy).

    Example: qwenjson pull qwen2.5-0.5b-instruct-q4_0
    """
    from qwenjson.hub import check_gguf, format_size
    from qwenjson.hub import pull as hub_pull
    from qwenjson.registry import DEFAULT_MODEL, resolve_model

    if name is not None and not name.strip():
        # `qwenjson pull "$MODEL"` with MODEL unset: not a request for the default model.
        raise ModelError("the model name is empty: give a registry name or hf:REPO/FILE")
    ref = resolve_model(name or DEFAULT_MODEL)
    if ref.spec is None:
        raise UsageError(
            f"{name} reads as a file path (a '/', '.gguf' at the end, or '.' or '~' first): "
            "pull takes a registry name or hf:OWNER/REPO/FILE.gguf"
        )
    spec = ref.spec
    with console.download_progress(f"Downloading {spec.name}", enabled=not quiet) as progress:
        # HF_HUB_OFFLINE is honoured by hub_pull; refresh: a branch revision may have moved.
        path = hub_pull(spec, progress=progress, refresh=True, notice=console.warning)
    # As extract checks it before loading: `llama-cli -m "$(qwenjson pull hf:…)"` of a file
    # that is no model would fail there, after this said exit 0.
    check_gguf(path)
    if not quiet and console.stderr.is_terminal:
        size = format_size(path.stat().st_size)
        console.info(f"{spec.name}: {size}, sha256 verified")
    write_document(str(path), paths=True)


def _downloaded_cell(row: dict[str, Any]) -> str:
    if row["downloaded"]:
        return "yes"
    part, size = row["partial_bytes"], row["size"]
    if part is not None and size:
        return f"partly ({min(99, part * 100 // size)}%)"
    if part:
        from qwenjson.hub import format_size

        return f"partly ({format_size(part)})"  # a model of your own whose size isn't given
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
    unusable: list[str] = []
    registry = load_registry(unusable)
    for message in unusable:
        console.warning(message)
    for name, spec in sorted(registry.items()):
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
        # A path's undecodable bytes (lone surrogates, as the OS gave them) escaped: JSON
        # must be UTF-8; os.fsencode(json.loads(...)[i]["path"]) gives the bytes back.
        text = json.dumps(rows, ensure_ascii=False)
        write_document(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
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
    write_document("\n".join(line.rstrip() for line in lines), paths=True)


_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters that would steer the terminal rather than show: escape codes, carriage returns and
# newlines (a forged table line), bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), for a table on a terminal
    (the values come from a user's TOML file)."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


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
        # `Error: …` first, as every other error says it (click's own show() put the usage
        # line and the hint before it), then where help is.
        console.error(e.format_message())
        where: Any = getattr(e, "ctx", None)
        if where is not None and where.help_option_names:
            console.info(f"Try '{where.command_path} {where.help_option_names[0]}' for help.")
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
    # Only where Python's own handler is: an ignored SIGINT (a background job) stays ignored.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    sys.exit(run())
