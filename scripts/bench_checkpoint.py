"""What resuming a long checkpointed batch costs: reading its checkpoint.

    .venv/bin/python scripts/bench_checkpoint.py [--records 1000000] [--dir DIR]

Writes a checkpoint of N finished records (as ``Checkpoint.commit`` writes them, one write for
all), then opens it as a rerun does; prints the file's size, the seconds the open took, and
(in a second open, under tracemalloc, which slows it) the peak memory Python allocated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from qwenjson.checkpoint import Checkpoint


def write(path: Path, records: int) -> None:
    """A checkpoint of ``records`` finished records, with output-file marks."""
    checkpoint = Checkpoint(path, "job")
    checkpoint.open()
    assert checkpoint.fd is not None
    lines = (
        json.dumps(
            {
                "line": i,
                "input": hashlib.md5(str(i).encode()).hexdigest(),  # 16 bytes, as logged
                "failed": 0,
                "out": [2049, 1234567, 120 * i],
                "errors": None,
            },
            separators=(",", ":"),
        )
        + "\n"
        for i in range(1, records + 1)
    )
    os.write(checkpoint.fd, "".join(lines).encode())
    checkpoint.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "ckpt"
        write(path, args.records)
        print(f"checkpoint: {args.records:,} records, {path.stat().st_size / 2**20:.1f} MiB")
        started = time.perf_counter()
        checkpoint = Checkpoint(path, "job")
        resume = checkpoint.open()
        checkpoint.close()
        print(f"open: {time.perf_counter() - started:.2f} s, resumes after line {resume.line:,}")
        tracemalloc.start()
        checkpoint = Checkpoint(path, "job")
        checkpoint.open()
        checkpoint.close()
        _, peak = tracemalloc.get_traced_memory()
        print(f"open: peak {peak / 2**20:.1f} MiB allocated (of it, 16 bytes a record kept)")


if __name__ == "__main__":
    main()
