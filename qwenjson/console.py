"""Everything qwenjson shows a person goes to stderr through Rich; stdout carries data only.

Rich drops colours and live displays by itself when stderr is not a terminal, so cron logs
and pipes get plain text.
"""

from __future__ import annotations

import io
import os
import select
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class _Diagnostics(Console):
    """Rich's console for stderr, but a stderr that can't be written only silences it.

    Rich's default on a broken pipe points *stdout* at /dev/null and exits 1: a batch whose
    log was piped to ``head -1`` stopped after two records, and its data went nowhere. Any
    other failed write raised from wherever a message was shown: a log on a full disk
    (``2>>/var/log/x`` at ENOSPC) or a stderr a wrapper left open for reading only (EBADF)
    lost the batch's remaining records and ended it with exit 1. The data on stdout matters
    more than the messages: the run carries on quietly, and its exit code still says what
    happened.
    """

    def on_broken_pipe(self) -> None:
        self._silence()

    def _check_buffer(self) -> None:
        # Rich's own hook for writing what was printed (it catches BrokenPipeError alone);
        # test_batch's subprocesses with 2>/dev/full, a read-only and a stalled stderr check it.
        try:
            super()._check_buffer()
        except OSError:  # _Stalled too
            self._silence()
        except BaseException:
            # A signal's exception in the middle of a write (SIGTERM while a reader is slow):
            # what was printed is not written again, whole, in front of the next message.
            del self._buffer[:]
            raise

    def _silence(self) -> None:
        """No more messages; what Python still holds for stderr goes to /dev/null, so that its
        flush at exit can't fail again (that would make the exit code 120)."""
        self.quiet = True
        del self._buffer[:]
        try:
            fd = sys.stderr.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (AttributeError, OSError, ValueError):  # no real stderr: nothing to flush
            return
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
        finally:
            os.close(devnull)


# How long a message waits for room in a pipe, FIFO or socket on stderr before its reader is
# taken as gone: a write blocked on a reader that stopped held off SIGTERM and --total-timeout
# (each signal's own "Error: terminated" blocked again), and a held block
# (``stream.signals_held``) that showed a failed record's message never ended. A terminal is
# written as always (a user's Ctrl-S pauses it on purpose).
READER_WAIT_S = 5.0


class _Stalled(OSError):
    """stderr's reader took nothing for ``READER_WAIT_S``."""


class _Stderr:
    """What the messages are written to: the process's stderr as it is at each write (a test's
    capture too), but a pipe, FIFO or socket is written directly, at most ``PIPE_BUF`` bytes at
    a time and each only once ``poll`` says there is room: a write that size into a pipe with
    room never blocks, so no message (one quoting a long record, say) waits on a reader for
    longer than ``READER_WAIT_S`` at a time."""

    def write(self, text: str) -> int:
        target = _stderr_now()
        if target is None:  # started with stderr closed (2>&-), before cli.main replaces it
            return len(text)
        fd = _waitable_fd(target)
        if fd is None:
            return target.write(text)
        target.flush()  # what Python holds for it goes first
        encoding = getattr(target, "encoding", None) or "utf-8"
        view = memoryview(text.encode(encoding, "backslashreplace"))
        # poll, not select: select refuses a descriptor past 1023 (a library caller's stderr).
        waiting = select.poll()
        waiting.register(fd, select.POLLOUT)
        while view:
            if not waiting.poll(READER_WAIT_S * 1000):
                raise _Stalled(f"stderr's reader took nothing for {READER_WAIT_S:g} s")
            view = view[os.write(fd, view[: select.PIPE_BUF]) :]
        return len(text)

    def flush(self) -> None:
        target = _stderr_now()
        if target is not None:
            target.flush()

    def isatty(self) -> bool:
        target = _stderr_now()
        return target is not None and target.isatty()

    def fileno(self) -> int:
        target = _stderr_now()
        if target is None:
            raise io.UnsupportedOperation("stderr is closed")
        return target.fileno()

    @property
    def encoding(self) -> str:
        return getattr(_stderr_now(), "encoding", None) or "utf-8"


def _stderr_now() -> TextIO | None:
    """``sys.stderr``, or the file behind it while a Rich Progress or Live has put its proxy
    there (the proxy prints through this console: writing to it recursed without end, every
    progress bar and token preview hung the run)."""
    target = sys.stderr
    while hasattr(target, "rich_proxied_file"):  # (a proxy of a proxy: another Rich's Live)
        target = target.rich_proxied_file
    return target


def _waitable_fd(file: object) -> int | None:
    """``file``'s descriptor when it is a pipe, FIFO or socket, else None."""
    try:
        fd = file.fileno()  # type: ignore[attr-defined]
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return None
    return fd if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None


stderr = _Diagnostics(file=_Stderr(), highlight=False, soft_wrap=True)  # type: ignore[arg-type]

ProgressCallback = Callable[[int, int | None], None]


def error(message: str) -> None:
    """Print ``Error: message`` on stderr (no markup: messages may contain brackets)."""
    stderr.print(Text("Error: ", style="bold red") + Text(message))


def warning(message: str) -> None:
    """Print ``Warning: message`` on stderr."""
    stderr.print(Text("Warning: ", style="yellow") + Text(message))


def info(message: str) -> None:
    """A status line on stderr."""
    stderr.print(Text(message, style="dim"))


@contextmanager
def download_progress(label: str, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A byte progress bar (bytes, speed, ETA) on a terminal; ``None`` (silence) otherwise."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


class TokenPreview:
    """The generated text so far, live on a terminal's stderr, until ``clear``."""

    def __init__(self) -> None:
        self._live: Live | None = None
        self._shown = ""

    def on_text(self, piece: str) -> None:
        """Show one more piece of generated text (the last 300 characters stay in view)."""
        if self._live is None:
            self._live = Live(Text(""), console=stderr, transient=True, refresh_per_second=12)
            self._live.start()
        self._shown = (self._shown + piece)[-300:]
        self._live.update(Text(self._shown, style="dim"))

    def clear(self) -> None:
        """Take the preview off the screen (before a document goes to stdout on the same
        terminal); more text starts a new one."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._shown = ""


@contextmanager
def token_preview(enabled: bool) -> Iterator[TokenPreview | None]:
    """A live preview of generated text on a terminal's stderr; ``None`` when not shown."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    preview = TokenPreview()
    try:
        yield preview
    finally:
        preview.clear()


class BatchProgress:
    """Callbacks that drive the record progress bar of a ``--jsonl`` batch."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task
        self._tail = ""
        self.failed = 0

    def on_record(self, line: int, ok: bool | None) -> None:
        """One record finished (``ok`` None: already done by an earlier run)."""
        if ok is False:
            self.failed += 1
        self._tail = ""
        self._progress.update(self._task, advance=1, preview="", failed=self.failed)

    def on_text(self, piece: str) -> None:
        """Generated text of the record in flight: shown after the bar, one line."""
        self._tail = (self._tail + piece)[-60:]
        self._progress.update(self._task, preview=self._tail.replace("\n", " "))

    def on_piece(self, done: int, total: int) -> None:
        """A record longer than the context is done in pieces: ``done`` of about ``total``."""
        self._progress.update(self._task, pieces=f"piece {min(done + 1, total)}/{total} ")


@contextmanager
def batch_progress(total: int | None, enabled: bool) -> Iterator[BatchProgress | None]:
    """A progress bar over records on a terminal's stderr; ``None`` (nothing shown) otherwise.

    One live display at a time: in a batch, the token preview is a column of this bar.
    """
    if not enabled or not stderr.is_terminal:
        yield None
        return
    columns = (
        TextColumn("records"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[pieces]}{task.fields[preview]}", style="dim"),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("records", total=total, preview="", failed=0, pieces="")
        yield BatchProgress(progress, task)


class PieceProgress:
    """One document: the token preview, and once it is done in pieces, a bar over them."""

    def __init__(self) -> None:
        self._preview = TokenPreview()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._counts = (0, 0)
        self._tail = ""

    def on_text(self, piece: str) -> None:
        """Generated text: in the preview, or after the bar once there is one."""
        if self._counts[1] == 0:
            self._preview.on_text(piece)
            return
        self._tail = (self._tail + piece)[-60:]
        self._show()

    def on_piece(self, done: int, total: int) -> None:
        """``done`` pieces of about ``total`` are done."""
        self._preview.clear()
        self._counts = (done, total)
        self._tail = ""
        self._show()

    def _show(self) -> None:
        if self._progress is None:
            columns = (
                TextColumn("pieces"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[preview]}", style="dim"),
            )
            self._progress = Progress(*columns, console=stderr, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("pieces", total=None, preview="")
        assert self._task is not None
        done, total = self._counts
        preview = self._tail.replace("\n", " ")
        self._progress.update(self._task, completed=done, total=total, preview=preview)

    def clear(self) -> None:
        """Take the preview and the bar off the screen (before output on the same terminal);
        they come back with the next text or piece."""
        self._preview.clear()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def piece_progress(enabled: bool) -> Iterator[PieceProgress | None]:
    """The token preview and piece bar of one document on a terminal; ``None`` otherwise."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    progress = PieceProgress()
    try:
        yield progress
    finally:
        progress.clear()
