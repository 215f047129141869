"""Signals that come while C calls back into Python: acted on once C returns, never swallowed.

C's ``qsort`` calling a Python comparator stands in for llama.cpp calling its log callback
while a model loads; the handlers are the CLI's own and ``qwenjson.deadline``'s.
"""

from __future__ import annotations

import ctypes
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import pytest

from qwenjson import callbacks, cli, deadline
from qwenjson.errors import TimeoutExpired

_COMPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_LIBC = ctypes.CDLL(None)
needs_qsort = pytest.mark.skipif(not hasattr(_LIBC, "qsort"), reason="needs C's qsort")

_signal_once: list[int] = []  # a signal the comparator sends itself at its first call


@callbacks.shield
def _slow_compare(a: int | None, b: int | None) -> int:
    """Called back by qsort; 5 ms of Python bytecode, where a signal's handler runs."""
    if _signal_once:
        signal.raise_signal(_signal_once.pop())  # its handler runs here, inside the callback
    end = time.monotonic() + 0.005
    while time.monotonic() < end:
        pass
    return 0


def _sort() -> float:
    """Sort 24 ints through the slow comparator (about 0.3 s); when it returned."""
    items = (ctypes.c_int * 24)()
    _LIBC.qsort(items, len(items), ctypes.sizeof(ctypes.c_int), _COMPARE(_slow_compare))
    return time.monotonic()


@contextmanager
def _handler(signum: int, handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


@needs_qsort
@pytest.mark.parametrize(
    ("signum", "handler", "error"),
    [
        (signal.SIGINT, cli._on_sigint, KeyboardInterrupt),
        (signal.SIGTERM, cli._on_sigterm, cli._Terminated),
    ],
)
def test_ctrl_c_and_sigterm_inside_a_callback_stop_the_run_once_c_returns(
    signum: int, handler: Callable[[int, FrameType | None], None], error: type[BaseException]
) -> None:
    # Raised inside the callback, ctypes would print "Exception ignored…" and go on: the run
    # would finish (exit 0) with a traceback on stderr.
    sorted_at = None
    with _handler(signum, handler), pytest.raises(error):
        _signal_once.append(signum)
        sorted_at = _sort()
        time.sleep(3)
    assert sorted_at is not None  # the sort finished first: nothing came inside it
    assert time.monotonic() - sorted_at < 1.0  # and the signal came at once after it


@needs_qsort
def test_an_alarm_inside_a_callback_fires_once_c_returns() -> None:
    # Raised inside the callback, the limit would be spent: the sleep would run its full 3 s.
    started = time.monotonic()
    sorted_at = None
    with (
        deadline.alarms(),
        pytest.raises(TimeoutExpired, match="cut"),
        deadline.limit(0.05, lambda: TimeoutExpired("cut")),
    ):
        sorted_at = _sort()
        time.sleep(3)
    assert sorted_at is not None and time.monotonic() - sorted_at < 1.0
    assert sorted_at - started > 0.05  # the alarm came while C was still sorting


def test_outside_a_callback_nothing_is_put_off() -> None:
    assert not callbacks.deferred(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        cli._on_sigint(signal.SIGINT, None)
