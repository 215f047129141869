#!/usr/bin/env python3
"""How much of the real world the schema compiler covers, judged by llama.cpp's GBNF parser.

    .venv/bin/python scripts/coverage.py ../shared/corpus/jsonschemabench
    .venv/bin/python scripts/coverage.py --test-suite ../shared/corpus/json-schema-test-suite

The first form compiles every schema of every subset (``*.json`` and ``*.json.gz``) with
``qwenjson.schema.compile``, has llama.cpp parse each grammar, and prints per subset: schemas,
compiled, refused (and the top refusal reasons), grammars llama.cpp can't parse, crashes (any
exception other than a ``QwenJsonError``), and p50/p99 compile time. The second prints the
official test suite's conformance per keyword file: valid instances (canonical form) the grammar
accepts, invalid ones the grammar or post-generation validation rejects.

Exit status: 0, or 1 when anything crashed, produced an unparsable grammar or failed the suite.

The engine code lives in ``tests/grammar_engine.py`` (one copy for tests and scripts); it is
loaded here by its file path, so this script doesn't depend on the ``tests`` package.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: qwenjson needn't be installed

from qwenjson.errors import QwenJsonError, UnsupportedKeywordError  # noqa: E402
from qwenjson.schema import compile as compile_schema  # noqa: E402

COMPILE_TIMEOUT_S = 20  # a compile this slow is a bug worth a line of its own, not a hang


def load_engine_module() -> ModuleType:
    """``tests/grammar_engine.py``, imported by path."""
    path = ROOT / "tests" / "grammar_engine.py"
    spec = importlib.util.spec_from_file_location("qwenjson_grammar_engine", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"can't load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def read_schema(path: Path) -> Any:
    """A corpus file, plain or gzip-compressed."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return json.loads(raw)


def gist(message: str) -> str:
    """A refusal message, reduced to what repeats across schemas."""
    message = message.split(" (at ", 1)[0]
    # Quoted specifics (a $ref's target, a pattern) differ per schema; the reason doesn't.
    return re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|;.*", "…", message)[:80]


def refusal_reason(error: QwenJsonError) -> str:
    """A refusal, reduced to what repeats across schemas: the keyword, or the message's gist."""
    if isinstance(error, UnsupportedKeywordError):
        return f"unsupported keyword {error.keyword}"
    return gist(error.message)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values, 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class _Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Timeout


@dataclass
class SubsetStats:
    """What became of one subset's schemas."""

    name: str
    schemas: int = 0
    compiled: int = 0
    needs_validation: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    unparsable: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)  # compile CPU time, one per schema
    wall_ms: list[float] = field(default_factory=list)  # the same compiles, wall clock

    def record_time(self, start: float, cpu_start: float) -> None:
        """Record one compile that began at ``start`` (perf_counter) / ``cpu_start`` (CPU)."""
        self.times_ms.append((time.process_time() - cpu_start) * 1000)
        self.wall_ms.append((time.perf_counter() - start) * 1000)

    def add(self, other: SubsetStats) -> None:
        """Fold another subset's figures into this one (for the total row)."""
        self.schemas += other.schemas
        self.compiled += other.compiled
        self.needs_validation += other.needs_validation
        self.refused.update(other.refused)
        self.unparsable += other.unparsable
        self.crashes += other.crashes
        self.unreadable += other.unreadable
        self.times_ms += other.times_ms
        self.wall_ms += other.wall_ms


def measure_subset(directory: Path, engine: Any) -> SubsetStats:
    """Compile and parse every schema in one subset directory."""
    stats = SubsetStats(directory.name)
    files = sorted(p for p in directory.iterdir() if p.name.endswith((".json", ".json.gz")))
    for path in files:
        stats.schemas += 1
        try:
            schema = read_schema(path)
        except (OSError, ValueError) as e:
            stats.unreadable.append(f"{path.name}: {e}")
            continue
        signal.alarm(COMPILE_TIMEOUT_S)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            compiled = compile_schema(schema)
        except QwenJsonError as e:
            stats.record_time(start, cpu_start)
            stats.refused[refusal_reason(e)] += 1
            continue
        except _Timeout:
            stats.crashes.append(f"{path.name}: no result after {COMPILE_TIMEOUT_S} s")
            continue
        except Exception as e:  # any other exception is a compiler bug: count it, go on
            stats.crashes.append(f"{path.name}: {type(e).__name__}: {str(e)[:200]}")
            continue
        finally:
            signal.alarm(0)
        stats.record_time(start, cpu_start)
        problem = engine.grammar_error(compiled.grammar)
        if problem is not None:
            stats.unparsable.append(f"{path.name}: {problem[:200]}")
            continue
        stats.compiled += 1
        stats.needs_validation += bool(compiled.needs_validation)
    return stats


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:5.1f}%" if d else "    -"


def print_corpus_table(rows: list[SubsetStats], top: int, details: int) -> None:
    """The per-subset table, the total row, then the top refusal reasons and the failures."""
    total = SubsetStats("TOTAL")
    for row in rows:
        total.add(row)
    header = (
        f"{'subset':<16} {'schemas':>7} {'compiled':>8} {'%':>6} {'+valid.':>7} {'refused':>7} "
        f"{'unparsable':>10} {'crashes':>7} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in [*rows, total]:
        if row is total:
            print("-" * len(header))
        print(
            f"{row.name:<16} {row.schemas:>7} {row.compiled:>8}"
            f" {_pct(row.compiled, row.schemas):>6} {row.needs_validation:>7}"
            f" {sum(row.refused.values()):>7} {len(row.unparsable):>10}"
            f" {len(row.crashes) + len(row.unreadable):>7} {percentile(row.times_ms, 50):>7.2f}"
            f" {percentile(row.times_ms, 99):>7.2f}"
        )
    print(
        "\n+valid.: compiled schemas whose output is also checked by validation afterwards."
        "\np50/p99: compile time per schema (refusals included), CPU time of this process,"
        " which\n  other load on the machine doesn't inflate; wall clock over all schemas:"
        f" p50 {percentile(total.wall_ms, 50):.2f} ms, p99 {percentile(total.wall_ms, 99):.2f} ms."
    )
    print(f"\nTop refusal reasons (of {sum(total.refused.values())} refusals):")
    for reason, count in total.refused.most_common(top):
        subsets = ", ".join(f"{r.name} {r.refused[reason]}" for r in rows if r.refused[reason])
        print(f"  {count:>6}  {reason}   [{subsets}]")
    for title, items in (
        ("Crashes", [c for r in rows for c in (r.crashes + r.unreadable)]),
        ("Grammars llama.cpp can't parse", [u for r in rows for u in r.unparsable]),
    ):
        if items:
            print(f"\n{title} ({len(items)}):")
            for item in items[:details]:
                print(f"  {item}")
            if len(items) > details:
                print(f"  … and {len(items) - details} more (--details N shows more)")


def run_corpus(corpus: Path, top: int, details: int, subsets: list[str] | None) -> int:
    """Measure every subset of the corpus; 1 if anything crashed or didn't parse."""
    engine = load_engine_module().engine()
    dirs = sorted(d for d in corpus.iterdir() if d.is_dir() and (not subsets or d.name in subsets))
    if not dirs:
        print(f"no subset directories in {corpus}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGALRM, _on_alarm)
    rows = [measure_subset(d, engine) for d in dirs]
    print_corpus_table(rows, top, details)
    return int(any(r.crashes or r.unparsable or r.unreadable for r in rows))


def run_test_suite(suite: Path, optional: bool, details: int) -> int:
    """The conformance table per keyword file; 1 if any group failed."""
    ge = load_engine_module()
    engine = ge.engine()
    results = [ge.run_group(g, engine) for g in ge.load_suite(suite, optional=optional)]
    header = (
        f"{'keyword file':<50} {'groups':>6} {'compiled':>8} {'refused':>7} "
        f"{'valid ok':>10} {'invalid ok':>10} {'(by valid.)':>11} {'failed':>6}"
    )
    by_file: dict[str, list[Any]] = {}
    for r in results:
        by_file.setdefault(f"{r.group.draft}/{r.group.file}", []).append(r)
    print(header)
    print("-" * len(header))

    def line(name: str, rs: list[Any]) -> None:
        valid = f"{sum(r.valid_accepted for r in rs)}/{sum(r.valid_total for r in rs)}"
        caught = sum(r.invalid_by_grammar + r.invalid_by_validation for r in rs)
        invalid = f"{caught}/{sum(r.invalid_total for r in rs)}"
        print(
            f"{name:<50} {len(rs):>6} {sum(r.status == 'compiled' for r in rs):>8}"
            f" {sum(r.status == 'refused' for r in rs):>7} {valid:>10} {invalid:>10}"
            f" {sum(r.invalid_by_validation for r in rs):>11} {sum(not r.ok for r in rs):>6}"
        )

    for name, rs in by_file.items():
        line(name, rs)
    print("-" * len(header))
    for draft in sorted({r.group.draft for r in results}):
        line(f"TOTAL {draft}", [r for r in results if r.group.draft == draft])
    line("TOTAL", results)
    print(
        "\nvalid ok: valid instances (canonical form) the grammar accepts.\n"
        "invalid ok: invalid ones the grammar rejects or, where the compiler asks for it,\n"
        "  qwenjson's validation rejects; (by valid.): how many only validation caught.\n"
        "Groups the compiler refuses count as refused, not failed."
    )
    asserted = sum(r.format_asserted for r in results)
    if asserted:
        print(
            f"\n{asserted} strings the suite calls valid because `format` is only an annotation"
            " by default were judged as invalid: qwenjson asserts `format`."
        )
    notes = [n for r in results for n in r.notes]
    if notes:
        print(f"\nInstances not judged, as nothing can write them ({len(notes)}):")
        for note in notes[:details]:
            print(f"  {note[:160]}")
    refusals = Counter(gist(r.detail) for r in results if r.status == "refused")
    if refusals:
        print("\nRefusals:")
        for reason, count in refusals.most_common(15):
            print(f"  {count:>4}  {reason}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\nFailed groups ({len(failed)}):")
        for r in failed[:details]:
            print(f"  {r.group.id} ({r.group.description}): {r.status} {r.detail}")
            for f in r.failures[:3]:
                print(f"      {f[:160]}")
        if len(failed) > details:
            print(f"  … and {len(failed) - details} more (--details N shows more)")
    return int(bool(failed))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and print the requested tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("corpus", nargs="?", type=Path, help="jsonschemabench directory")
    parser.add_argument("--test-suite", type=Path, help="JSON-Schema-Test-Suite directory")
    parser.add_argument("--no-optional", action="store_true", help="skip the suite's optional/")
    parser.add_argument("--subset", action="append", help="only this subset (repeatable)")
    parser.add_argument("--top", type=int, default=15, help="refusal reasons to list")
    parser.add_argument("--details", type=int, default=20, help="failures to list")
    args = parser.parse_args(argv)
    if args.corpus is None and args.test_suite is None:
        parser.error("give CORPUS_DIR, --test-suite DIR, or both")
    status = 0
    if args.corpus is not None:
        status |= run_corpus(args.corpus, args.top, args.details, args.subset)
    if args.test_suite is not None:
        if args.corpus is not None:
            print()
        status |= run_test_suite(args.test_suite, not args.no_optional, args.details)
    return status


if __name__ == "__main__":
    sys.exit(main())
