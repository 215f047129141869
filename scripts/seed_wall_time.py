#!/usr/bin/env python3
"""Wall time of one extraction, command against command: qwenjson vs llama-cpp-python.

    .venv/bin/python scripts/seed_wall_time.py --model "$(../shared/models/get-bench-model.sh)"

Runs, in one run and alternating (so machine load hits both alike), fresh processes of
  (a) ``python -c`` with llama-cpp-python: ``Llama(model)`` (loaded by qwenjson's
      ``load_llama``, which on an AMX build turns off the extra buffer types that crash it) then
      ``create_chat_completion(messages, response_format={"type": "json_object", "schema": …},
      temperature=0)``, with the same messages qwenjson sends;
  (b) ``qwenjson extract --schema CASE/schema.json --model MODEL < CASE/input.txt``,
and prints each one's output and wall time (process start to exit), median of --repeat runs.
Not a test: the figures depend on the machine (the load average is printed first).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT.parent / "shared" / "cases"

LLAMA_CPP_PYTHON = """
import json, sys
from qwenjson.buildcheck import load_llama
from qwenjson.prompt import build_messages
schema = json.load(open(sys.argv[2], encoding="utf-8"))
text = open(sys.argv[3], encoding="utf-8").read()
llm = load_llama(sys.argv[1], n_ctx=4096, n_threads=int(sys.argv[4]), verbose=False)
out = llm.create_chat_completion(
    build_messages(schema, text),
    response_format={"type": "json_object", "schema": schema},
    temperature=0.0,
    max_tokens=1024,
)
print(out["choices"][0]["message"]["content"])
"""


def timed(cmd: list[str], stdin: bytes | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{cmd[:3]} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
    return wall, r.stdout.decode().strip()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True)
    p.add_argument("--case", default="seed-person")
    p.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 4))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    case = CASES / args.case
    schema, text = case / "schema.json", case / "input.txt"
    print(f"load average: {os.getloadavg()[0]:.2f}; threads {args.threads}; case {args.case}")
    a_cmd = [
        sys.executable,
        "-c",
        LLAMA_CPP_PYTHON,
        args.model,
        str(schema),
        str(text),
        str(args.threads),
    ]
    b_cmd = [
        sys.executable,
        "-m",
        "qwenjson",
        "extract",
        "--schema",
        str(schema),
        "--model",
        args.model,
        "--threads",
        str(args.threads),
        "--quiet",
    ]
    walls: dict[str, list[float]] = {"a": [], "b": []}
    outs: dict[str, str] = {}
    for _ in range(args.repeat):
        wall, outs["a"] = timed(a_cmd)
        walls["a"].append(wall)
        wall, outs["b"] = timed(b_cmd, stdin=text.read_bytes())
        walls["b"].append(wall)
    a, b = statistics.median(walls["a"]), statistics.median(walls["b"])
    print(f"(a) llama-cpp-python create_chat_completion: {a:6.2f} s  {outs['a']}")
    print(f"(b) qwenjson extract:                        {b:6.2f} s  {outs['b']}")
    print(
        f"ratio b/a: {b / a:.2f}   (all runs a: {[round(x, 2) for x in walls['a']]}, "
        f"b: {[round(x, 2) for x in walls['b']]})"
    )
    json.loads(outs["b"])


if __name__ == "__main__":
    main()
