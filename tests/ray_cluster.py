"""A real Ray cluster on this machine for the tests: ``ray start --head --block`` in a temp dir.

Started in its own session, so that stopping it ends exactly the processes it started (its
GCS, raylet and workers), never another Ray on the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from qwenjson.actors import RecordWorker, WorkerResult, WorkerSpec
from qwenjson.chunking import Piece
from qwenjson.merging import Found

RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ray_head(temp_dir: Path, cpus: int = 2) -> Iterator[tuple[str, int]]:
    """A head node with ``cpus`` CPUs; yields its address and its session (all its processes)."""
    port = free_port()
    log = temp_dir / "ray-start.log"
    # Ray's sockets live under its temp dir and a socket path holds at most 107 bytes: pytest's
    # own temp dirs (deeper still under pytest-xdist's workers) are too long, so a short one.
    ray_dir = Path(tempfile.mkdtemp(prefix="qwenjson-ray-"))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(RAY), "start", "--head", "--block", "--num-cpus", str(cpus),
                "--node-ip-address", "127.0.0.1", "--port", str(port),
                "--temp-dir", str(ray_dir), "--include-dashboard", "false",
                "--disable-usage-stats",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        _stop(proc)
        shutil.rmtree(ray_dir, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `ray start` (it stops what it started), then SIGKILL to whatever is left in
    its session: workers have process groups of their own."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=3)
    for pid in session_pids(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


def session_pids(session: int) -> dict[int, bytes]:
    """The processes of ``session`` (the cluster's: Ray gives workers process groups of their
    own, but they stay in the session) with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session:
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
    return found


def worker_pids(session: int) -> list[int]:
    """The pids of the cluster's RecordWorker actors (Ray names their processes ``ray::…``)."""
    return [p for p, title in session_pids(session).items() if title.startswith(b"ray::Record")]


class PoisonedWorker(RecordWorker):
    """A worker whose process dies on any text with POISON in it (like a llama.cpp crash)."""

    def run(
        self, text: str, finished: tuple[tuple[Piece, Found], ...] = (), key: int = 0
    ) -> WorkerResult:
        if "POISON" in text:
            os._exit(1)
        return super().run(text, finished, key)


def died_marker(text: str) -> Path:
    """The file that says a ``DiesAtASecondStep`` worker died on ``text`` already."""
    name = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"qwenjson-test-died-{name}"


class DiesAtASecondStep(RecordWorker):
    """A worker whose process dies at the second step of a record (a long text's second
    piece), once per text (``died_marker``): like a node lost in the middle of a document."""

    def resume(self, key: int) -> WorkerResult:
        steps, _ = self.open[key]
        marker = died_marker(steps.text)
        if steps.started is not None and not marker.exists():
            marker.touch()
            os._exit(1)
        return super().resume(key)


class OtherModelWorker(RecordWorker):
    """A worker as on a node with another model file: its plan's model sha256 is its own."""

    def __init__(self, spec: WorkerSpec | bytes, driver_version: str) -> None:
        super().__init__(spec, driver_version)
        assert self.runner is not None
        self.runner.plan = replace(self.runner.plan, model_sha256=f"other-{os.getpid()}")
