"""Where a batch's records run: the seam between ``qwenjson.batch`` and its executors.

The batch reads the input, keeps the order, the checkpoint and the error reports; an executor
runs the records, here (``LocalExecutor``: one ``Runner``, one record after another) or
elsewhere, several at once (``qwenjson.actors.RayExecutor``), and hands each record's results to
the ``RecordSink`` the batch gives it for that record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from qwenjson.chunking import Piece
from qwenjson.errors import OutputError, QwenJsonError
from qwenjson.merging import Found
from qwenjson.pieces import PieceHooks
from qwenjson.runner import Runner, TextCallback, TotalTimeoutExpired

__all__ = ["LocalExecutor", "RecordExecutor", "RecordSink", "RecordTask"]


@dataclass(frozen=True)
class RecordTask:
    """One input line to extract from: its number (from 1), its text, the input digest after it,
    the pieces a checkpoint says were done, or ``error`` when the line is no record at all."""

    line: int
    text: str
    digest: str
    finished: tuple[tuple[Piece, Found], ...] = ()
    error: QwenJsonError | None = None


class RecordSink(Protocol):
    """Where one record's results go, in the order they were made: its output documents, its
    finished pieces, its notices, and at the end ``finish`` with its error or None (which
    returns whether it succeeded). ``on_text``/``on_piece``: progress, for a live executor."""

    on_text: TextCallback | None
    on_piece: Callable[[int, int], None] | None

    def emit(self, document: str) -> None: ...
    def piece_done(self, piece: Piece, found: Found) -> None: ...
    def notice(self, message: str) -> None: ...
    def finish(self, error: QwenJsonError | None) -> bool: ...


class RecordExecutor(Protocol):
    """Runs records and hands each one's results to its ``RecordSink``, in input order.

    ``run`` yields ``(task, sink.finish(...))`` for every task, in the order of ``tasks`` (or
    as they finish, for an unordered batch); a task with ``error`` is not run, only finished.
    """

    each: bool  # items are emitted one by one (``--each``)

    def check_total(self) -> None:
        """Raise TotalTimeoutExpired when the whole run's time is up."""
        ...

    def run(
        self, tasks: Iterable[RecordTask], sink: Callable[[RecordTask], RecordSink]
    ) -> Iterator[tuple[RecordTask, bool]]:
        """Run ``tasks``; yield each with what its sink's ``finish`` returned."""
        ...


class LocalExecutor:
    """Records one after another through a ``Runner`` in this process (text streamed live)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.each = runner.record.each

    def check_total(self) -> None:
        """Raise TotalTimeoutExpired when ``--total-timeout`` has run out."""
        self.runner.check_total()

    def run(
        self, tasks: Iterable[RecordTask], sink: Callable[[RecordTask], RecordSink]
    ) -> Iterator[tuple[RecordTask, bool]]:
        """Run each task here, its output going to its sink as it is made."""
        for task in tasks:
            out = sink(task)
            yield task, out.finish(self._error(task, out))

    def _error(self, task: RecordTask, out: RecordSink) -> QwenJsonError | None:
        if task.error is not None:
            return task.error
        hooks = PieceHooks(done=out.piece_done, progress=out.on_piece)
        try:
            self.runner.run(
                task.text,
                out.emit,
                on_text=out.on_text,
                notice=out.notice,
                pieces=hooks,
                finished=task.finished,
            )
        except (TotalTimeoutExpired, OutputError):
            raise  # the run stops; the record in flight is not logged and is done again
        except QwenJsonError as e:
            return e
        return None
