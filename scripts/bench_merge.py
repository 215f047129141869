"""Merging a long text's pieces: seconds against the number of items merged (no model).

    .venv/bin/python scripts/bench_merge.py [--items 1500,3000,6000] [--per-piece 12] [--json F]

A text long enough for thousands of pieces names mostly distinct people; each piece's document
(``{"people": [{"name", "role"}], "title"}``, every leaf with evidence and a confidence) is
merged into the document so far by ``qwenjson.merging.Merger``, as ``qwenjson.pieces`` does.
Printed for each size: the pieces, the items merged, seconds in all and per thousand items, so
that growth with the document (each piece's merge costing what the whole document does) shows
as seconds per thousand items rising with the size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qwenjson.merging import Found, Merger
from qwenjson.validate import make_validator

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "description": "the report's title"},
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "role": {"type": "string", "enum": ["cook", "chef", "owner", "guest"]},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "people"],
    "additionalProperties": False,
}
ROLES = ["cook", "chef", "owner", "guest"]


def piece(index: int, per_piece: int) -> Found:
    """The ``index``-th piece's document: ``per_piece`` people, the first seen by the piece
    before too (the overlap), and the title every piece repeats."""
    base = index * 1000
    first = index * (per_piece - 1)
    people: list[dict[str, str]] = []
    evidence: dict[str, list[int] | None] = {"/title": [0, 6]}
    for i in range(per_piece):
        number = first + i
        start = base + 60 * i
        people.append({"name": f"Person {number}", "role": ROLES[number % 4]})
        evidence[f"/people/{i}/name"] = [start, start + 12]
        evidence[f"/people/{i}/role"] = [start + 20, start + 24]
    confidence = {p: 0.5 + (index % 7) / 20 for p in evidence}
    return Found({"title": "Report", "people": people}, evidence, confidence)


def run(items: int, per_piece: int) -> dict[str, float]:
    pieces = [piece(i, per_piece) for i in range(max(1, items // (per_piece - 1)))]
    merger = Merger(make_validator(SCHEMA), confident=True)
    began = time.perf_counter()
    for found in pieces:
        merger.add(found)
    seconds = time.perf_counter() - began
    merged = len(merger.data["people"])
    return {
        "pieces": len(pieces),
        "items": merged,
        "seconds": round(seconds, 2),
        "seconds_per_1k_items": round(seconds / merged * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="1500,3000,6000")
    parser.add_argument("--per-piece", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [run(int(n), args.per_piece) for n in args.items.split(",")]
    print(f"{'pieces':>7} {'items':>7} {'seconds':>8} {'s/1k items':>11}")
    for row in rows:
        print(
            f"{row['pieces']:>7} {row['items']:>7} {row['seconds']:>8} "
            f"{row['seconds_per_1k_items']:>11}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
