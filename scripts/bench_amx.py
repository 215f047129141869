#!/usr/bin/env python3
"""What loading without llama.cpp's extra buffer types costs on a native AMX build.

    .venv/bin/python scripts/bench_amx.py --model "$(../shared/models/get-bench-model.sh)" \\
        --native .venv-native/bin/python [--rounds 5] [--threads 1]

On a cloud Xeon with AMX, a native llama-cpp-python build crashes in the first decode unless
models are loaded with ``use_extra_bufts = false`` (qwenjson/buildcheck.py), which also gives
up llama.cpp's weight repacking. This runs, in child processes that alternate round by round
(so a busy spell of the shared machine falls on every configuration alike):

  portable            the portable build in this interpreter, extra buffer types on (qwenjson's
                      choice there)
  portable-no-extra   the same build with them off (what repacking alone is worth)
  native-no-extra     the native build (``--native``), with them off (qwenjson's choice there)

and prints, per configuration, the median over rounds of: prompt evaluation ms per token,
unconstrained greedy decode ms per token (llama_decode one token at a time), and qwenjson's
constrained generation ms per output token on ../shared/cases/seed-person. The load average
is printed before and after. Not a test: timings depend on what else the machine runs.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT.parent / "shared" / "cases" / "seed-person"
DECODE_TOKENS = 64
FIGURES = ("prefill_ms_per_token", "decode_ms_per_token", "qwenjson_ms_per_output_token")


def child(model: str, threads: int, extra: bool) -> dict[str, Any]:
    """One configuration's figures, in this process (its own llama.cpp build)."""
    sys.path.insert(0, str(ROOT))
    import llama_cpp
    import llama_cpp.llama_cpp as ll
    import numpy as np

    from qwenjson import engine as engine_module
    from qwenjson.buildcheck import build_uses_amx
    from qwenjson.prompt import build_messages
    from qwenjson.schema import compile_schema

    engine_module._init_backend()
    params = ll.llama_model_default_params()
    params.use_extra_bufts = extra
    model_ptr = ll.llama_model_load_from_file(model.encode(), params)
    cparams = ll.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 1024, 512, 512
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = ll.llama_init_from_model(model_ptr, cparams)
    vocab = ll.llama_model_get_vocab(model_ptr)
    n_vocab = ll.llama_vocab_n_tokens(vocab)
    text = ("The quick brown fox jumps over the lazy dog. " * 12).encode()
    buf = (ll.llama_token * 512)()
    n = ll.llama_tokenize(vocab, text, len(text), buf, 512, True, False)
    start = time.perf_counter()
    assert ll.llama_decode(ctx, ll.llama_batch_get_one(buf, n)) == 0
    prefill_ms = (time.perf_counter() - start) * 1000 / n
    one = (ll.llama_token * 1)()
    start = time.perf_counter()
    for _ in range(DECODE_TOKENS):
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        one[0] = int(np.argmax(logits))
        assert ll.llama_decode(ctx, ll.llama_batch_get_one(one, 1)) == 0
    decode_ms = (time.perf_counter() - start) * 1000 / DECODE_TOKENS
    ll.llama_free(ctx)
    ll.llama_model_free(model_ptr)

    schema = json.loads((CASE / "schema.json").read_text("utf-8"))
    messages = build_messages(schema, (CASE / "input.txt").read_text("utf-8"))
    grammar = compile_schema(schema, closed_objects=True, spaced=True)
    real_choice = engine_module.use_extra_buffers
    engine_module.use_extra_buffers = lambda: extra  # type: ignore[assignment]
    try:
        with engine_module.Engine(model, n_ctx=2048, n_threads=threads) as e:
            result = e.generate(messages, grammar, max_tokens=256)
    finally:
        engine_module.use_extra_buffers = real_choice
    info = llama_cpp.llama_print_system_info().decode()
    return {
        "amx": build_uses_amx(info),
        "prefill_ms_per_token": prefill_ms,
        "decode_ms_per_token": decode_ms,
        "qwenjson_ms_per_output_token": result.decode_ms / max(1, result.generated_tokens),
        "output": result.text,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the GGUF (the Qwen2 0.5B bench model)")
    p.add_argument("--native", help="python of a venv with a native build (required)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--extra", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.model, a.threads, bool(a.extra))))
        return
    if not a.native:
        p.error("--native is required")
    configs = {
        "portable": (sys.executable, 1),
        "portable-no-extra": (sys.executable, 0),
        "native-no-extra": (a.native, 0),
    }
    print(f"load average before: {os.getloadavg()}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for r in range(a.rounds):
        for name, (python, extra) in configs.items():
            argv = [python, __file__, "--child", "--model", a.model, "--threads", str(a.threads)]
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            out = subprocess.run(
                [*argv, "--extra", str(extra)], capture_output=True, text=True, env=env
            )
            if out.returncode != 0:
                sys.exit(f"{name} failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            runs[name].append(figures)
            print(f"round {r + 1} {name}: {json.dumps(figures)}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print(f"\nmedians over {a.rounds} rounds, {a.threads} thread(s), {Path(a.model).name}:")
    print(
        f"{'':20} {'AMX':>5} {'prefill ms/tok':>15} {'decode ms/tok':>14} {'qwenjson ms/tok':>16}"
    )
    for name, figures in runs.items():
        med = {k: statistics.median(f[k] for f in figures) for k in FIGURES}
        print(
            f"{name:20} {figures[0]['amx']!s:>5} {med['prefill_ms_per_token']:15.2f} "
            f"{med['decode_ms_per_token']:14.2f} {med['qwenjson_ms_per_output_token']:16.2f}"
        )


if __name__ == "__main__":
    main()
