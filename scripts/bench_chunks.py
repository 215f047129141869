"""Long texts in pieces: merged recall and precision against each text alone, and speed.

    .venv/bin/python scripts/bench_chunks.py --model "$(../shared/models/get-bench-model.sh)" \\
        --threads 1 [--ctx 4096] [--chunk-tokens 128,256,512] [--sources conllpp,cluener] \\
        [--json out.json] [--field-rule-cases 20]

For each NER source of ``../shared/corpus/extraction-dev/cases.jsonl`` (read there, never
copied), the cases' texts are joined (a blank line between) into one long document and
extracted with ``qwenjson extract`` in pieces of each ``--chunk-tokens`` size (merged); the same
texts are also extracted each alone (``--jsonl``, once). Both are scored as sets of (field,
value) pairs (values compared case-, width- and blank-insensitively) against the union of the
cases' golds: recall and precision. ``pieces`` scores the union of the pieces' own documents
(read from the run's ``--checkpoint``), so that what the merge drops shows apart from what the
model missed. Also: seconds per 1k input tokens, peak RSS, and the load average around each run
(the machine is shared: timings under load are not comparable).

``--field-rule-cases N``: which piece a single object's field should come from (the first in
the text that grounds it, or the one the model was surest of), on N SROIE receipts each put
between two news texts. Memory on a 1 MB text: ``scripts/bench_long_memory.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

CASES = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "extraction-dev" / "cases.jsonl"


def norm(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def pairs(document: Any) -> set[tuple[str, str]]:
    """The (field, value) pairs of an NER document: every string in every list."""
    if not isinstance(document, dict):
        return set()
    return {
        (key, norm(v))
        for key, values in document.items()
        if isinstance(values, list)
        for v in values
        if isinstance(v, str) and v.strip()
    }


def score(predicted: set[tuple[str, str]], gold: set[tuple[str, str]]) -> dict[str, float]:
    hit = len(predicted & gold)
    return {
        "recall": round(hit / len(gold), 3) if gold else 1.0,
        "precision": round(hit / len(predicted), 3) if predicted else 1.0,
        "predicted": len(predicted),
        "gold": len(gold),
    }


def run(argv: list[str], stdin: bytes | None = None) -> tuple[int, bytes, float, float]:
    """Run a child; its exit code, stdout, wall seconds and peak RSS (MiB, from wait4)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        if stdin is not None:
            proc.stdin.write(stdin)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        return proc.returncode, out.read(), seconds, usage.ru_maxrss / 1024


def count_tokens(model: str, text: str) -> int:
    from qwenjson.pipeline import open_model

    engine = open_model(model, threads=1)
    try:
        return engine.count_tokens(text)
    finally:
        engine.close()


def logged_pieces(checkpoint: Path) -> list[Any]:
    """The documents of the pieces a run's checkpoint logged, in order."""
    if not checkpoint.exists():
        return []
    lines = checkpoint.read_text("utf-8").splitlines()[1:]
    return [json.loads(line)["found"]["data"] for line in lines if line.startswith('{"piece"')]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def bench_source(args: argparse.Namespace, rows: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    schema = json.dumps(rows[0]["schema"], ensure_ascii=False)
    document = "\n\n".join(r["input"].strip() for r in rows) + "\n"
    gold = set().union(*(pairs(r["gold"]) for r in rows))
    base = [*args.command, "-s", schema]
    (tmp / "doc.txt").write_text(document, "utf-8")
    tokens = count_tokens(args.model, document)
    figures: dict[str, Any] = {"cases": len(rows), "characters": len(document), "tokens": tokens}
    if not args.skip_alone:
        records = "".join(json.dumps({"text": r["input"]}, ensure_ascii=False) + "\n" for r in rows)
        before = load()
        code, out, seconds, rss = run([*base, "--jsonl", "--field", "text"], records.encode())
        alone = [json.loads(line)["extracted"] for line in out.splitlines()]
        figures["alone"] = {
            "exit_code": code,
            **score(set().union(*map(pairs, alone)) if alone else set(), gold),
            "seconds": round(seconds, 1),
            "seconds_per_1k_tokens": round(seconds / (tokens / 1000), 1),
            "peak_rss_mib": round(rss, 1),
            "load": [before, load()],
        }
        print(rows[0]["source"], "alone", json.dumps(figures["alone"]), flush=True)
    for size in args.chunk_tokens:
        checkpoint = tmp / f"{rows[0]['source']}-{size}.ck"
        before = load()
        code, out, seconds, rss = run(
            [*base, "--chunk-tokens", str(size), "--input", str(tmp / "doc.txt"),
             "--checkpoint", str(checkpoint)]
        )  # fmt: skip
        merged = json.loads(out) if code == 0 else None
        pieces = logged_pieces(checkpoint)
        figures[f"merged_{size}"] = {
            "exit_code": code,
            "pieces": len(pieces),
            **score(pairs(merged), gold),
            "pieces_union": score(set().union(*map(pairs, pieces)) if pieces else set(), gold),
            "seconds": round(seconds, 1),
            "seconds_per_1k_tokens": round(seconds / (tokens / 1000), 1),
            "peak_rss_mib": round(rss, 1),
            "load": [before, load()],
        }
        print(rows[0]["source"], size, json.dumps(figures[f"merged_{size}"]), flush=True)
    return figures


def bench_field_rule(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which piece should a single field come from: the first that grounds it, or the one
    whose value the model was surest of? Each SROIE receipt is put between two news texts
    (which hold no receipt fields), read in pieces, and both rules are scored per field."""
    from qwenjson.chunking import split
    from qwenjson.pipeline import ExtractOptions, Extractor, open_model

    news = [r["input"].strip() for r in rows if r["source"] == "conllpp"]
    receipts = [r for r in rows if r["source"] == "sroie"][: args.field_rule_cases]
    engine = open_model(args.field_rule_model or args.model, threads=args.threads, n_ctx=args.ctx)
    right = {"first": 0, "confident": 0, "any": 0}
    fields = 0
    try:
        for n, case in enumerate(receipts):
            text = "\n\n".join([news[n % len(news)], case["input"].strip(), news[-1 - n]])
            extractor = Extractor(case["schema"], engine, ExtractOptions(evidence=True))
            found = []
            for piece in split(
                text, engine.count_tokens, args.field_rule_tokens, args.field_rule_tokens // 8
            ):
                try:
                    result = extractor.run(text[piece.start : piece.end], offset=piece.start)
                except Exception:  # a piece with no valid document gives no candidates
                    continue
                found.append(result)
            for key, gold in case["gold"].items():
                candidates = [
                    (r.data[key], r.confidence.get("/" + key, 0.0))
                    for r in found
                    if key in r.data and "/" + key not in r.unsupported
                ]
                if not candidates:
                    continue
                fields += 1
                first = candidates[0][0]
                confident = max(candidates, key=lambda c: c[1])[0]
                right["first"] += same(first, gold)
                right["confident"] += same(confident, gold)
                right["any"] += any(same(value, gold) for value, _ in candidates)
    finally:
        engine.close()
    return {
        "cases": len(receipts),
        "pieces_of": args.field_rule_tokens,
        "fields_with_a_candidate": fields,
        "right": right,
        "load": load(),
    }


def same(value: Any, gold: Any) -> bool:
    if isinstance(gold, str) and isinstance(value, str):
        return norm(value) == norm(gold)
    return bool(value == gold)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="the GGUF to run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ctx", type=int, default=4096)
    # Piece sizes to compare: the NER documents (2.4k and 0.5k tokens on Qwen2's tokenizer)
    # fit a 4096 context whole, so these make them several pieces each.
    p.add_argument("--chunk-tokens", default="128,256,512", help="comma-separated piece sizes")
    p.add_argument("--sources", default="conllpp,cluener")
    p.add_argument("--skip-alone", action="store_true", help="do not extract each text alone")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument(
        "--field-rule-cases", type=int, default=0, help="receipts for the field-rule measurement"
    )
    p.add_argument("--field-rule-tokens", type=int, default=256, help="its piece size")
    p.add_argument("--field-rule-model", help="the GGUF for it [default: --model]")
    p.add_argument("--skip-ner", action="store_true", help="only the field-rule measurement")
    args = p.parse_args()
    args.chunk_tokens = [int(n) for n in args.chunk_tokens.split(",")]
    args.command = [sys.executable, "-m", "qwenjson", "extract", "-m", args.model, "--quiet"]
    args.command += ["--threads", str(args.threads), "--ctx", str(args.ctx), "--no-cache"]
    rows = [json.loads(line) for line in CASES.read_text("utf-8").splitlines()]
    figures: dict[str, Any] = {"model": args.model, "ctx": args.ctx, "threads": args.threads}
    figures["chunk_tokens"] = args.chunk_tokens
    if args.field_rule_cases:
        figures["field_rule"] = bench_field_rule(args, rows)
        print("field_rule", json.dumps(figures["field_rule"]), flush=True)
    if not args.skip_ner:
        with tempfile.TemporaryDirectory() as name:
            for source in args.sources.split(","):
                chosen = [r for r in rows if r["source"] == source]
                figures[source] = bench_source(args, chosen, Path(name))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
