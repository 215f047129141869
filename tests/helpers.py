"""Plain helpers several test modules share: running the command, and data for engine tests.

Fixtures live in ``tests/conftest.py`` and fakes in ``tests/fakes.py``; this module holds what
is imported rather than injected. The test model is found one way only:
``tests.grammar_engine.default_model_path()`` (the ``smollm2`` fixture wraps it).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from qwenjson.generation import Message
from tests.grammar_engine import default_model_path


@dataclass
class Run:
    """One in-process run of the command line (the ``run`` fixture's result)."""

    code: int
    out: str
    err: str


def qwenjson(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    """``python -m qwenjson ARGS`` as a child process, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "qwenjson", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


def extract_argv(*args: str) -> list[str]:
    """``python -m qwenjson extract`` on the test model with one thread, then ``args``.

    One thread: CI machines have two cores and llama.cpp's threads spin, so a second thread
    competing with another process makes every step much slower.
    """
    model = str(default_model_path())
    return [sys.executable, "-m", "qwenjson", "extract", "-m", model, "--threads", "1", *args]


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    stdin: IO[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]


# A person on SmolLM2, and texts for it, for the real batch and signal tests.
REAL_PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
TEXTS = [
    "Alice Martin is 34 and lives in Lyon.",
    "Bob Stone, 51, plumber in Leeds.",
    "李明，28岁，住在北京。",
    "Carla Diaz is nineteen years old.",
    "Dev Patel (age 45) moved to Pune.",
]


def qwenjson_argv(*args: str, schema: Any = REAL_PERSON, max_tokens: int = 48) -> list[str]:
    """``python -m qwenjson extract`` on SmolLM2 with a small context and budget, one thread."""
    return extract_argv(
        "--schema", json.dumps(schema), "--ctx", "512", "--max-tokens", str(max_tokens), *args
    )


def _sigint_as_on_a_terminal() -> None:
    # A shell without job control starts background commands (`pytest … &`, as a CI script
    # may) with SIGINT ignored, and Python keeps an ignored SIGINT ignored: the child would
    # then finish its batch and exit 0. The tests ask what Ctrl-C does, so the child gets the
    # default disposition a terminal gives it (measured: under `bash -c '… & wait'` the SIGINT
    # test exited 0 after all 20 lines; in the foreground, 130 after one).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def running(*args: str) -> Iterator[Proc]:
    """``qwenjson extract ARGS`` as a child with piped stdin, stdout and stderr; killed at exit."""
    proc = subprocess.Popen(
        qwenjson_argv(*args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_sigint_as_on_a_terminal,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        yield Proc(proc, proc.stdin, proc.stdout, proc.stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=300)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``path`` holds ``n`` newlines (or the process ends)."""
    while path.read_bytes().count(b"\n") < n and proc.poll() is None:
        time.sleep(0.02)


# A hand-written grammar and prompt for the engine's own tests (no compiler involved).
PERSON_GRAMMAR = r"""root ::= "{\"name\":" string ",\"age\":" int rest
rest ::= ",\"hobbies\":" list ",\"status\":" status "}"
list ::= "[" (string ("," string)*)? "]"
string ::= "\"" char{0,40} "\""
char ::= [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
int ::= "0" | "-"? [1-9] [0-9]{0,2}
status ::= "\"active\"" | "\"inactive\"" | "\"retired\""
"""

PERSON_MESSAGES: list[Message] = [
    {
        "role": "system",
        "content": "Extract the person from the text as JSON with name, age, hobbies, status.",
    },
    {"role": "user", "content": "Li Ming is 28 years old and likes reading and running."},
]
