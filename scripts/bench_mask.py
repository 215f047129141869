"""The grammar's full mask over the vocabulary: milliseconds and peak memory by slice size.

    .venv/bin/python scripts/bench_mask.py [--model GGUF] [--slices whole,16384,8192,4096]

Inside a JSON string (the ``--each -s 'name: full name of a person'`` grammar, after
``{"items": [{"name": "Quentin``), where nearly every token is admitted and llama.cpp's
grammar keeps the most candidates alive longest, the mask is asked 20 times in slices of each
size. Each size runs in its own process, so its peak RSS (``VmHWM``) rise is its own. The
default model is SmolLM2-135M (the test model); the vocabulary's size is what matters.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = '{"items": [{"name": "Quentin'


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(model: str, size: int | None, repeat: int) -> None:
    """One slice size: print admitted count, ms per mask, peak RSS rise."""
    import llama_cpp.llama_cpp as ll
    import numpy as np

    import qwenjson.grammar_probe as gp
    from qwenjson.engine import Engine
    from qwenjson.plan import prepare_job, schema_of

    engine = Engine(model, n_threads=1)
    job = prepare_job(schema_of("name: full name of a person")[0], each=True)
    vocab = engine._vocab  # the bench reaches in: it measures one private step
    grammar = gp.parse_grammar(vocab, job.prepared.compiled.grammar)
    for token in vocab.tokenize(PREFIX.encode()):
        ll.llama_sampler_accept(grammar, token)
    probe = gp.GrammarProbe(vocab, lambda: engine.last_stats)
    gp._MASK_SLICE = size or vocab.n_vocab
    before = _hwm_mib()
    t0 = time.perf_counter()
    for _ in range(repeat):
        mask = probe.grammar_allows(grammar, probe.all_ids)
    ms = (time.perf_counter() - t0) * 1000 / repeat
    print(f"{int(np.count_nonzero(mask))} {ms:.1f} {_hwm_mib() - before:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="the GGUF [default: the test model, SmolLM2-135M]")
    p.add_argument("--slices", default="whole,16384,8192,4096")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    model = args.model
    if model is None:
        sys.path.insert(0, str(ROOT))
        from tests.grammar_engine import default_model_path

        model = str(default_model_path())
    if args.child is not None:
        child(model, args.child or None, args.repeat)
        return
    print(f"model {model}\n| slice | admitted | ms per mask | peak RSS rise |\n|---|---|---|---|")
    for name in args.slices.split(","):
        size = 0 if name == "whole" else int(name)
        argv = [sys.executable, __file__, "--model", model, "--repeat", str(args.repeat)]
        out = subprocess.run(
            [*argv, "--child", str(size)], capture_output=True, text=True, check=True
        ).stdout.split()
        print(f"| {name} | {out[0]} | {out[1]} | +{out[2]} MiB |", flush=True)


if __name__ == "__main__":
    main()
