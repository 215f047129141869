#!/usr/bin/env python3
"""Whether budget steering's reserve is an upper bound on what closing costs, for one model.

    .venv/bin/python scripts/steering_reserve.py --model "$(../shared/models/get-bench-model.sh)"

``SpanTracker.closing_reserve`` counts a required member still to come (``, "key": VALUE``,
VALUE the shortest the schema allows): the key with the model's tokenizer (``measure_with``,
as the engine has it count), the value at two bytes a token and a digit a token; the last
column is the reserve of a constraint used without a model (all by bytes). A reserve below
the tokens closing takes lets a document run out of its budget while it could still have
closed (exit 5). For each key and value schema below, this prints the tokens
the model's tokenizer gives the member's text and the reserve the tracker gives it, and exits 1
if any reserve is below its tokens. (The member's text is tokenized alone; inside a document
the tokens at its edges may merge with their neighbours, which only makes it shorter.)

Not a test: the counts depend on the model's tokenizer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from llama_cpp import Llama

from qwenjson.fields import schema_fields
from qwenjson.grounding import Grounding, SourceText

KEYS = [
    "id",
    "name",
    "first_long_property_name",
    "address_line_2",
    "2019_2020_revenue",
    "公司",
    "工作单位名称",
    "顧客の電話番号",
    "Straße",
    # Scripts a byte-level tokenizer splits below a character, and letters in no word (a
    # review: 4 such required keys ran a document out of a budget it fitted).
    "ᚠᚢᚦᚨᚱᚲᚷᚹᚺᚾᛁᛃᛇᛈᛉᛊᛏᛒ",
    "ｱｲｳｴｵｶｷｸｹｺ",
    "🍎🍌🍇🍉",
    "ㄅㄆㄇㄈ",
    "xQzJkWpVbNmRtY",
]
VALUES: list[tuple[str, dict[str, Any]]] = [
    ('""', {"type": "string"}),
    ('"2000-01-01"', {"type": "string", "format": "date"}),
    ('"2000-01-01T00:00:00Z"', {"type": "string", "format": "date-time"}),
    ("0", {"type": "integer"}),
    ("[0, 0, 0]", {"type": "array", "items": {"type": "integer"}, "minItems": 3}),
    ("[]", {"type": "array", "items": {"type": "string"}}),
    ('"short"', {"enum": ["a much longer label", "short"]}),
    ('"2024-01-01/2025-12-31"', {"const": "2024-01-01/2025-12-31"}),
    (
        '{"x": 0, "y": ""}',
        {
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "string"}},
            "required": ["x", "y"],
        },
    ),
]


def reserve_for(key: str, value: dict[str, Any], llm: Llama | None) -> int:
    """The tracker's reserve right after ``{"a": "t"``, with ``key`` required still to come;
    with ``llm``, its keys counted by that tokenizer, as the engine has them counted."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, key: value},
        "required": [key],
    }
    g = Grounding.from_fields(SourceText("t"), schema_fields(schema))
    if llm is not None:
        g.measure_with(lambda text: len(llm.tokenize(text, add_bos=False, special=False)))
    g.accept(b'{"a": "t"')
    return g.closing_reserve()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="a .gguf (only its vocabulary is read)")
    args = p.parse_args(argv)
    llm = Llama(model_path=args.model, vocab_only=True, verbose=False)
    short = 0
    print(f"{'member':52} {'tokens':>6} {'reserve':>7} {'by bytes':>8}")
    for key in KEYS:
        for text, value in VALUES:
            member = f", {json.dumps(key, ensure_ascii=False)}: {text}"
            tokens = len(llm.tokenize(member.encode(), add_bos=False, special=False))
            reserve = reserve_for(key, value, llm)
            mark = "" if reserve >= tokens else "  <- under"
            short += reserve < tokens
            # Without a tokenizer (a constraint used outside the engine): bytes a token.
            estimate = reserve_for(key, value, None)
            print(f"{member:52} {tokens:6} {reserve:7} {estimate:8}{mark}")
    print(f"{short} reserve(s) under the tokens closing takes")
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
