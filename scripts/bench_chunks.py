"""Long texts in pieces: merged recall and precision, speed, and memory on a 1 MB text.

    .venv/bin/python scripts/bench_chunks.py --model "$(../shared/models/get-bench-model.sh)" \\
        --threads 1 [--ctx 4096] [--chunk-tokens 512] [--sources conllpp,cluener] \
        [--rss-seconds 120] [--json out.json]

For each NER source of ``../shared/corpus/extraction-dev/cases.jsonl`` (read there, never
copied), the cases' texts are joined (a blank line between) into one long document and
extracted once with ``qwenjson extract`` (in pieces, merged); the same texts are also extracted
each alone (``--jsonl``). Both are scored as sets of (field, value) pairs (values compared
case-, width- and blank-insensitively) against the union of the cases' golds: recall and
precision. Also: seconds per 1k input tokens of the long document, and the peak RSS of a run on
a 1 MB text (the document repeated) against one on a short text. The 1 MB run is stopped by
``--total-timeout`` after ``--rss-seconds`` (it would take hours on 2 cores): the pieces it got
through are counted from its ``--checkpoint``.
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


def pieces_in(checkpoint: Path) -> int:
    if not checkpoint.exists():
        return 0
    lines = checkpoint.read_text("utf-8").splitlines()[1:]
    return sum(1 for line in lines if line.startswith('{"piece"'))


def bench_source(args: argparse.Namespace, rows: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    schema = json.dumps(rows[0]["schema"], ensure_ascii=False)
    document = "\n\n".join(r["input"].strip() for r in rows) + "\n"
    gold = set().union(*(pairs(r["gold"]) for r in rows))
    base = [*args.command, "-s", schema]
    chunks = ["--chunk-tokens", str(args.chunk_tokens)]
    (tmp / "doc.txt").write_text(document, "utf-8")
    checkpoint = tmp / f"{rows[0]['source']}.ck"
    code, out, seconds, rss = run(
        [*base, *chunks, "--input", str(tmp / "doc.txt"), "--checkpoint", str(checkpoint)]
    )
    merged = json.loads(out) if code == 0 else None
    records = "".join(json.dumps({"text": r["input"]}, ensure_ascii=False) + "\n" for r in rows)
    alone_code, alone_out, alone_seconds, _ = run(
        [*base, "--jsonl", "--field", "text"], records.encode("utf-8")
    )
    alone = [json.loads(line)["extracted"] for line in alone_out.splitlines()]
    tokens = count_tokens(args.model, document)
    return {
        "cases": len(rows),
        "characters": len(document),
        "tokens": tokens,
        "pieces": pieces_in(checkpoint),
        "exit_code": code,
        "merged": score(pairs(merged), gold),
        "alone": score(set().union(*map(pairs, alone)) if alone else set(), gold),
        "alone_exit_code": alone_code,
        "seconds": round(seconds, 1),
        "seconds_per_1k_tokens": round(seconds / (tokens / 1000), 2),
        "alone_seconds": round(alone_seconds, 1),
        "peak_rss_mib": round(rss, 1),
    }


def bench_rss(args: argparse.Namespace, rows: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    schema = json.dumps(rows[0]["schema"], ensure_ascii=False)
    document = "\n\n".join(r["input"].strip() for r in rows) + "\n\n"
    big = (document * (1_000_000 // len(document.encode("utf-8")) + 1)).encode("utf-8")[:1_000_000]
    (tmp / "big.txt").write_bytes(big[: big.rfind(b"\n") + 1])
    base = [*args.command, "-s", schema]
    short_code, _, _, short_rss = run([*base, "--input", "-"], rows[0]["input"].encode("utf-8"))
    checkpoint = tmp / "big.ck"
    big_code, _, big_seconds, big_rss = run(
        [
            *base,
            "--input",
            str(tmp / "big.txt"),
            "--checkpoint",
            str(checkpoint),
            "--total-timeout",
            str(args.rss_seconds),
        ]
    )
    return {
        "short_exit_code": short_code,
        "short_peak_rss_mib": round(short_rss, 1),
        "big_bytes": (tmp / "big.txt").stat().st_size,
        "big_exit_code": big_code,  # 7: stopped by --total-timeout, as planned
        "big_seconds": round(big_seconds, 1),
        "big_pieces_done": pieces_in(checkpoint),
        "big_peak_rss_mib": round(big_rss, 1),
        "difference_mib": round(big_rss - short_rss, 1),
    }


def bench_field_rule(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which piece should a single field come from: the first that grounds it, or the one
    whose value the model was surest of? Each SROIE receipt is put between two news texts
    (which hold no receipt fields), read in pieces, and both rules are scored per field."""
    from qwenjson.chunking import split
    from qwenjson.pipeline import ExtractOptions, Extractor, open_model

    news = [r["input"].strip() for r in rows if r["source"] == "conllpp"]
    receipts = [r for r in rows if r["source"] == "sroie"][: args.field_rule_cases]
    engine = open_model(args.field_rule_model or args.model, threads=args.threads, n_ctx=args.ctx)
    right = {"first": 0, "confident": 0}
    fields = 0
    try:
        for n, case in enumerate(receipts):
            text = "\n\n".join([news[n % len(news)], case["input"].strip(), news[-1 - n]])
            extractor = Extractor(case["schema"], engine, ExtractOptions(evidence=True))
            found = []
            for piece in split(
                text, engine.count_tokens, args.chunk_tokens, args.chunk_tokens // 8
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
    finally:
        engine.close()
    return {"cases": len(receipts), "fields_with_a_candidate": fields, "right": right}


def same(value: Any, gold: Any) -> bool:
    if isinstance(gold, str) and isinstance(value, str):
        return norm(value) == norm(gold)
    return bool(value == gold)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="the GGUF to run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ctx", type=int, default=4096)
    # The NER documents are 2.5k and 1.3k tokens (SmolLM2's tokenizer), which fit a 4096
    # context whole: pieces of 512 tokens make them several each.
    p.add_argument("--chunk-tokens", type=int, default=512)
    p.add_argument("--sources", default="conllpp,cluener")
    p.add_argument("--rss-seconds", type=float, default=120.0)
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument(
        "--field-rule-cases", type=int, default=0, help="receipts for the field-rule measurement"
    )
    p.add_argument("--field-rule-model", help="the GGUF for it [default: --model]")
    p.add_argument("--skip-ner", action="store_true", help="only the field-rule measurement")
    args = p.parse_args()
    args.command = [sys.executable, "-m", "qwenjson", "extract", "-m", args.model, "--quiet"]
    args.command += ["--threads", str(args.threads), "--ctx", str(args.ctx), "--no-cache"]
    rows = [json.loads(line) for line in CASES.read_text("utf-8").splitlines()]
    figures: dict[str, Any] = {"model": args.model, "ctx": args.ctx, "threads": args.threads}
    figures["chunk_tokens"] = args.chunk_tokens
    if args.field_rule_cases:
        figures["field_rule"] = bench_field_rule(args, rows)
        print("field_rule", json.dumps(figures["field_rule"]), flush=True)
    if args.skip_ner:
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for source in args.sources.split(","):
            chosen = [r for r in rows if r["source"] == source]
            figures[source] = bench_source(args, chosen, tmp)
            print(source, json.dumps(figures[source]), flush=True)
        first = [r for r in rows if r["source"] == args.sources.split(",")[0]]
        figures["rss"] = bench_rss(args, first, tmp)
        print("rss", json.dumps(figures["rss"]), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
