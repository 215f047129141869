"""Signals that come while C calls back into Python: acted on once C returns, never swallowed.

C's ``qsort`` calling a Python comparator stands in for llama.cpp calling its log callback
while a model loads; the handlers are the CLI's own and ``qwenjson.deadline``'s.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import pytest

from qwenjson import callbacks, cli, deadline, stream
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


_compares: list[int] = []  # comparator calls, one entry each


@callbacks.shield
def _counted_compare(a: int | None, b: int | None) -> int:
    _compares.append(1)
    return _slow_compare(a, b)


def _sort() -> int:
    """Sort 24 ints through the slow comparator (0.3 s or so); how many calls it made."""
    _compares.clear()
    items = (ctypes.c_int * 24)()
    _LIBC.qsort(items, len(items), ctypes.sizeof(ctypes.c_int), _COMPARE(_counted_compare))
    return len(_compares)


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What ctypes swallowed ("Exception ignored on calling ctypes callback function")."""
    seen: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


@pytest.fixture(autouse=True)
def _no_copy_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a signal taken by an earlier one as a copy of it."""
    monkeypatch.setattr(callbacks, "_taken", {})


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
    signum: int,
    handler: Callable[[int, FrameType | None], None],
    error: type[BaseException],
    unraisable: list[object],
) -> None:
    # Raised inside the callback, ctypes would print "Exception ignored…" and go on: the run
    # would finish (exit 0) with a traceback on stderr; here the sleep would run its 10 s.
    whole = _sort()
    started = time.monotonic()
    with _handler(signum, handler), pytest.raises(error):
        _signal_once.append(signum)
        _sort()
        time.sleep(10)
    assert time.monotonic() - started < 5  # at the end of the sort, not after the sleep
    assert unraisable == []  # never raised inside the callback
    assert len(_compares) == whole  # the sort ran to its end


@needs_qsort
def test_an_alarm_inside_a_callback_fires_once_c_returns(unraisable: list[object]) -> None:
    # Raised inside the callback, the limit would be spent: the sleep would run its full 10 s.
    whole = _sort()
    started = time.monotonic()
    with (
        deadline.alarms(),
        pytest.raises(TimeoutExpired, match="cut"),
        deadline.limit(0.05, lambda: TimeoutExpired("cut")),
    ):
        _sort()
        time.sleep(10)
    assert time.monotonic() - started < 5
    assert unraisable == []
    assert len(_compares) == whole  # the alarm, due at 0.05 s, waited for the sort's end


@callbacks.shield
def _raise_in_a_callback(signum: int, block: bool) -> None:
    """Send ``signum`` as if from inside C's callback; then, with ``block``, block it."""
    signal.raise_signal(signum)  # its handler runs here: put off
    if block:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})


def test_a_signal_put_off_whose_copy_is_lost_comes_again(unraisable: list[object]) -> None:
    # A copy can land just before the main thread's blocking call starts: its handler then
    # waits for the call's end (a CI run sat out a 10 s sleep). Here sigtimedwait takes that
    # copy without a handler; sent once, nothing else came and the sleep ran its full 10 s.
    with _handler(signal.SIGINT, cli._on_sigint), pytest.raises(KeyboardInterrupt):
        try:
            _raise_in_a_callback(signal.SIGINT, block=True)
            assert signal.sigtimedwait({signal.SIGINT}, 30) is not None  # the lost copy
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        time.sleep(10)
    assert unraisable == []


@callbacks.shield
def _callback_frame() -> FrameType:
    frame = sys._getframe()
    return frame


def test_a_copy_sent_before_the_signal_was_acted_on_is_no_second_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A copy on its way when the handler acts would raise a second KeyboardInterrupt in the
    # middle of the cleanup the first one started.
    monkeypatch.setattr(callbacks, "_AGAIN_S", 60.0)  # the copies' window, whatever the load
    with _handler(signal.SIGINT, lambda signum, frame: None):  # the copies sent meanwhile
        assert callbacks.deferred(signal.SIGINT, _callback_frame())
        with pytest.raises(KeyboardInterrupt):
            cli._on_sigint(signal.SIGINT, None)  # acted on
        cli._on_sigint(signal.SIGINT, None)  # a copy: no second KeyboardInterrupt

        assert callbacks.deferred(signal.SIGINT, _callback_frame())
        with pytest.raises(KeyboardInterrupt):
            cli._on_sigint(signal.SIGINT, None)
        # the copy lands in a callback (llama.cpp's log while Engine.close frees the model):
        assert callbacks.deferred(signal.SIGINT, _callback_frame())
        assert signal.SIGINT not in callbacks._owed  # the same signal, not a new one owed


def test_a_signal_put_off_reaches_a_handler_installed_since_once() -> None:
    # Sent every 50 ms, Ray's SIGTERM handler raised SystemExit in cleanup each time; never
    # sent, a supervisor's SIGTERM went unheard until it escalated to SIGKILL.
    others: list[int] = []
    with _handler(signal.SIGTERM, cli._on_sigterm):
        with callbacks._lock:  # no copy before the other handler is in
            assert callbacks.deferred(signal.SIGTERM, _callback_frame())
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: others.append(signum))
        try:
            deadline = time.monotonic() + 30
            while not others and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # room for more copies, were any sent
        finally:
            signal.signal(signal.SIGTERM, previous)
    assert others == [signal.SIGTERM]
    assert signal.SIGTERM not in callbacks._owed


def test_a_signal_held_for_another_handler_reaches_it_once() -> None:
    # signals_held keeps signals for the handler it set aside: when that is another program's,
    # each held block re-raised the copy to it (10 blocks, 10 calls).
    others: list[int] = []
    with _handler(signal.SIGTERM, cli._on_sigterm):
        with callbacks._lock:
            assert callbacks.deferred(signal.SIGTERM, _callback_frame())
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: others.append(signum))
        try:
            for _ in range(10):
                with stream.signals_held():
                    time.sleep(0.06)
        finally:
            signal.signal(signal.SIGTERM, previous)
    assert others == [signal.SIGTERM]


def test_outside_a_callback_nothing_is_put_off() -> None:
    assert not callbacks.deferred(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        cli._on_sigint(signal.SIGINT, None)


_LATE_ALARM = """
import ctypes, time
from qwenjson import callbacks, deadline
from qwenjson.errors import QwenJsonError
compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
@callbacks.shield
def slow(a, b):
    time.sleep(0.004)  # the limit runs out in here (as in llama_model_free's log callback)
    return 0
items = (ctypes.c_int * 2)(1, 2)
for _ in range(20):
    try:
        with deadline.alarms(), deadline.limit(0.002, lambda: QwenJsonError("out")):
            ctypes.CDLL(None).qsort(items, 2, ctypes.sizeof(ctypes.c_int), compare(slow))
    except QwenJsonError:
        pass
    time.sleep(0.01)  # SIGALRM's default action is back: an alarm now would kill the process
print("alive")
"""


@needs_qsort
def test_an_alarm_put_off_past_the_end_of_its_limits_never_kills_the_process() -> None:
    # Sent again by a timer thread, it came after alarms() had put the default action back:
    # the process died of SIGALRM (exit 142, "Alarm clock") with no Error: line.
    r = subprocess.run([sys.executable, "-c", _LATE_ALARM], capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"alive\n"), r.stderr
