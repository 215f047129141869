"""A signal that comes while C is calling back into Python is put off until C has returned.

ctypes swallows an exception raised inside a Python function that C calls: it prints "Exception
ignored on calling ctypes callback function" with a traceback, and C goes on. llama.cpp's log
callback runs thousands of times while a model loads, and Python runs a signal's handler at
the next bytecode of the main thread: inside that callback, more often than not. Measured on
the bench model before this module (SIGINT or SIGTERM sent 0.3 to 0.8 s after `extract`
started, in steps of 0.1 s): 6 of 12 runs printed the traceback, went on and exited 0 with the
document, and `--total-timeout 0.1` printed the traceback too; after it, all 12 exit 130 or 143
with one `Error:` line.

So the handlers ask first: inside a function marked with ``shield`` (``in_callback``) the signal
comes again 1 ms later and the handler returns; it is acted on at the first bytecode outside
the callback, late by the rest of that C call, which no signal could cut anyway. SIGINT and
SIGTERM are sent again by ``deferred`` (from a thread, to the main thread, while a Python
handler is still there to take them: with the default one back, a late signal would kill the
process); a time limit's alarm re-arms its own timer (``qwenjson.deadline``), which ``alarms()``
stops before it puts the old handler back.

Sent once, a signal can still be missed: the sending thread needs the GIL, so it often sends
just as the main thread lets the GIL go on its way into a blocking call (``time.sleep``, a
read), and a signal that lands after the last check and before the system call starts only
runs its handler once that call returns: a CI run waited out a 10 s sleep so. So the signal is
sent again every 50 ms until a handler acts on it. A lock makes the check and the send one step
against the handler's taking it, so no copy leaves after the signal was acted on; one that
left just before is taken as that same signal, not as a second Ctrl-C (in cleanup, say while
``Engine.close`` frees the model). It goes to the handler that put it off, or to one that
keeps signals for it (``keeps_signals``: ``stream.signals_held``'s); another Python handler
installed since (Ray's, a caller's) gets one copy, the debt then paid (sent every 50 ms, Ray's
raised SystemExit in cleanup each time; never sent, a supervisor's SIGTERM went unheard); with
the default action back it is dropped (a late copy would kill the process).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, TypeVar

__all__ = ["deferred", "in_callback", "keeps_signals", "shield"]

F = TypeVar("F", bound=Callable[..., Any])

_FIRST_S = 0.001  # the first time again: the rest of one callback, at most
_AGAIN_S = 0.05  # then: a missed signal is late by this much, and idle wake-ups stay rare
_shielded: set[CodeType] = set()
# Handlers that keep a signal for later -> for which handler (the one they set aside).
_keepers: dict[Callable[..., Any], Callable[[int], Any]] = {}


@dataclass(frozen=True)
class _Debt:
    thread: int  # the thread to send it to: the main thread, where Python runs handlers
    owner: Any  # the handler that put it off


# Reentrant: a handler may run inside another's block (SIGTERM inside SIGINT's), in one thread.
_lock = threading.RLock()
_owed: dict[int, _Debt] = {}  # signal put off -> where it goes again
_taken: dict[int, float] = {}  # signal -> when one that was owed was acted on (monotonic)


def _forget() -> None:
    # A forked child has no sending thread, and a lock its parent's thread may have held.
    global _lock
    _lock = threading.RLock()
    _owed.clear()
    _taken.clear()


os.register_at_fork(after_in_child=_forget)


def shield(func: F) -> F:
    """Mark ``func`` as called back from C (ctypes): signals wait until it has returned."""
    _shielded.add(func.__code__)
    return func


def keeps_signals(holding_for: Callable[[int], Any]) -> Callable[[F], F]:
    """Mark a handler as one that keeps a signal for later, for the handler ``holding_for``
    (the signal) names: a signal put off by that one is sent to it as to the one itself."""

    def mark(handler: F) -> F:
        _keepers[handler] = holding_for
        return handler

    return mark


def in_callback(frame: FrameType | None) -> bool:
    """Whether ``frame`` (a signal handler's) is inside a function marked with ``shield``."""
    while frame is not None:
        if frame.f_code in _shielded:
            return True
        frame = frame.f_back
    return False


def deferred(signum: int, frame: FrameType | None) -> bool:
    """Whether the handler of ``signum`` must return at once: ``frame`` is inside a shielded
    callback (the signal comes again in 1 ms, then every 50 ms until acted on), or it is the
    copy sent just before the last one was acted on."""
    with _lock:
        taken = _taken.pop(signum, None)
        if taken is not None and time.monotonic() - taken < 2 * _AGAIN_S:
            return True  # its copy, delivered before the taking below: already acted on
        if in_callback(frame):
            if signum not in _owed:
                _owed[signum] = _Debt(threading.get_ident(), signal.getsignal(signum))
                try:
                    threading.Thread(target=_send_until_taken, args=(signum,), daemon=True).start()
                except BaseException:
                    del _owed[signum]
                    raise
            return True
        if _owed.pop(signum, None) is not None:
            _taken[signum] = time.monotonic()  # acted on now: no copy is sent after this
        return False


def _send_until_taken(signum: int) -> None:
    # Daemon: never keeps a finished process alive.
    time.sleep(_FIRST_S)
    while True:
        with _lock:
            debt = _owed.get(signum)
            if debt is None:
                return
            handler = signal.getsignal(signum)
            keeper = _keepers.get(handler) if callable(handler) else None
            if handler is debt.owner or (keeper is not None and keeper(signum) is debt.owner):
                signal.pthread_kill(debt.thread, signum)  # its blocking call is cut
            elif not callable(handler) or handler is signal.default_int_handler:
                del _owed[signum]  # the run is over: a late copy would kill or surprise
                return
            else:  # another's handler now: it has the signal once, as it came
                del _owed[signum]
                signal.pthread_kill(debt.thread, signum)
                return
        time.sleep(_AGAIN_S)
