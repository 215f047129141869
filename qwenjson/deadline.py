"""Time limits that hold everywhere: in a blocked read, an ``open()`` of a FIFO, a regex match.

Checking the clock between generated tokens misses whatever never comes back to that check: a
read of a pipe nobody writes, a model path that is a FIFO, a ``pattern`` that backtracks for
hours during validation. So a limit is also an alarm (SIGALRM from a one-shot real-time timer)
whose handler raises the limit's error in the main thread, wherever it is: Python retries a
system call interrupted by a signal only after running the handler, and the ``re`` matcher
checks for signals while it backtracks. Like Ctrl-C the error can arrive anywhere, so code that
must not be cut in half (a line and its checkpoint entry) holds it with ``stream.signals_held``.

An alarm can cut the engine short between a llama.cpp call and its bookkeeping; after that only
``close()`` is safe. So a time limit after which the same engine goes on (``--timeout``, per
record) is a ``budget``: no alarm of its own, kept by the clock checks between tokens, and
capping the alarms set inside it with ``within_budget`` (validation). ``--total-timeout`` ends the
run, so it is a ``limit``.

Alarms are only armed inside ``alarms()`` (the CLI): a library's caller may own SIGALRM. Outside
it, and off the main thread, ``limit`` is a no-op and the clock checks between tokens remain.

An alarm that comes while C calls back into Python (llama.cpp's log callback) waits until C has
returned (``qwenjson.callbacks``): raised there, ctypes would swallow the error.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from qwenjson.callbacks import in_callback
from qwenjson.errors import QwenJsonError

__all__ = ["alarms", "budget", "limit", "overdue"]


@dataclass(eq=False)
class _Limit:
    at: float  # time.monotonic() when it runs out
    error: Callable[[], QwenJsonError]
    fired: bool = False  # it fires once, even if its error is caught inside its block


_open: list[_Limit] = []  # every limit whose block is running, fired or not
_budgets: list[_Limit] = []
_enabled = False


def _usable() -> bool:
    return _enabled and threading.current_thread() is threading.main_thread()


# After its first alarm the timer goes on every 50 ms until a handler re-arms or stops it: an
# alarm that lands after the main thread's last check for signals and before its blocking
# call (a read of a pipe nobody writes) would otherwise run its handler only once that call
# returns, never. (SIGINT and SIGTERM put off are sent again so too: qwenjson.callbacks.)
_AGAIN_S = 0.05


def _armed() -> list[_Limit]:
    return [e for e in _open if not e.fired]


def _arm() -> None:
    armed = _armed()
    if not armed:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return
    delay = min(e.at for e in armed) - time.monotonic()
    # At most a day at a time (the timer can't hold 1e300 s or inf): an early alarm re-arms.
    signal.setitimer(signal.ITIMER_REAL, min(max(delay, 0.001), 86400.0), _AGAIN_S)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    if in_callback(frame):  # raised here, ctypes would swallow it: again in 1 ms
        signal.setitimer(signal.ITIMER_REAL, 0.001, _AGAIN_S)
        return
    now = time.monotonic()
    due = [e for e in _armed() if e.at <= now]
    if not due:
        _arm()  # a limit that ended before its alarm came: wait for the next one
        return
    first = min(due, key=lambda e: e.at)
    first.fired = True
    _arm()
    raise first.error()


@contextmanager
def alarms() -> Iterator[None]:
    """Let ``limit`` arm SIGALRM for the block (main thread only); restore the old handler."""
    global _enabled
    if threading.current_thread() is not threading.main_thread() or _enabled:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _enabled = True
    try:
        yield
    finally:
        _enabled = False
        _open.clear()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def budget(seconds: float | None, error: Callable[[], QwenJsonError]) -> Iterator[None]:
    """A time limit for the block that arms no alarm: ``limit(…, within_budget=True)`` inside
    it fires with ``error()`` when the budget runs out first (None: no budget)."""
    if seconds is None:
        yield
        return
    entry = _Limit(time.monotonic() + max(seconds, 0.0), error)
    _budgets.append(entry)
    try:
        yield
    finally:
        _budgets.remove(entry)


@contextmanager
def limit(
    seconds: float | None,
    error: Callable[[], QwenJsonError],
    *,
    within_budget: bool = False,
) -> Iterator[None]:
    """Raise ``error()`` if the block is still running after ``seconds`` (None: no limit), or
    with ``within_budget`` the error of an enclosing ``budget`` if that runs out first.

    Limits nest: the one that runs out first fires, inside the block that set it.
    """
    if seconds is None or not _usable():
        yield
        return
    entry = _Limit(time.monotonic() + max(seconds, 0.0), error)
    if within_budget and _budgets:
        first = min(_budgets, key=lambda e: e.at)
        if first.at < entry.at:
            entry = _Limit(first.at, first.error)
    _open.append(entry)
    _arm()
    try:
        yield
    finally:
        if entry in _open:  # (alarms() ended first: it cleared them)
            _open.remove(entry)
        _arm()


def overdue() -> None:
    """Raise the error of a running limit whose time has passed (the earliest), as its alarm
    did: for use after a call that may have swallowed that error (ray.init catches Exception
    in places and only logs it; the alarm fires once)."""
    now = time.monotonic()
    due = [e for e in _open if e.at <= now]
    if due:
        raise min(due, key=lambda e: e.at).error()
