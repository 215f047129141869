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
SIGTERM are sent again by ``deferred`` (from a timer thread, while a Python handler is still
there to take them: with the default one back, a late signal would kill the process); a time
limit's alarm re-arms its own timer (``qwenjson.deadline``), which ``alarms()`` stops before it
puts the old handler back.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

__all__ = ["deferred", "in_callback", "shield"]

F = TypeVar("F", bound=Callable[..., Any])

_RETRY_S = 0.001
_shielded: set[CodeType] = set()


def shield(func: F) -> F:
    """Mark ``func`` as called back from C (ctypes): signals wait until it has returned."""
    _shielded.add(func.__code__)
    return func


def in_callback(frame: FrameType | None) -> bool:
    """Whether ``frame`` (a signal handler's) is inside a function marked with ``shield``."""
    while frame is not None:
        if frame.f_code in _shielded:
            return True
        frame = frame.f_back
    return False


def deferred(signum: int, frame: FrameType | None) -> bool:
    """Whether the handler of ``signum`` must return at once: ``frame`` is inside a shielded
    callback, and the signal comes again in 1 ms."""
    if not in_callback(frame):
        return False
    timer = threading.Timer(_RETRY_S, _send_again, (signum,))
    timer.daemon = True  # never keeps a finished process alive
    timer.start()
    return True


def _send_again(signum: int) -> None:
    # Only to a Python handler (ours, or signals_held's, which keeps it for later): once the
    # default action is back, the run no longer wants it, and it would kill the process.
    if callable(signal.getsignal(signum)):
        os.kill(os.getpid(), signum)
