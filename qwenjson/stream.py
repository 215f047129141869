"""Streaming primitives for pipelines: whole-line output, and the items of a list as they close.

``LineOutput`` writes one NDJSON line per call with SIGINT/SIGTERM held, so a signal never leaves
half a line on stdout. ``ItemScanner`` reads generated text as it arrives and hands back each
element of the top-level ``"items"`` array the moment its closing character is seen.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from qwenjson.callbacks import keeps_signals
from qwenjson.errors import OutputError

__all__ = ["FileMark", "ItemScanner", "LineOutput", "output_errors", "signals_held", "write_all"]

# SIGALRM: a time limit (qwenjson.deadline) waits too, like Ctrl-C.
_HELD: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)


_pending: list[int] = []  # signals that arrived in a held block, in order
_holding = False


# A signal put off in a callback by the handler set aside is sent here too: acted on at the end.
@keeps_signals(lambda signum: _previous.get(signum))
def _defer(signum: int, frame: object) -> None:
    _pending.append(signum)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGALRM for the block: they are delivered, in order, when it ends.

    By their handlers, not the signal mask: a mask set in the main thread doesn't stop the
    kernel from handing the signal to another thread (llama.cpp's, Ray's), and Python then
    runs the handler in the main thread at once, inside the block. So for the block each
    signal's handler only notes it, and each one noted is raised again after the handlers are
    back. Only the main thread can set handlers; elsewhere the block runs unprotected, as it
    does for a signal whose handler Python didn't install (it can't be put back)."""
    import threading

    global _holding
    if _holding or threading.current_thread() is not threading.main_thread():
        yield
        return
    # (An ignored signal needs no holding; held, it would end a blocked write for nothing.)
    held = [sig for sig in _HELD if signal.getsignal(sig) not in (None, signal.SIG_IGN)]
    previous = {sig: signal.signal(sig, _defer) for sig in held}
    _previous.update(previous)
    _holding = True
    try:
        yield
    finally:
        _holding = False
        _previous.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in _take_pending():
            signal.raise_signal(sig)


_previous: dict[int, Any] = {}  # the handlers a held block put aside, while it runs


def _take_pending() -> list[int]:
    """The signals held so far, each once, in the order they came; none held after."""
    pending = list(dict.fromkeys(_pending))
    _pending.clear()
    return pending


def _act_on_pending() -> None:
    """Run the handlers of the signals held so far, now, inside the block, as its end would:
    one that raises (Ctrl-C, SIGTERM, a time limit) ends what the block was doing; one that
    returns (a time limit's alarm with nothing due yet) lets it go on."""
    for sig in _take_pending():
        handler = _previous.get(sig)
        if callable(handler):
            handler(sig, None)
        elif handler == signal.SIG_DFL:  # its default action (the end of the process)
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)


@dataclass(frozen=True)
class FileMark:
    """Which regular file a stream writes to, and its size at one moment."""

    device: int
    inode: int
    size: int

    def same_file(self, other: FileMark) -> bool:
        """Whether both marks are of the same file (sizes aside)."""
        return (self.device, self.inode) == (other.device, other.inode)


def file_mark(fd: int | None) -> FileMark | None:
    """The mark of ``fd`` if it is a regular file, else None (pipes, terminals, sockets)."""
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileMark(st.st_dev, st.st_ino, st.st_size)


def stream_fd(stream: object) -> int | None:
    """The file descriptor behind ``stream``, or None for in-memory streams (tests)."""
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd if isinstance(fd, int) else None


class LineOutput:
    """Whole lines to a binary stream (stdout by default), each written and flushed at once."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._given = stream

    @property
    def stream(self) -> BinaryIO:
        """The binary stream written to (stdout's buffer, looked up late so tests can swap it)."""
        if self._given is not None:
            return self._given
        return sys.stdout.buffer

    @property
    def fd(self) -> int | None:
        """The file descriptor written to, if there is one."""
        return stream_fd(self.stream)

    def mark(self) -> FileMark | None:
        """The output file and its size now, when the output is a regular file."""
        return file_mark(self.fd)

    def write_line(self, text: str) -> None:
        """Write ``text`` and a newline, whole, and flush. The caller holds signals if needed.

        Raises OutputError when the write fails (disk full, stdout closed); BrokenPipeError (the
        reader went away) is left to the caller.
        """
        data = (text + "\n").encode("utf-8")
        with output_errors("stdout" if self._given is None else "the output"):
            if self._given is None:
                sys.stdout.flush()  # anything printed through the text layer goes first
            write_whole(self.stream, data)


def write_whole(out: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to ``out`` and flush it.

    Under ``python -u`` or ``PYTHONUNBUFFERED=1`` (many containers set it) stdout's buffer is a
    raw file, whose ``write`` may take only part of the data and say so: a full disk took 985
    of 1037 bytes without an error, and a signal interrupting a write to a full pipe ended it
    early. The rest is written until all is, or the write raises.

    With signals held, a pipe, socket or terminal is written as it takes the data, so that a
    reader that stops reading can't hold a signal off for ever (the process could only be
    killed with SIGKILL, and ``--total-timeout`` never fired; see ``_write_while_held``).
    """
    fd = stream_fd(out)
    if _holding and fd is not None and _may_block(fd):
        out.flush()  # what the stream holds goes first (each line is flushed: nothing, as a rule)
        _write_while_held(fd, data)
        return
    done = 0
    while done < len(data):
        n = out.write(data[done:] if done else data)
        if n is None:
            fd = stream_fd(out)
            if not isinstance(out, io.RawIOBase) or fd is None:
                break  # a wrapper that doesn't count what it takes: it took it all
            select.select([], [fd], [])  # a non-blocking raw file that can take nothing now
            continue
        done += n
    out.flush()


# How often a write waiting on a full pipe looks for a held signal (a signal interrupts the
# wait at once, as the select call returns to run its handler; this bounds nothing else).
_WAIT_S = 0.2
# How long a line partly out waits for its reader once a signal has come: a reader that reads
# gets the rest of it well within this; one that doesn't gets half a line, and the signal is
# acted on (a choice: holding on, one SIGTERM or --total-timeout could not end the process).
_PARTIAL_GRACE_S = 2.0


def _may_block(fd: int) -> bool:
    """Whether a write to ``fd`` can wait on a reader: a pipe, a socket or a terminal."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd`` (the checkpoint, ``--errors``); with
    signals held, a pipe or FIFO (``--errors`` given one) as its reader takes it, as
    ``write_whole`` writes stdout: a reader that stopped held off SIGTERM and --total-timeout."""
    if _holding and _may_block(fd):
        _write_while_held(fd, data)
        return
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _write_while_held(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` as the reader takes it, acting on a held signal that waits.

    Each ``os.write`` is at most ``PIPE_BUF`` bytes, made when ``select`` says the pipe has room:
    a pipe with a free buffer takes that much at once, all or nothing, so a write never blocks.
    While the reader takes nothing and a held signal waits, its handler runs here: if it
    raises, the line is not written (none of it out yet) or is left half out (a line longer
    than ``PIPE_BUF`` whose reader stopped for ``_PARTIAL_GRACE_S`` after the signal); if it
    returns, the write goes on.
    """
    view = memoryview(data)
    done = 0
    signalled: float | None = None  # when a signal was first seen waiting, with part of it out
    while done < len(data):
        _, ready, _ = select.select([], [fd], [], _WAIT_S)
        if not ready:
            if _pending:
                now = time.monotonic()
                signalled = now if signalled is None else signalled
                if not done or now - signalled >= _PARTIAL_GRACE_S:
                    _act_on_pending()
                    signalled = None
            continue
        with contextlib.suppress(BlockingIOError):  # (a non-blocking pipe another filled)
            done += os.write(fd, view[done : done + select.PIPE_BUF])


@contextmanager
def output_errors(what: str) -> Iterator[None]:
    """Turn a failed write to ``what`` into OutputError (exit 9), naming it and the reason."""
    try:
        if what == "stdout" and sys.stdout is None:  # started with stdout closed (>&-)
            raise OutputError("cannot write to stdout: it is closed", stdout=True)
        yield
    except BrokenPipeError:
        raise  # the reader went away (`| head`): exit 141, silently
    except (OSError, ValueError) as e:  # ValueError: a closed file object
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        target = "to stdout" if what == "stdout" else what
        raise OutputError(f"cannot write {target}: {reason}", stdout=what == "stdout") from e


class ItemScanner:
    """Finds the elements of the top-level ``"items"`` array in JSON text fed piece by piece.

    String-aware (brackets, commas and escaped quotes inside strings don't count), so an element
    is reported exactly when its last character arrives: the closing bracket or quote of a
    container or string, or the ``,``/``]`` after a number or literal. After the top-level value
    closes, the next non-space character starts a new document (the next attempt); ``attempt``
    counts them from 1.
    """

    def __init__(self) -> None:
        self.attempt = 0
        self._reset()

    def _reset(self) -> None:
        self._stack: list[str] = []  # "{", "[", or "items" for the items array itself
        self._in_string = False
        self._escape = False
        self._string: list[str] = []  # the raw text of the last string at depth 1
        self._key: str | None = None  # the key whose value is being read at depth 1
        self._element: list[str] | None = None  # the element being captured
        self._closed = False  # the top-level value has ended

    def feed(self, chunk: str) -> list[str]:
        """The JSON texts of the elements completed by ``chunk``, in order."""
        done: list[str] = []
        for ch in chunk:
            if self._in_string:
                self._string_char(ch, done)
            else:
                self._structure_char(ch, done)
        return done

    def _string_char(self, ch: str, done: list[str]) -> None:
        element = self._element
        if element is not None:
            element.append(ch)
        if self._escape:
            self._escape = False
        elif ch == "\\":
            self._escape = True
        elif ch == '"':
            self._in_string = False
            if element is not None and self._stack[-1] == "items":
                self._finish(done)  # a string element
            return
        if element is None and len(self._stack) == 1:
            self._string.append(ch)

    def _structure_char(self, ch: str, done: list[str]) -> None:
        stack = self._stack
        in_items = bool(stack) and stack[-1] == "items"
        if ch in " \t\r\n":
            if in_items and self._element is not None:
                self._finish(done)  # whitespace ends a number or literal
            return
        if not stack:
            if self._closed:
                self._reset()  # a new document: the next attempt
                stack = self._stack
            self.attempt += 1 if ch in "{[" else 0
        if in_items:
            if self._element is not None and ch in ",]":
                self._finish(done)  # a number or literal ends at the next separator
            elif self._element is None and ch not in ",]":
                self._element = []
        if self._element is not None:
            self._element.append(ch)
        if ch == '"':
            self._in_string = True
            self._string = []
        elif ch == ":" and len(stack) == 1:
            self._key = "".join(self._string)
        elif ch == "{":
            stack.append("{")
        elif ch == "[":
            top_level_items = stack == ["{"] and self._key == "items"
            stack.append("items" if top_level_items else "[")
        elif ch in "}]" and stack:
            stack.pop()
            if not stack:
                self._closed = True
            elif stack[-1] == "items" and self._element is not None:
                self._finish(done)  # a container element

    def _finish(self, done: list[str]) -> None:
        if self._element is not None:
            done.append("".join(self._element))
        self._element = None
