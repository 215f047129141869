#!/usr/bin/env python3
"""Threads on a quiet machine and with cores kept busy by other processes.

    .venv/bin/python scripts/bench_threads.py --model "$(../shared/models/get-bench-model.sh)"

For 0..N-1 busy cores (a ``while True: pass`` process pinned to each), prints the prompt time
(100 tokens) and decode ms/token with every fixed thread count, and with the engine's default,
which leaves out the cores other processes keep busy (``qwenjson.cpu``). Linux only (pins
processes to CPUs). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: qwenjson needn't be installed

from qwenjson.cpu import allowed_cpus  # noqa: E402
from qwenjson.engine import Engine  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, again and again. " * 40


def measure(model: str, threads: int | None, steps: int) -> tuple[float, float, tuple[int, int]]:
    """(prompt ms for 100 tokens, decode ms/token, threads used) on a fresh engine."""
    with Engine(model, n_ctx=1024, n_threads=threads) as e:
        e._adapt_threads()  # what generate() does first
        tokens = e.tokenize(TEXT.encode())[:100]
        t0 = time.perf_counter()
        e._prefill(tokens, 0)
        prompt_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        for t in tokens[:steps]:
            e._decode([t])
        decode_ms = (time.perf_counter() - t0) * 1000.0 / steps
        return prompt_ms, decode_ms, (e.n_threads, e.n_threads_batch)


def _hog(cpu: int) -> subprocess.Popen[bytes]:
    """Another process keeping ``cpu`` busy."""

    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(proc.pid, {cpu})
    return proc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="the GGUF to run")
    p.add_argument("--steps", type=int, default=20, help="decode steps per measurement")
    args = p.parse_args()
    if not hasattr(os, "sched_setaffinity"):
        print("needs Linux (pins processes to CPUs)", file=sys.stderr)
        return 2
    cpus = allowed_cpus()
    print(f"cores {len(cpus)}, load average {os.getloadavg()[0]:.2f}")
    for busy in range(len(cpus)):
        hogs = [_hog(cpu) for cpu in cpus[len(cpus) - busy :]]
        try:
            time.sleep(0.5)
            for threads in [*range(1, len(cpus) + 1), None]:
                prompt_ms, decode_ms, used = measure(args.model, threads, args.steps)
                label = f"{threads} threads" if threads else f"default {used}"
                print(
                    f"{busy} busy core(s), {label:>14}: prompt {prompt_ms:6.0f} ms, "
                    f"decode {decode_ms:5.1f} ms/token"
                )
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
