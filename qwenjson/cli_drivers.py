"""The ``extract`` command's three ways to run a ``Runner``: one document, one document with
``--checkpoint`` (a one-record batch whose pieces are logged), and ``--jsonl`` records. The
terminal's part (progress, preview, warnings) is wired here; what is printed is the runner's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from qwenjson import console
from qwenjson.errors import InputError, UsageError
from qwenjson.records import OnError
from qwenjson.runner import Runner

if TYPE_CHECKING:
    from qwenjson.actors import WorkerSpec
    from qwenjson.checkpoint import Checkpoint
    from qwenjson.executor import RecordExecutor
    from qwenjson.plan import Plan

__all__ = [
    "RayRun",
    "Settings",
    "check_ray_options",
    "drive",
    "drive_ray",
    "open_records",
    "read_input",
]


@dataclass(frozen=True)
class Settings:
    """What the command line says beside the ``Plan``: where input, failures and the
    checkpoint go, and whether to talk on stderr."""

    input_file: Path | None = None
    on_error: OnError = "record"
    errors_file: Path | None = None
    checkpoint: Path | None = None
    quiet: bool = False


def drive(runner: Runner, settings: Settings, text: str, source: BinaryIO | None) -> None:
    """Run the plan on ``text`` (one document) or on the records of ``source`` (``--jsonl``)."""
    if source is not None:
        _extract_jsonl(runner, runner.plan, lambda: runner.plan.fingerprint, source, settings)
    elif settings.checkpoint is not None:
        _extract_document(runner, text, settings)
    else:
        from qwenjson.pieces import PieceHooks

        notice = None if settings.quiet else console.warning
        with console.piece_progress(enabled=not settings.quiet) as bar:
            on_text = bar.on_text if bar is not None else None
            clear = bar.clear if bar is not None else None
            writer = _document_writer(runner.plan.layout.pretty, before=clear)
            hooks = PieceHooks(progress=bar.on_piece if bar is not None else None)
            runner.run(text, writer, on_text=on_text, notice=notice, pieces=hooks)


def read_input(input_file: Path | None) -> str:
    """The whole text to extract from: ``--input FILE``, or stdin (not a terminal)."""
    from qwenjson.pipeline import decode_input
    from qwenjson.records import read_bounded

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


def open_records(input_file: Path | None) -> BinaryIO:
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


def _document_writer(
    pretty: bool, before: Callable[[], None] | None = None
) -> Callable[[str], None]:
    """Writes each document to stdout; ``before`` first (clearing the token preview, which
    would otherwise run into the document on a terminal)."""
    from qwenjson import cli  # looked up per call: cli.write_document is the one stdout writer

    def write(document: str) -> None:
        if before is not None:
            before()
        if pretty:
            document = json.dumps(json.loads(document), ensure_ascii=False, indent=2)
        cli.write_document(document)

    return write


def _extract_jsonl(
    runner: Runner | RecordExecutor,
    plan: Plan,
    fingerprint: Callable[[], str],
    source: BinaryIO,
    settings: Settings,
    numbered: bool = False,
    held: Checkpoint | None = None,
) -> None:
    """The records of ``source`` through ``runner`` (here, or an executor elsewhere); the
    checkpoint named by ``fingerprint()``, asked for only when there is one (``held``: its
    file, already locked)."""
    from qwenjson.batch import ErrorLog, SomeRecordsFailed, run_batch
    from qwenjson.checkpoint import Checkpoint
    from qwenjson.records import BatchOptions, count_lines, is_json_object, read_lines
    from qwenjson.stream import stream_fd

    quiet = settings.quiet
    options = BatchOptions(
        field=plan.layout.field,
        into=plan.layout.into,
        on_error=settings.on_error,
        evidence=plan.options.evidence,
        numbered=numbered,
    )
    # (Asked before anything is opened: on a cluster it waits for a worker's model.)
    job = fingerprint() if settings.checkpoint is not None else None
    errors = ErrorLog(settings.errors_file, show=console.error)
    checkpoint = None
    if settings.checkpoint is not None and job is not None:
        checkpoint = held or Checkpoint(settings.checkpoint, job)
        checkpoint.job = job
    fd = stream_fd(source)
    show_bar = not quiet and console.stderr.is_terminal
    total = count_lines(fd) if show_bar and fd is not None else None
    unended: list[int] = []  # a last line with no line end, left for the next run
    # Any input (`cat growing.jsonl |` too): with no line end, the line may be half-written.
    hold = checkpoint is not None
    complete = is_json_object if options.field is not None else None
    try:
        with console.batch_progress(total, enabled=not quiet) as bar:
            try:
                report = run_batch(
                    read_lines(source, unended.append if hold else None, complete),
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
            except SomeRecordsFailed as e:
                if unended:  # the batch's own failures first
                    raise SomeRecordsFailed(f"{e}; {_unended(unended[0])}", e.report) from None
                raise
        if unended:
            raise SomeRecordsFailed(_unended(unended[0]), report)
    finally:
        errors.close()
        if checkpoint is not None:
            checkpoint.close()


def _unended(line: int) -> str:
    # Exit 8: the line is not logged, so the next run reads it once whatever writes the file
    # has ended it (read half-written and logged, it stopped every later run).
    return (
        f"line {line} has no line end yet: not read, nor logged (the next run reads it once it "
        "ends with a line break: a file's last line needs one, unless it is a whole JSON "
        "object read with --field)"
    )


def _extract_document(runner: Runner, text: str, settings: Settings) -> None:
    """One document with ``--checkpoint``: a one-record batch whose pieces are logged."""
    from qwenjson.batch import run_batch
    from qwenjson.checkpoint import Checkpoint
    from qwenjson.records import BatchOptions
    from qwenjson.stream import stream_fd

    assert settings.checkpoint is not None
    checkpoint = Checkpoint(settings.checkpoint, runner.plan.fingerprint)
    # The input's file, so that it is refused as the checkpoint or stdout (a rerun would read
    # what the first run wrote).
    source = open_records(settings.input_file)
    try:
        with console.piece_progress(enabled=not settings.quiet) as bar:
            run_batch(
                [text.encode("utf-8")],
                runner,
                BatchOptions(document=True, pretty=runner.plan.layout.pretty),
                checkpoint=checkpoint,
                on_text=bar.on_text if bar is not None else None,
                on_piece=bar.on_piece if bar is not None else None,
                notice=None if settings.quiet else console.warning,
                input_fd=stream_fd(source),
            )
    finally:
        checkpoint.close()
        if source is not sys.stdin.buffer:
            source.close()


# -- --ray ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayRun:
    """``--ray``: where, how many workers, in order or not, and the run's time budget."""

    address: str
    actors: int | None
    ordered: bool
    total_timeout: float | None
    started: float


def drive_ray(run: RayRun, spec: WorkerSpec, settings: Settings, source: BinaryIO) -> None:
    """The batch of ``source`` on the cluster; the output, errors and checkpoint written here."""
    from qwenjson.actors import RayExecutor
    from qwenjson.checkpoint import Checkpoint
    from qwenjson.cluster import connect

    # Locked before the cluster is asked for workers (a run still holding it refuses this one
    # at once); its job is known once a worker has the model. A file not there yet is made
    # later, as for a local run: a run that can't connect leaves none behind.
    held = None
    if settings.checkpoint is not None:
        held = Checkpoint(settings.checkpoint, "")
        if not held.lock(create=False):
            held = None
    try:
        with connect(run.address, quiet=settings.quiet) as cluster:
            executor = RayExecutor(
                cluster,
                spec,
                actors=run.actors,
                ordered=run.ordered,
                total_timeout=run.total_timeout,
                started=run.started,
                notice=None if settings.quiet else console.warning,
            )
            try:
                _extract_jsonl(
                    executor,
                    spec.plan,
                    executor.fingerprint,
                    source,
                    settings,
                    not run.ordered,
                    held,
                )
            finally:
                executor.close()
    finally:
        if held is not None:
            held.close()


def check_ray_options(
    ray: str | None, actors: int | None, unordered: bool, jsonl: bool, checkpoint: Path | None
) -> None:
    """Refuse ``--ray-actors``/``--unordered`` without ``--ray``, ``--ray`` without ``--jsonl``
    or empty, and ``--unordered`` with ``--checkpoint``."""
    if ray is None:
        for name, given in (("--ray-actors", actors is not None), ("--unordered", unordered)):
            if given:
                raise UsageError(f"{name} needs --ray")
        return
    if not jsonl:
        raise UsageError("--ray needs --jsonl (it runs a batch's records on the cluster)")
    if not ray.strip():
        raise UsageError("--ray is empty: give auto, local or the head node's HOST[:PORT]")
    if unordered and checkpoint is not None:
        raise UsageError("--unordered can't be used with --checkpoint (it logs a finished prefix)")
