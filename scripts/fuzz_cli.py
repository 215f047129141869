"""Fuzz the command line for longer than the suite does (tests/test_fuzz_cli.py runs 40 cases).

Usage: python scripts/fuzz_cli.py --examples 2000 [--seed 1]

Random schemas, inputs, JSONL records and option combinations (see tests/fuzz_cli.py) run through
``qwenjson extract`` in this process on the SmolLM2 test model. Unlike the suite it doesn't stop
at the first problem: it prints how many cases ran, their exit codes, and each distinct problem
with the first case that showed it; exit 1 if there was any.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: qwenjson and tests needn't be installed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="cases to run")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    args = parser.parse_args()

    from hypothesis import HealthCheck, given, seed, settings

    from tests.fuzz_cli import Case, SharedModel, cases, problems, run_case
    from tests.grammar_engine import default_model_path

    os.environ.pop("QWENJSON_DEBUG", None)  # internal errors are reported, not raised
    model = SharedModel(default_model_path())
    codes: Counter[int] = Counter()
    found: dict[str, Case] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp  # no prompt-cache files in the user's ~/.cache

        @seed(args.seed)
        @settings(
            max_examples=args.examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(cases(Path(tmp)))
        def fuzz(case: Case) -> None:
            outcome = run_case(case, Path(tmp), model)
            codes[outcome.code] += 1
            try:
                seen = problems(case, outcome)
            except Exception as e:  # a bug of the checker's: note it, go on
                seen = [f"the checker failed: {type(e).__name__}: {e}"]
            for problem in seen:
                if problem not in found:
                    found[problem] = case
                    print(f"problem: {problem}\n  case: {case!r}\n", file=sys.stderr, flush=True)
            total = sum(codes.values())
            if total % 250 == 0:
                print(f"{total} cases, {len(found)} problem(s)", file=sys.stderr, flush=True)

        try:
            fuzz()
        except KeyboardInterrupt:  # Ctrl-C: the summary of what ran so far
            print("interrupted", file=sys.stderr)
    model.discard()
    total = sum(codes.values())
    spread = ", ".join(f"exit {code}: {n}" for code, n in sorted(codes.items()))
    print(f"{total} cases in {time.monotonic() - started:.0f} s ({spread})")
    print(f"{len(found)} distinct problem(s)")
    for problem, case in found.items():
        print(f"- {problem}\n  first seen in: {case!r}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
