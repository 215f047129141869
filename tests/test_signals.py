"""Signals and crashes on the real model, through ``python -m qwenjson`` subprocesses.

kill -9 mid-batch then a ``--checkpoint`` rerun loses and duplicates nothing; ``| head -1``
(SIGPIPE) exits 141 quietly; SIGINT and SIGTERM exit 130 and 143 with whole lines on stdout.
Waiting for output is done by reading pipes and files, never by timing assertions.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from qwenjson.errors import EXIT_SIGINT, EXIT_SIGTERM
from tests.helpers import REAL_PERSON, TEXTS, qwenjson_argv, running, wait_for_lines

pytestmark = pytest.mark.model

EXIT_SIGPIPE = 141


def records(n: int) -> bytes:
    rows = [{"id": i, "text": TEXTS[i % len(TEXTS)]} for i in range(1, n + 1)]
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


@pytest.mark.slow
def test_kill_9_then_checkpoint_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = records(8)
    (tmp_path / "in.jsonl").write_bytes(data)
    argv = qwenjson_argv(
        "--jsonl", "--field", "text", "--input", str(tmp_path / "in.jsonl"),
        "--checkpoint", str(tmp_path / "ckpt"),
    )  # fmt: skip
    # The reference: the same batch, uninterrupted.
    whole = subprocess.run(
        qwenjson_argv("--jsonl", "--field", "text"), input=data, capture_output=True, timeout=600
    )
    assert whole.returncode == 0, whole.stderr.decode()
    assert len(whole.stdout.splitlines()) == 8

    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    kills = 0
    for stop_after in (2, 5):
        with out.open("ab") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE)
            wait_for_lines(out, stop_after, proc)
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no handler runs, no cleanup
                kills += 1
            proc.wait(timeout=300)
            assert proc.stderr is not None
            proc.stderr.close()
    assert kills >= 1  # at least one run really died mid-batch
    with out.open("ab") as sink:
        rerun = subprocess.run(argv, stdout=sink, stderr=subprocess.PIPE, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert out.read_bytes() == whole.stdout
    ids = [json.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert ids == list(range(1, 9))


def test_head_1_closes_the_pipe_and_qwenjson_exits_141_quietly() -> None:
    with running("--jsonl") as p:
        p.stdin.write(TEXTS[0].encode() + b"\n")
        p.stdin.flush()
        first = p.stdout.readline()  # what `head -1` reads, then it exits
        p.stdout.close()
        # The rest only now, so a record's line is surely written after the reader left (all
        # of them at once could be written, and the run end, before `head` closed the pipe).
        with contextlib.suppress(BrokenPipeError):
            p.stdin.write(b"".join(t.encode() + b"\n" for t in TEXTS[1:]))
            p.stdin.close()
        code = p.popen.wait(timeout=300)
        err = p.stderr.read()
    assert code == EXIT_SIGPIPE
    assert err == b""  # no traceback, no "Exception ignored", no error line
    jsonschema.Draft202012Validator(REAL_PERSON).validate(json.loads(first))


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [
        (signal.SIGINT, EXIT_SIGINT, b"Error: interrupted\n"),
        (signal.SIGTERM, EXIT_SIGTERM, b"Error: terminated\n"),
    ],
)
def test_sigint_and_sigterm_stop_cleanly_with_whole_lines(
    signum: signal.Signals, code: int, message: bytes
) -> None:
    with running("--jsonl") as p:
        p.stdin.write(b"".join(t.encode() + b"\n" for t in TEXTS * 4))
        p.stdin.close()
        first = p.stdout.readline()  # the model is loaded and the batch under way
        p.popen.send_signal(signum)
        rest = p.stdout.read()
        assert p.popen.wait(timeout=300) == code
        err = p.stderr.read()
    assert err == message
    out = first + rest
    assert out.endswith(b"\n")
    lines = out.splitlines()
    assert 1 <= len(lines) < len(TEXTS) * 4
    for line in lines:
        jsonschema.Draft202012Validator(REAL_PERSON).validate(json.loads(line))


_PIPE_SCRIPT = """
import fcntl, os, signal, sys, threading, time
from qwenjson.stream import signals_held, write_whole

r, w = os.pipe()
flags = fcntl.fcntl(w, fcntl.F_GETFL)
fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
try:
    while True:
        os.write(w, b"x" * 4096)
except BlockingIOError:
    pass
fcntl.fcntl(w, fcntl.F_SETFL, flags)
size, reader, handler = int(sys.argv[1]), sys.argv[2], sys.argv[3]
got = []


def read() -> None:
    if reader == "never":
        return
    if reader == "late":
        time.sleep(1.5)
        while sum(map(len, got)) < 65536 + size:
            got.append(os.read(r, 65536))
        return
    time.sleep(0.3)
    got.append(os.read(r, 4096))  # one page's room, then (with "stops") no more
    if reader == "drains":
        time.sleep(1.0)
        while sum(map(len, got)) < 65536 + size:
            got.append(os.read(r, 65536))


class Stop(Exception):
    pass


calls = []


def on_signal(signum, frame):
    calls.append(signum)
    if handler == "raises":
        raise Stop


threading.Thread(target=read, daemon=True).start()
signal.signal(signal.SIGTERM, on_signal)
threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGTERM)).start()
try:
    with signals_held():
        write_whole(os.fdopen(w, "wb"), b"y" * size)
    time.sleep(0.2)
    print("written", len(calls), sum(map(len, got)) - 65536)
except Stop:
    print("stopped", len(calls))
"""


@pytest.mark.parametrize(
    ("size", "reader", "handler", "expected"),
    [
        # A line longer than PIPE_BUF, half out when the reader stopped: one SIGTERM waited
        # for ever (a second was needed, and --total-timeout sends one).
        (5001, "stops", "raises", "stopped 1"),
        # A line with nothing out yet: given up at once.
        (100, "never", "raises", "stopped 1"),
        # A handler that returns (a time limit's alarm with nothing due): the write goes on and
        # the line is whole (it was an OutputError, exit 9, though stdout was fine).
        (5001, "drains", "returns", "written 1 5001"),
        (100, "late", "returns", "written 1 100"),
    ],
)
def test_a_held_signal_is_acted_on_while_a_pipe_takes_nothing(
    size: int, reader: str, handler: str, expected: str
) -> None:
    r = subprocess.run(
        [sys.executable, "-c", _PIPE_SCRIPT, str(size), reader, handler],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == expected


# A real SIGINT, sent from inside the import of the command line: the second a small CPU spends
# importing Typer, Rich and jsonschema before qwenjson.cli.main installs its handlers.
_SIGINT_DURING_IMPORT = """
import os, signal, sys
class SigintOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "qwenjson.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, SigintOnImport())
from qwenjson.launch import main
main()
"""


def test_ctrl_c_while_the_command_line_is_imported_is_one_error_line() -> None:
    r = subprocess.run(
        [sys.executable, "-c", _SIGINT_DURING_IMPORT, "extract", "--help"],
        capture_output=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout, r.stderr) == (EXIT_SIGINT, b"", b"Error: interrupted\n")
