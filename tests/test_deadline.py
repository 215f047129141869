"""Time limits by alarm: they stop what never returns to a clock check (a backtracking regex, a
blocked read), nest, and are no-ops outside ``alarms()``."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import time

import pytest

from qwenjson import deadline
from qwenjson.errors import TimeoutExpired
from qwenjson.validate import ecma_regex, make_validator, validation_errors

CATASTROPHIC = "^(?=a)(a|aa)+$"
SUBJECT = "a" * 60 + "b"


def _expired(name: str) -> TimeoutExpired:
    return TimeoutExpired(f"{name} ran out")


def test_a_limit_stops_a_backtracking_regex() -> None:
    started = time.monotonic()
    with (
        deadline.alarms(),
        pytest.raises(TimeoutExpired, match="outer ran out"),
        deadline.limit(0.3, lambda: _expired("outer")),
    ):
        re.search(CATASTROPHIC, SUBJECT)
    assert time.monotonic() - started < 5


def test_a_limit_stops_a_blocked_read() -> None:
    read_end, write_end = os.pipe()
    try:
        with (
            deadline.alarms(),
            pytest.raises(TimeoutExpired),
            deadline.limit(0.3, lambda: _expired("read")),
        ):
            os.read(read_end, 1)  # nobody writes
    finally:
        os.close(read_end)
        os.close(write_end)


def test_an_alarm_lost_on_its_way_comes_again() -> None:
    # One that lands just before a blocking call starts runs its handler only once the call
    # returns. Here sigtimedwait takes it without a handler; alone, it left the read blocked.
    read_end, write_end = os.pipe()
    try:
        with (
            deadline.alarms(),
            pytest.raises(TimeoutExpired),
            deadline.limit(0.01, lambda: _expired("read")),
        ):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            try:
                assert signal.sigtimedwait({signal.SIGALRM}, 30) is not None  # the lost one
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
            select.select([read_end], [], [], 20)  # nobody writes: it ends by the alarm
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_limit_that_runs_out_first_fires_and_the_outer_one_still_holds() -> None:
    with deadline.alarms():
        with (
            pytest.raises(TimeoutExpired, match="inner"),
            deadline.limit(5, lambda: _expired("outer")),
            deadline.limit(0.2, lambda: _expired("inner")),
        ):
            time.sleep(2)
        with (
            pytest.raises(TimeoutExpired, match="outer"),
            deadline.limit(0.3, lambda: _expired("outer")),
            deadline.limit(5, lambda: _expired("inner")),
        ):
            time.sleep(2)


def test_a_budget_caps_the_alarms_set_within_it() -> None:
    with (
        deadline.alarms(),
        pytest.raises(TimeoutExpired, match="budget"),
        deadline.budget(0.2, lambda: _expired("budget")),
        deadline.limit(5, lambda: _expired("limit"), within_budget=True),
    ):
        time.sleep(2)


def test_a_limit_whose_error_was_swallowed_is_overdue_until_its_block_ends() -> None:
    # ray.init catches Exception in places and only logs it: the alarm fires once, so the run
    # went on connecting long after --total-timeout.
    with deadline.alarms():
        with deadline.limit(5, lambda: _expired("outer")):
            with deadline.limit(0.1, lambda: _expired("inner")):
                deadline.overdue()  # not yet: nothing raised
                with contextlib.suppress(TimeoutExpired):  # swallowed, as Ray's start-up does
                    time.sleep(2)
                with pytest.raises(TimeoutExpired, match="inner"):
                    deadline.overdue()
            deadline.overdue()  # the inner block has ended; the outer limit still has time
        deadline.overdue()  # no limit running


def test_without_alarms_a_limit_does_nothing() -> None:
    with deadline.limit(0.05, lambda: _expired("never")):
        time.sleep(0.2)


def test_validation_of_a_backtracking_pattern_ends_with_the_budget() -> None:
    validator = make_validator({"type": "string", "pattern": CATASTROPHIC})
    ecma_regex(CATASTROPHIC)  # compiled outside the clock
    started = time.monotonic()
    with (
        deadline.alarms(),
        pytest.raises(TimeoutExpired, match="--timeout"),
        deadline.budget(0.5, lambda: _expired("--timeout")),
    ):
        validation_errors(SUBJECT, validator)
    assert time.monotonic() - started < 5
