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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qwenjson.checkpoint import Checkpoint, Resume, reconcile, write_all
from qwenjson.chunking import Piece
from qwenjson.errors import EXIT_SOME_RECORDS_FAILED, OutputError, QwenJsonError, UsageError
from qwenjson.merging import Found
from qwenjson.pieces import PieceHooks
from qwenjson.records import BatchOptions, RecordError, parse_record
from qwenjson.runner import Notice, Runner, TextCallback, TotalTimeoutExpired
from qwenjson.stream import FileMark, LineOutput, file_mark, output_errors, signals_held

__all__ = [
    "BatchReport",
    "ErrorLog",
    "RecordFailed",
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
    runner: Runner,
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

    Failed records are reported according to ``options.on_error``; at the end, raises
    SomeRecordsFailed (exit 8) if any failed, or with ``stop`` the first failure itself (with
    its own exit code). ``on_record(line, ok)`` is called after each record (``ok`` is None
    for a record the checkpoint says is done). ``input_fd``, the file the lines come from, is
    refused as an output (a file read while it grows).
    """
    batch = _Batch(
        runner,
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


@dataclass
class _Batch:
    runner: Runner
    options: BatchOptions
    output: LineOutput
    errors: ErrorLog
    checkpoint: Checkpoint | None
    on_text: TextCallback | None
    notice: Notice | None
    input_fd: int | None = None
    on_piece: Callable[[int, int], None] | None = None
    report: BatchReport = field(default_factory=BatchReport)

    def run(
        self, lines: Iterable[bytes], on_record: Callable[[int, bool | None], None] | None
    ) -> BatchReport:
        report = self.report
        self._refuse_shared_files()
        resume = self._resume()
        hasher = hashlib.sha256()
        line_no = 0
        for line_no, raw in enumerate(lines, 1):
            # A digest of the input so far: a resumed run must be reading the same input.
            hasher.update(len(raw).to_bytes(8, "little"))
            hasher.update(raw)
            digest = hasher.copy().hexdigest()[:32]
            report.records = line_no
            if line_no <= resume.line:
                recorded = resume.digest_at(line_no)
                if line_no == resume.line and recorded is None:
                    recorded = resume.input_digest
                if recorded is not None and digest != recorded:
                    raise UsageError(
                        f"the input differs from the one the checkpoint was made for (at line "
                        f"{line_no}): delete the checkpoint to start over"
                    )
                report.resumed += 1
                if on_record is not None:
                    on_record(line_no, None)
                continue
            self.runner.check_total()
            finished = resume.pieces if line_no == resume.line + 1 else []
            if finished and digest != resume.pieces_digest:
                raise UsageError(
                    f"the input differs from the one the checkpoint was made for (at line "
                    f"{line_no}): delete the checkpoint to start over"
                )
            ok = self._record(raw, line_no, digest, finished)
            if on_record is not None:
                on_record(line_no, ok)
        if line_no < resume.line:
            raise UsageError(
                f"the input has {line_no} line(s) but the checkpoint says {resume.line} were "
                "done: it is not the same input"
            )
        if report.failed:
            raise SomeRecordsFailed(f"{report.failed} of {report.records} record(s) failed", report)
        return report

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
        resume = self.checkpoint.open()
        self.report.failed = resume.failed
        for fd, mark, what in (
            (self.output.fd, resume.output, "stdout"),
            (self.errors.fd, resume.errors, "--errors file"),
        ):
            said = reconcile(fd, mark, what)
            if said and self.notice is not None:
                self.notice(said)
        return resume

    def _record(
        self, raw: bytes, line_no: int, digest: str, finished: list[tuple[Piece, Found]]
    ) -> bool:
        each = self.runner.record.each
        pending: list[str] = []
        notice = self.notice

        def say(message: str) -> None:
            if notice is not None:
                notice(f"line {line_no}: {message}")

        try:
            text, shape = parse_record(raw, self.options, first=line_no == 1)

            def emit(document: str) -> None:
                if each:
                    with signals_held():  # items go out as they close, each line whole
                        self.output.write_line(shape(document))
                else:
                    pending.append(shape(document))

            def piece_done(piece: Piece, found: Found) -> None:
                with signals_held():
                    self._commit(line_no, digest, (piece, found))

            hooks = PieceHooks(done=piece_done, progress=self.on_piece)
            self.runner.run(
                text, emit, on_text=self.on_text, notice=say, pieces=hooks, finished=finished
            )
        except (TotalTimeoutExpired, OutputError):
            raise  # the run stops; the record in flight is not logged and is done again
        except QwenJsonError as e:
            if self.options.document:
                raise  # a single document fails with its own error, unlogged: a rerun redoes it
            if self.options.on_error == "stop":
                raise RecordFailed(line_no, e) from e
            failure = RecordError(line_no, str(e), e.exit_code)
            self.report.failed += 1
            self.report.errors.append(failure)
            with signals_held():
                if self.options.on_error == "record":
                    self.errors.write(failure)
                self._commit(line_no, digest)
            return False
        with signals_held():
            for line in pending:
                self.output.write_line(line)
            self._commit(line_no, digest)
        self.report.succeeded += 1
        return True

    def _commit(self, line_no: int, digest: str, piece: tuple[Piece, Found] | None = None) -> None:
        """Log the record (or with ``piece``, one piece of it) as done."""
        if self.checkpoint is None:
            return
        # Output first and durable, then the log that says it is there: a crash in between
        # can only leave output that the next run cuts off (regular files) or repeats (pipes).
        out_mark = self.output.mark()
        if out_mark is not None and self.output.fd is not None:
            with output_errors("stdout"):
                os.fdatasync(self.output.fd)
        self.errors.sync()
        if piece is not None:
            self.checkpoint.commit_piece(line_no, digest, *piece, out_mark, self.errors.mark())
            return
        self.checkpoint.commit(line_no, digest, self.report.failed, out_mark, self.errors.mark())
