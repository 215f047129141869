"""Batch versus one process per record: what one model load and prefix reuse save.

    .venv/bin/python scripts/bench_batch.py --model PATH.gguf [--records 10] [--threads N]

Runs the same records through ``qwenjson extract --jsonl`` once, then through one
``qwenjson extract`` per record, and through ``--jsonl --checkpoint`` (fsync per record);
prints wall-clock seconds and records per second for each, and whether the outputs agree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
TEXTS = [
    "Alice Martin is 34 and lives in Lyon.",
    "Bob Stone, 51, works as a plumber in Leeds.",
    "李明，28岁，住在北京。",
    "Carla Diaz is nineteen years old and studies in Madrid.",
    "Dev Patel (age 45) moved to Pune last year.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    texts = [TEXTS[i % len(TEXTS)] for i in range(args.records)]
    base = [sys.executable, "-m", "qwenjson", "extract", "-s", json.dumps(SCHEMA)]
    base += ["--model", args.model, "--max-tokens", "64", "--quiet"]
    if args.threads:
        base += ["--threads", str(args.threads)]
    data = "".join(t + "\n" for t in texts).encode()

    t0 = time.perf_counter()
    batch = subprocess.run([*base, "--jsonl"], input=data, capture_output=True, check=True)
    t_batch = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        t0 = time.perf_counter()
        with out.open("ab") as sink:
            subprocess.run(
                [*base, "--jsonl", "--checkpoint", str(Path(tmp) / "ckpt")],
                input=data,
                stdout=sink,
                check=True,
            )
        t_ckpt = time.perf_counter() - t0
        ckpt_out = out.read_bytes()

    t0 = time.perf_counter()
    singles = [
        subprocess.run(base, input=t.encode(), capture_output=True, check=True).stdout
        for t in texts
    ]
    t_single = time.perf_counter() - t0

    n = args.records
    for label, secs in (
        ("--jsonl (one process)", t_batch),
        ("--jsonl --checkpoint", t_ckpt),
        ("one process per record", t_single),
    ):
        print(f"{label:<26} {secs:7.2f} s  {n / secs:6.2f} records/s")
    print(
        f"outputs agree: batch == checkpointed: {batch.stdout == ckpt_out}; "
        f"batch == per-record runs: {batch.stdout == b''.join(singles)}"
    )


if __name__ == "__main__":
    main()
