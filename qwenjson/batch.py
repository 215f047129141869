"""JSONL batches: records in input order, each written or failed on its own, failures logged,
and a checkpoint that remembers how far the batch got (``qwenjson.checkpoint``).

One model and one ``Runner`` serve every record (the engine keeps the KV state of the prompt
prefix the records share)::

    runner = Runner(plan_for(schema, generator), generator)
    report = run_batch(lines, runner, BatchOptions(field="text"), output=LineOutput())

Library code: no terminal here; the CLI passes callbacks for errors, notices and progress.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qwenjson.checkpoint import Checkpoint, Resume, reconcile
from qwenjson.chunking import Piece
from qwenjson.errors import EXIT_SOME_RECORDS_FAILED, QwenJsonError, UsageError
from qwenjson.executor import LocalExecutor, RecordExecutor, RecordSink, RecordTask
from qwenjson.merging import Found
from qwenjson.records import BatchOptions, RecordError, parse_record
from qwenjson.runner import Notice, Runner, TextCallback
from qwenjson.stream import (
    FileMark,
    LineOutput,
    file_mark,
    output_errors,
    signals_held,
    write_all,
)

__all__ = [
    "BatchReport",
    "ErrorLog",
    "RecordExecutor",
    "RecordFailed",
    "RecordSink",
    "RecordTask",
    "SomeRecordsFailed",
    "run_batch",
]


class SomeRecordsFailed(QwenJsonError):
    """A batch finished, but at least one record failed (each was reported on its own)."""

    exit_code = EXIT_SOME_RECORDS_FAILED

    def __init__(self, message: str, report: BatchReport) -> None:
        super().__init__(message)
        self.report = report


class RecordFailed(QwenJsonError):
    """One record's error, with its line number, keeping that error's exit code."""

    def __init__(self, line: int, error: QwenJsonError) -> None:
        super().__init__(f"line {line}: {error}")
        self.exit_code = error.exit_code
        self.line = line


class ErrorLog:
    """Where ``--on-error record`` writes failed records: a JSONL file, or a callback (stderr)."""

    def __init__(self, path: Path | None = None, show: Callable[[str], None] | None = None):
        self.path = path
        self.show = show
        self.fd: int | None = None
        if path is not None:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                raise UsageError(f"can't open --errors file {str(path)!r}: {e.strerror}") from e

    def write(self, error: RecordError) -> None:
        """Record one failed record (the caller holds signals); OutputError if that fails."""
        if self.fd is not None:
            with output_errors(f"the --errors file {str(self.path)!r}"):
                write_all(self.fd, (error.to_json() + "\n").encode("utf-8"))
        elif self.show is not None:
            self.show(f"line {error.line}: {error.error}")

    def mark(self) -> FileMark | None:
        """The errors file and its size now (None when errors go to a callback)."""
        return file_mark(self.fd)

    def sync(self) -> None:
        """Make what was written durable before the checkpoint says so."""
        if self.fd is not None:
            _sync(self.fd)

    def close(self) -> None:
        """Close the errors file."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _sync(fd: int) -> None:
    """fdatasync, for files; devices and pipes (``--errors /dev/null``) have nothing to sync."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return
    with output_errors("the --errors file"):
        os.fdatasync(fd)


def _identity(where: int | Path | None) -> tuple[int, int] | None:
    """Device and inode of an open fd or a path (None: absent, or a terminal, where interleaved
    lines are what stderr does anyway)."""
    if where is None:
        return None
    try:
        st = os.fstat(where) if isinstance(where, int) else os.stat(where)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


# -- the batch -------------------------------------------------------------------------------------


@dataclass
class BatchReport:
    """What a batch did: records in the input, done before (checkpoint), succeeded, failed."""

    records: int = 0
    resumed: int = 0
    succeeded: int = 0
    failed: int = 0  # including failures logged in the checkpoint by earlier runs
    errors: list[RecordError] = field(default_factory=list)


def run_batch(
    lines: Iterable[bytes],
    runner: Runner | RecordExecutor,
    options: BatchOptions | None = None,
    *,
    output: LineOutput | None = None,
    errors: ErrorLog | None = None,
    checkpoint: Checkpoint | None = None,
    on_text: TextCallback | None = None,
    on_record: Callable[[int, bool | None], None] | None = None,
    notice: Notice | None = None,
    input_fd: int | None = None,
    on_piece: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Extract every record of ``lines`` in order, writing one output line per record.

    ``runner`` runs the records here, one after another; a ``RecordExecutor`` (such as
    ``qwenjson.actors.RayExecutor``) may run them elsewhere, several at once: the order of the
    output, the checkpoint and the error reports stay this function's.

    Failed records are reported according to ``options.on_error``; at the end, raises
    SomeRecordsFailed (exit 8) if any failed, or with ``stop`` the first failure itself (with
    its own exit code). ``on_record(line, ok)`` is called after each record (``ok`` is None
    for a record the checkpoint says is done). ``input_fd``, the file the lines come from, is
    refused as an output (a file read while it grows).
    """
    batch = _Batch(
        LocalExecutor(runner) if isinstance(runner, Runner) else runner,
        options or BatchOptions(),
        output or LineOutput(),
        errors or ErrorLog(),
        checkpoint,
        on_text,
        notice,
        input_fd,
        on_piece,
    )
    return batch.run(lines, on_record)


def _input_differs(line_no: int) -> UsageError:
    # Deleting the checkpoint alone, a run appending (`>> out`) writes its records again.
    return UsageError(
        f"the input differs from the one the checkpoint was made for (at line {line_no}): to "
        "start over, delete the checkpoint and the output (and --errors file) it was kept with"
    )


class _BatchSink:
    """What the batch does with one record's results: its output lines (``--each`` items go out
    at once, a document when the record has succeeded), finished pieces (logged), notices, and
    at the end success or failure (reported, then logged in the checkpoint)."""

    def __init__(self, batch: _Batch, task: RecordTask, shape: Callable[[str], str] = str) -> None:
        self.batch = batch
        self.task = task
        self.shape = shape
        self.pending: list[str] = []
        self.on_text = batch.on_text
        self.on_piece = batch.on_piece

    def emit(self, document: str) -> None:
        """One output line's document (shaped by the record: ``--field``, ``--unordered``)."""
        line = self.shape(document)
        if self.batch.options.numbered:
            line = f'{{"line":{self.task.line},"data":{line}}}'
        if self.batch.executor.each:
            with signals_held():  # items go out as they close, each line whole
                self.batch.output.write_line(line)
        else:
            self.pending.append(line)

    def piece_done(self, piece: Piece, found: Found) -> None:
        """Log a finished piece of a long record (its items already written)."""
        with signals_held():
            self.batch._commit(self.task.line, self.task.digest, (piece, found))

    def notice(self, message: str) -> None:
        """A warning about this record."""
        if self.batch.notice is not None:
            self.batch.notice(f"line {self.task.line}: {message}")

    def finish(self, error: QwenJsonError | None) -> bool:
        """Write the record's lines (or report its ``error``) and log it; whether it succeeded."""
        batch, line_no = self.batch, self.task.line
        if error is not None:
            if batch.options.document:
                raise error  # one document fails with its own error, unlogged: a rerun redoes it
            if batch.options.on_error == "stop":
                raise RecordFailed(line_no, error) from error
            failure = RecordError(line_no, str(error), error.exit_code)
            batch.report.failed += 1
            batch.report.errors.append(failure)
            with signals_held():
                if batch.options.on_error == "record":
                    batch.errors.write(failure)
                batch._commit(line_no, self.task.digest)
            return False
        with signals_held():
            for line in self.pending:
                batch.output.write_line(line)
            batch._commit(line_no, self.task.digest)
        batch.report.succeeded += 1
        return True


@dataclass
class _Batch:
    executor: RecordExecutor
    options: BatchOptions
    output: LineOutput
    errors: ErrorLog
    checkpoint: Checkpoint | None
    on_text: TextCallback | None
    notice: Notice | None
    input_fd: int | None = None
    on_piece: Callable[[int, int], None] | None = None
    report: BatchReport = field(default_factory=BatchReport)
    shapes: dict[int, Callable[[str], str]] = field(default_factory=dict)

    def run(
        self, lines: Iterable[bytes], on_record: Callable[[int, bool | None], None] | None
    ) -> BatchReport:
        report = self.report
        self._refuse_shared_files()
        if self.options.numbered and self.checkpoint is not None:
            raise UsageError(
                "--unordered can't be used with --checkpoint (it logs a finished prefix)"
            )
        resume = self._resume()
        tasks = self._tasks(lines, resume, on_record)
        for task, ok in self.executor.run(tasks, self._sink):
            if on_record is not None:
                on_record(task.line, ok)
        if report.records < resume.line:
            raise UsageError(
                f"the input has {report.records} line(s) but the checkpoint says {resume.line} "
                "were done: it is not the same input"
            )
        if report.failed:
            # Exit 8 as an uninterrupted run's, but a cron job's log should tell a new failure
            # from one a checkpoint carries over from an earlier run.
            before = f" ({resume.failed} in earlier runs, reported then)" if resume.failed else ""
            raise SomeRecordsFailed(
                f"{report.failed} of {report.records} record(s) failed{before}", report
            )
        return report

    def _tasks(
        self,
        lines: Iterable[bytes],
        resume: Resume,
        on_record: Callable[[int, bool | None], None] | None,
    ) -> Iterator[RecordTask]:
        """The records still to do, read lazily (an executor takes only as many as it runs)."""
        hasher = hashlib.sha256()
        for line_no, raw in enumerate(lines, 1):
            # A digest of the input so far: a resumed run must be reading the same input.
            hasher.update(len(raw).to_bytes(8, "little"))
            hasher.update(raw)
            digest = hasher.copy().hexdigest()[:32]
            self.report.records = line_no
            if line_no <= resume.line:
                recorded = resume.digest_at(line_no)
                if line_no == resume.line and recorded is None:
                    recorded = resume.input_digest
                if recorded is not None and digest != recorded:
                    raise _input_differs(line_no)
                self.report.resumed += 1
                if on_record is not None:
                    on_record(line_no, None)
                continue
            self.executor.check_total()
            finished = resume.pieces if line_no == resume.line + 1 else []
            if finished and digest != resume.pieces_digest:
                raise _input_differs(line_no)
            try:
                # A document (one text, checkpointed) had its BOM taken when it was read: a
                # second one is the text's own.
                first = line_no == 1 and not self.options.document
                text, shape = parse_record(raw, self.options, first=first)
            except QwenJsonError as e:
                yield RecordTask(line_no, "", digest, error=e)
                continue
            self.shapes[line_no] = shape
            yield RecordTask(line_no, text, digest, tuple(finished))

    def _sink(self, task: RecordTask) -> RecordSink:
        return _BatchSink(self, task, self.shapes.pop(task.line, str))

    def _refuse_shared_files(self) -> None:
        """Refuse the input, stdout, ``--errors`` and ``--checkpoint`` when two are one file (by
        device and inode: ``--errors /dev/stdout > out``): writers would overwrite each other,
        and a reader would read what is written (``--input f >> f`` without end)."""
        seen: dict[tuple[int, int], str] = {}
        checkpoint = self.checkpoint.path if self.checkpoint is not None else None
        for what, where in (
            ("the input", self.input_fd),
            ("stdout", self.output.fd),
            ("the --errors file", self.errors.fd),
            ("the --checkpoint file", checkpoint),
        ):
            identity = _identity(where)
            if identity is None:
                continue
            if identity in seen:
                raise UsageError(
                    f"{what} is the same file as {seen[identity]}: give each its own file"
                )
            seen[identity] = what

    def _resume(self) -> Resume:
        if self.checkpoint is None:
            return Resume()
        # A new checkpoint's header records the files' sizes, as each log line does.
        resume = self.checkpoint.open(*self._durable())
        self.report.failed = resume.failed
        for fd, mark, what in (
            (self.output.fd, resume.output, "stdout"),
            (self.errors.fd, resume.errors, "--errors file"),
        ):
            said = reconcile(fd, mark, what)
            if said and self.notice is not None:
                self.notice(said)
        return resume

    def _commit(self, line_no: int, digest: str, piece: tuple[Piece, Found] | None = None) -> None:
        """Log the record (or with ``piece``, one piece of it) as done."""
        if self.checkpoint is None:
            return
        out_mark, errors_mark = self._durable()
        # A log line that can't be written (disk full) is an output failure, exit 9: the
        # record's output is there, and unless its line made it to the log (only the fsync
        # failed), a rerun cuts it off and does it again.
        with output_errors("the --checkpoint file"):
            if piece is not None:
                self.checkpoint.commit_piece(line_no, digest, *piece, out_mark, errors_mark)
                return
            self.checkpoint.commit(line_no, digest, self.report.failed, out_mark, errors_mark)

    def _durable(self) -> tuple[FileMark | None, FileMark | None]:
        """Make what was written durable; the output's and the errors file's marks now.

        Output first and durable, then the log that says it is there: a crash in between can
        only leave output that the next run cuts off (regular files) or repeats (pipes)."""
        out_mark = self.output.mark()
        if out_mark is not None and self.output.fd is not None:
            with output_errors("stdout"):
                os.fdatasync(self.output.fd)
        self.errors.sync()
        return out_mark, self.errors.mark()
