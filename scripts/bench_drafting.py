#!/usr/bin/env python3
"""Drafts from the prompt (``qwenjson.drafting``): what a batch costs, and what drafting saves.

    .venv/bin/python scripts/bench_drafting.py --model "$(../shared/models/get-bench-model.sh)"

First, the price of verifying a draft: llama_decode of k tokens (logits for the last one, and
for all k) in single-token decodes, after a short prompt and after bench.py's ~1,650-token one.
Then every case of ``scripts/bench.py``, with drafting on and off in turn (``--repeat`` times,
median): decode time, llama_decode calls, tokens drafted and kept, and whether the outputs are
the same. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: qwenjson needn't be installed
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402

from qwenjson import drafting  # noqa: E402


def batch_costs(side: bench.SideB, case: bench.Case, repeat: int) -> dict[tuple[int, int], float]:
    """Median ms of llama_decode for k tokens with ``outputs`` rows of logits, after the case's
    prompt (the same k tokens evaluated and dropped each time)."""
    e = side.engine
    tokens = e.prompt_tokens(bench.build_messages(case.schema, case.text, case.instruction))
    e._forget_from(0)
    e._prefill(tokens, 0)
    base = len(e._kv)
    filler = tokens[-12:-2]
    runs: dict[tuple[int, int], list[float]] = {}
    for _ in range(repeat):
        for k in range(1, 9):
            for outputs in sorted({1, k}):
                e._forget_from(base)
                t0 = time.perf_counter()
                e._decode(filler[:k], outputs=outputs)
                runs.setdefault((k, outputs), []).append((time.perf_counter() - t0) * 1000.0)
    e._forget_from(0)
    return {key: statistics.median(v) for key, v in runs.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="the GGUF to run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="runs of each case, on and off in turn")
    p.add_argument(
        "--min-match",
        type=int,
        default=drafting.MIN_MATCH,
        help=f"draft after matches of this many tokens (qwenjson's: {drafting.MIN_MATCH})",
    )
    args = p.parse_args(argv)
    drafting.MIN_MATCH = args.min_match

    side = bench.SideB(args.model, args.threads, args.threads, 4096, None)
    side.engine._watch = None  # fixed threads: a busy spell must not change them mid-run
    cases = bench.load_cases(side.engine.count_tokens)
    by_name = {c.name: c for c in cases}
    side.run(cases[0])  # warm up

    print("llama_decode of k tokens, in single-token decodes (logits for the last / for all k)")
    for name in ("seed-summary", "long-input"):
        case = by_name[name]
        costs = batch_costs(side, case, 7)
        one = costs[(1, 1)]
        row = "  ".join(
            f"k={k}: {costs[(k, 1)] / one:.2f}/{costs[(k, k)] / one:.2f}" for k in range(2, 9)
        )
        print(f"  after {name} ({one:.1f} ms for k=1): {row}")

    print("\ncase             decode ms on / off      calls on / off  drafted  kept  same output")
    for case in cases:
        runs: dict[bool, list[tuple[float, int, int, int, str]]] = {True: [], False: []}
        for _ in range(args.repeat):
            for drafts in (True, False):
                side.engine.draft_from_prompt = drafts
                r = side.run(case)
                st = side.engine.last_stats
                runs[drafts].append(
                    (r.decode_ms, st.decode_calls, st.drafted, st.draft_hits, r.text)
                )
        on = statistics.median(x[0] for x in runs[True])
        off = statistics.median(x[0] for x in runs[False])
        _, calls_on, drafted, kept, text_on = runs[True][0]
        calls_off, text_off = runs[False][0][1], runs[False][0][4]
        same = "yes" if text_on == text_off else "no"
        print(
            f"{case.name:<16} {on:7.0f} / {off:7.0f} = {on / off:.2f}x  "
            f"{calls_on:5d} / {calls_off:<5d}  {drafted:7d}  {kept:4d}  {same}"
        )
    side.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
