#!/usr/bin/env python3
"""Does the grammar take every valid document? MaskBench's valid instances, judged by llama.cpp.

    .venv/bin/python scripts/maskbench.py /path/to/maskbench/data
    .venv/bin/python scripts/maskbench.py DATA --only Github_easy/o42304 --corpus CORPUS_DIR

DATA is MaskBench's ``maskbench/data`` directory (guidance-ai/jsonschemabench), whose files are
named ``<subset>---<corpus file>``. For every one whose schema is in the corpus (default
``../shared/corpus/jsonschemabench``) and compiles, each instance MaskBench calls valid and
qwenjson's validator accepts is written in canonical form (``tests/grammar_engine.canonical_json``)
and must be accepted by the exact grammar, ``compile_schema(schema)``; those with no key the
extract profile leaves out must also be accepted, spaced, by ``closed_objects=True,
spaced=True``. Prints counts per subset and the instances refused.

Exit status: 0, or 1 when a valid instance was refused or a compile crashed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: qwenjson needn't be installed
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "jsonschemabench"


def load_coverage_script() -> ModuleType:
    """``scripts/coverage.py``, whose loader gives the one copy of the engine code."""
    path = Path(__file__).with_name("coverage.py")
    spec = importlib.util.spec_from_file_location("qwenjson_coverage_script", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"can't load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


COLUMNS = (
    "schemas",
    "compiled",
    "valid",
    "not-valid",
    "unrepr.",
    "exact",
    "refused",
    "extract",
    "refused",
)


def row(results: Iterable[Any]) -> list[int]:
    """One table row: the figures COLUMNS name, summed over ``results``."""
    rs = list(results)
    compiled = [r for r in rs if r.status == "compiled"]
    return [
        len(rs),
        len(compiled),
        sum(len(r.bench.instances) for r in compiled),
        sum(r.invalid_here for r in compiled),
        sum(r.unrepresentable for r in compiled),
        sum(r.checked for r in compiled),
        sum(r.refused for r in compiled),
        sum(r.extract_checked for r in compiled),
        sum(r.extract_refused for r in compiled),
    ]


def print_table(results: list[Any], details: int) -> None:
    """Counts per subset, a total, then what failed."""
    header = f"{'subset':<16}" + "".join(f"{c:>10}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    subsets = sorted({r.bench.subset for r in results})
    for name in subsets:
        figures = row(r for r in results if r.bench.subset == name)
        print(f"{name:<16}" + "".join(f"{n:>10}" for n in figures))
    print("-" * len(header))
    print(f"{'TOTAL':<16}" + "".join(f"{n:>10}" for n in row(results)))
    print(
        "\nvalid: instances MaskBench calls valid, of the schemas that compiled; not-valid: of"
        " those,\n  the ones qwenjson's validator rejects (formats, ECMA regexes); unrepr.: not"
        " writable in\n  the test vocabulary; exact: the rest, asked of the exact grammar, and"
        " how many it\n  refused; extract: those with no undeclared key, asked of the extract"
        " profile (spaced),\n  and how many it refused."
    )
    differ = sum(not r.bench.same_as_maskbench for r in results)
    print(f"\n{differ} corpus schemas differ from MaskBench's copy (the corpus file is used).")
    crashed = [r for r in results if r.status in ("crashed", "unparsable")]
    failures = [f for r in results for f in r.failures]
    for title, items in (
        ("Crashed or unparsable", [f"{r.bench.id}: {r.status}: {r.detail}" for r in crashed]),
        ("Valid instances refused", failures),
    ):
        if items:
            schemas = len({i.split(" ", 1)[0] for i in items})
            print(f"\n{title} ({len(items)}, in {schemas} schemas):")
            for item in items[:details]:
                print(f"  {item[:300]}")
            if len(items) > details:
                print(f"  … and {len(items) - details} more (--details N shows more)")


def main(argv: list[str] | None = None) -> int:
    """Judge every MaskBench valid instance and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("data", type=Path, help="MaskBench's maskbench/data directory")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="jsonschemabench dir")
    parser.add_argument("--only", action="append", default=[], help="SUBSET/NAME (repeatable)")
    parser.add_argument("--details", type=int, default=40, help="failures to list")
    args = parser.parse_args(argv)
    ge = load_coverage_script().load_engine_module()
    benches = ge.load_maskbench(args.data, args.corpus, args.only)
    if not benches:
        print(f"no MaskBench file in {args.data} has a schema in {args.corpus}", file=sys.stderr)
        return 1
    engine = ge.engine()
    start = time.perf_counter()
    results = [ge.run_bench(b, engine) for b in benches]
    print_table(results, args.details)
    print(f"\n{len(results)} schemas in {time.perf_counter() - start:.0f} s.")
    bad = any(r.failures or r.status in ("crashed", "unparsable") for r in results)
    return int(bad)


if __name__ == "__main__":
    sys.exit(main())
