"""Messages on stderr (``qwenjson.console``): what a stderr that is unusual does to them."""

from __future__ import annotations

import io
import os
import resource
import sys

import pytest

from qwenjson import console


class _Interrupted(io.StringIO):
    """A stderr whose first write is cut short by a signal's exception (SIGTERM while its
    reader is slow)."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = False

    def write(self, text: str) -> int:
        if not self.cut:
            self.cut = True
            raise KeyboardInterrupt
        return super().write(text)


def test_a_message_cut_short_by_a_signal_is_not_written_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The cut message stayed in Rich's buffer and went out, whole, before the next one.
    target = _Interrupted()
    monkeypatch.setattr(sys, "stderr", target)
    with pytest.raises(KeyboardInterrupt):
        console.error("the long message")
    console.error("terminated")
    assert target.getvalue() == "Error: terminated\n"


def test_a_stderr_past_descriptor_1023_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # A library caller's stderr on a pipe at a high descriptor: select() refused it
    # (ValueError, not caught), the message was lost with an exception.
    high = 1024  # the first descriptor select() refuses
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= high:
        pytest.skip(f"the hard limit on open files ({hard}) is below descriptor {high}")
    if soft != resource.RLIM_INFINITY and soft <= high:
        resource.setrlimit(resource.RLIMIT_NOFILE, (high + 1, hard))
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, high)
    try:
        with os.fdopen(high, "w", closefd=False) as pipe:
            monkeypatch.setattr(sys, "stderr", pipe)
            console.error("hello")
            monkeypatch.undo()
        assert os.read(read_fd, 100) == b"Error: hello\n"
    finally:
        for fd in (read_fd, write_fd, high):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_messages_reach_stderr_through_nested_rich_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Live of another console around one of ours: one level looked through, the message
    # went into our own proxy and round again, without end.
    from rich.console import Console
    from rich.file_proxy import FileProxy

    real = io.StringIO()
    inner = FileProxy(console.stderr, real)
    monkeypatch.setattr(sys, "stderr", FileProxy(Console(file=io.StringIO()), inner))  # type: ignore[arg-type]
    assert console._stderr_now() is real
