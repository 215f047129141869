"""Grounding's cost: the loop's work besides llama_decode per generated token, with and without
the grounding constraint extract uses, alternating in one process (one thread, so it holds up
better than wall times when the machine is shared).

Usage: .venv/bin/python scripts/bench_grounding.py --model "$(../shared/models/get-bench-model.sh)"
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from qwenjson.engine import Engine
from qwenjson.grounding import Grounding, SourceText, grounding_rules, required_keys
from qwenjson.pipeline import prepare_schema
from qwenjson.prompt import build_messages

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def cases() -> list[tuple[str, dict[str, Any]]]:
    """The two seed cases and the first dev case of three sources (short, long, Chinese)."""
    found = []
    for name in ("seed-person", "seed-summary"):
        case = SHARED / "cases" / name
        found.append(
            (
                (case / "input.txt").read_text("utf-8"),
                json.loads((case / "schema.json").read_text()),
            )
        )
    lines = (SHARED / "corpus" / "extraction-dev" / "cases.jsonl").read_text("utf-8").splitlines()
    dev = [json.loads(line) for line in lines]
    for source in ("snips", "citations", "zh-address"):
        first = next(c for c in dev if c["source"] == source)
        found.append((first["input"], first["schema"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    with Engine(args.model, n_threads=1) as e:
        for _ in range(args.repeat):
            for text, schema in cases():
                grammar = prepare_schema(schema).compiled.grammar
                for on in (False, True):
                    extra: dict[str, Any] = {}
                    if on:
                        rules, required = grounding_rules(schema), required_keys(schema)
                        constraint = Grounding(SourceText(text.strip()), rules, required)
                        extra = {"constraint": constraint, "trace": True}
                    e._forget_from(0)  # every run evaluates its prompt afresh
                    r = e.generate(build_messages(schema, text), grammar, **extra)
                    n = max(1, r.generated_tokens)
                    model_ms = e.last_stats.model_ms
                    runs[on].append(((r.decode_ms - model_ms) / n, r.decode_ms / n, model_ms / n))
    for on in (False, True):
        loop, decode, model = (statistics.median(x[i] for x in runs[on]) for i in range(3))
        print(
            f"grounding {'on ' if on else 'off'}: work besides llama_decode {loop:.2f} ms/token; "
            f"decode {decode:.1f} ms/token (llama_decode {model:.1f}); runs {len(runs[on])}"
        )


if __name__ == "__main__":
    main()
