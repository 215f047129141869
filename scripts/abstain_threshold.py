#!/usr/bin/env python3
"""What ``--abstain-below`` would score at each threshold, from one quality run's records.

    .venv/bin/python scripts/quality.py --model "$(../shared/models/get-bench-model.sh)" \\
        --no-anchor --abstain-below 0 --out /tmp/q0.jsonl
    .venv/bin/python scripts/abstain_threshold.py /tmp/q0.jsonl

The records must come from a run that kept every value (``--abstain-below 0``): a value
dropped while the run was made can't be put back. For each threshold, each qwenjson output is
rescored after the library's own rule (``qwenjson.evidence.unsure``, on the rules of
``qwenjson.fields.grounding_rules``) took out the values it would have: an optional member is
left out, a nullable one becomes null, and a document that would no longer validate is kept
whole, as ``annotate`` does. Greedy decoding writes the same document at every threshold
(abstention happens after generation), so this equals a quality run per threshold.

Not a test: the scores depend on the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality

from qwenjson.evidence import unsure
from qwenjson.fields import FieldRule, Pattern, grounding_rules

THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def abstained(
    document: Any, confidence: dict[str, float], rules: dict[Pattern, FieldRule], below: float
) -> Any:
    """``document`` without the values the rule takes out at ``below``."""
    out = json.loads(json.dumps(document))
    # Only object members go (never list items), so a removal moves no other pointer.
    for pointer in confidence:
        *path, last = quality.pointer_parts(pointer)
        parent = out
        pattern: list[str | None] = []  # list indices as None, as the rules have them
        for part in path:
            pattern.append(None if isinstance(parent, list) else part)
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        if not isinstance(parent, dict):
            continue  # list items are never taken out
        rule = rules.get((*pattern, last))
        if rule is None or not unsure(parent.get(last), confidence[pointer], rule, below):
            continue
        if rule.abstain == "omit":
            del parent[last]
        elif rule.abstain == "null":
            parent[last] = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", type=Path, nargs="+", help="--out records of quality.py")
    parser.add_argument("--corpus", type=Path, default=quality.DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    cases = {c.id: c for c in quality.load_cases(args.corpus, None, None)}
    runs = [
        json.loads(line)
        for path in args.records
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    runs = [r for r in runs if r["system"] == "qwenjson" and r["id"] in cases]
    checkers = quality.Checkers()
    sources = sorted({r["source"] for r in runs})
    print(f"{'below':>6} | " + " ".join(f"{s:>10}" for s in sources) + f" | {'overall':>7}")
    for below in THRESHOLDS:
        by_source: dict[str, list[float]] = {s: [] for s in sources}
        for r in runs:
            case = cases[r["id"]]
            document = r["output"]
            if r.get("valid") and isinstance(document, dict) and r.get("confidence"):
                rules = grounding_rules(case.schema)
                candidate = abstained(document, r["confidence"], rules, below)
                if checkers(case.schema).is_valid(candidate):
                    document = candidate
            score = quality.score_document(document, case.gold, checkers(case.schema), case.input)
            by_source[r["source"]].append(score.score if score.valid else 0.0)
        every = [x for xs in by_source.values() for x in xs]
        cells = " ".join(f"{100 * sum(xs) / len(xs):>9.1f}%" for xs in by_source.values())
        print(f"{below:>6} | {cells} | {100 * sum(every) / len(every):>6.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
