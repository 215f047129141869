"""The local ``--jsonl`` batch against the same batch on a Ray cluster, and Ray's cost per record.

    .venv/bin/python scripts/bench_ray.py --model "$(../shared/models/get-bench-model.sh)" \\
        [--records 50] [--local-threads 2] [--actors 2] [--actor-threads 1]

1. ``--records`` short texts on a private local Ray cluster (``--ray local``'s code path:
   ``connect("local")``, ``RayExecutor``, ``run_batch``), ``--actors`` actors × ``--actor-threads``.
2. The same with ``qwenjson extract --jsonl --threads 2`` (one process, one model).

For each: records per second in the steady state (from the first record's output to the last's,
so model loads and cluster start-up are left out) and end to end (with them). For Ray, from each
record's timestamps (sent, started and ended on its actor, received; one machine, one clock):
the overhead Ray adds to a record (scheduling, serialisation, the round trip: the time between
the actor being free for it and its result being back, minus the extraction) as a share of the
mean extraction time, and each actor's own throughput, from which the scaling to N machines is
estimated. Checks that both runs print the same bytes. The load average is printed before and
after: figures taken while other jobs run are not the machine's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time

from qwenjson.actors import RayExecutor, worker_spec
from qwenjson.batch import run_batch
from qwenjson.cluster import connect
from qwenjson.pipeline import ExtractOptions
from qwenjson.plan import Plan
from qwenjson.records import BatchOptions
from qwenjson.stream import LineOutput

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "maxLength": 40},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
NAMES = ["Alice Martin", "Bob Stone", "Carla Diaz", "Dev Patel", "Eva Novak", "李明", "王芳"]
CITIES = ["Lyon", "Leeds", "Madrid", "Pune", "Brno", "北京", "上海"]
MAX_TOKENS = 64
CTX = 4096  # the CLI's --ctx default: the local run's too


def texts(n: int) -> list[str]:
    """``n`` short, distinct records (English and Chinese)."""
    out = []
    for i in range(n):
        name, city, age = NAMES[i % len(NAMES)], CITIES[(i * 3) % len(CITIES)], 18 + (i * 7) % 60
        if name[0] > "z":
            out.append(f"{name}，{age}岁，住在{city}。")
        else:
            out.append(f"{name} is {age} and lives in {city}.")
    return out


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def run_local(model: str, data: bytes, threads: int) -> tuple[bytes, float, float]:
    """stdout, end-to-end seconds, steady-state seconds (first output line to last)."""
    argv = [sys.executable, "-m", "qwenjson", "extract", "-s", json.dumps(SCHEMA), "--model"]
    argv += [model, "--max-tokens", str(MAX_TOKENS), "--quiet", "--jsonl"]
    argv += ["--threads", str(threads)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data)
    proc.stdin.close()
    lines, stamps = [], []
    for line in proc.stdout:
        lines.append(line)
        stamps.append(time.perf_counter())
    if proc.wait() != 0:
        raise SystemExit(f"the local run failed (exit {proc.returncode})")
    return b"".join(lines), time.perf_counter() - started, stamps[-1] - stamps[0]


class _Stamped(io.BytesIO):
    """The output, with the time each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    def flush(self) -> None:
        self.stamps.append(time.perf_counter())


def run_ray(
    model: str, data: bytes, actors: int, threads: int
) -> tuple[bytes, float, float, RayExecutor]:
    """stdout, end-to-end seconds, steady-state seconds, and the executor (its timings)."""
    plan = Plan(SCHEMA, "", CTX, ExtractOptions(max_tokens=MAX_TOKENS))
    spec = worker_spec(plan, model=model, threads=threads, prompt_threads=threads)
    out = _Stamped()
    started = time.perf_counter()
    with connect("local", num_cpus=actors * threads) as cluster:
        executor = RayExecutor(cluster, spec, actors=actors, keep_timings=True)
        try:
            run_batch(data.splitlines(), executor, BatchOptions(), output=LineOutput(out))
        finally:
            executor.close()
    return out.getvalue(), time.perf_counter() - started, out.stamps[-1] - out.stamps[0], executor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .gguf (the bench model)")
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--local-threads", type=int, default=2)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--actor-threads", type=int, default=1)
    args = parser.parse_args()
    n = args.records
    data = "".join(t + "\n" for t in texts(n)).encode()
    print(f"before: {load()}", flush=True)
    # Ray first: its overhead is a ratio measured on the actors, worth having even when the
    # local run (two spinning threads: slow on a loaded machine) is cut short.
    ray_out, ray_wall, ray_steady, executor = run_ray(
        args.model, data, args.actors, args.actor_threads
    )
    timings = executor.timings or []
    extraction = statistics.mean(t.extraction for t in timings)
    overhead = statistics.mean(t.overhead for t in timings)
    worst = max(t.overhead for t in timings)
    ray_name = f"ray, {args.actors} actors x {args.actor_threads} thread(s)"
    print(f"{n} records, --max-tokens {MAX_TOKENS}, model {os.path.basename(args.model)}")
    print(f"{ray_name}: {(n - 1) / ray_steady:.2f} records/s steady, {n / ray_wall:.2f} end to end")
    print(
        f"ray per record: extraction {extraction * 1000:.0f} ms (mean, on the actor), overhead "
        f"{overhead * 1000:.1f} ms mean, {worst * 1000:.1f} ms worst = "
        f"{100 * overhead / extraction:.2f}% of a record's time (target <= 5%)"
    )
    per_actor = 1 / extraction
    print(
        f"per actor: {per_actor:.2f} records/s; estimate for N machines of C cores with one "
        f"{args.actor_threads}-thread actor per core: N x C x {per_actor:.2f} x "
        f"(1 - {overhead / extraction:.3f}) records/s (an estimate, not a measurement)",
        flush=True,
    )
    print(f"after ray: {load()}", flush=True)
    local_out, local_wall, local_steady = run_local(args.model, data, args.local_threads)
    print(f"after local: {load()}")
    print(f"same output bytes: {local_out == ray_out}")
    rows = [
        (f"local --jsonl, {args.local_threads} threads", local_steady, local_wall),
        (ray_name, ray_steady, ray_wall),
    ]
    print(f"{'':34} {'records/s steady':>17} {'records/s end to end':>21}")
    for name, steady, wall in rows:
        print(f"{name:34} {(n - 1) / steady:17.2f} {n / wall:21.2f}")


if __name__ == "__main__":
    main()
