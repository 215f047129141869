#!/usr/bin/env python3
"""How well the model follows qwenjson's prompt: field-level checks on small extraction cases.

    .venv/bin/python scripts/prompt_eval.py --model "$(../shared/models/get-bench-model.sh)"

A 0.5B model is sensitive to every word of its prompt, and the prompt's length is paid for in
prefill time on every record. Run this before and after changing ``qwenjson/prompt.py``: it
prints, per case, the prompt's token count, the output, and which checks failed, then the
totals. Cases are English and Chinese, and include optional fields the text doesn't mention
(they must be left out), enums, booleans, numbers with units and lists. Greedy decoding under
the product's grammar, so the output is always valid: the checks are about *content*. The
checks see what ``extract`` prints (members left as ``""`` dropped where the schema lets them
go); with ``--raw``, the model's own output.
Not a test: the answers depend on the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: qwenjson needn't be installed

from qwenjson.engine import Engine  # noqa: E402
from qwenjson.prompt import build_messages  # noqa: E402
from qwenjson.schema import compile_schema  # noqa: E402
from qwenjson.validate import drop_empty_strings, make_validator  # noqa: E402

SHARED_CASES = ROOT.parent / "shared" / "cases"

Check = Callable[[Any], bool]


def _cjk(s: Any) -> bool:
    return isinstance(s, str) and any("\u4e00" <= ch <= "\u9fff" for ch in s)


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}


def _list(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _req(schema: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**schema, "required": list(names)}


@dataclass
class Case:
    name: str
    schema: dict[str, Any]
    text: str
    checks: dict[str, Check] = field(default_factory=dict)


def _seed(name: str) -> tuple[dict[str, Any], str]:
    folder = SHARED_CASES / name
    schema = json.loads((folder / "schema.json").read_text(encoding="utf-8"))
    return schema, (folder / "input.txt").read_text(encoding="utf-8")


def cases() -> list[Case]:
    out: list[Case] = []
    if SHARED_CASES.is_dir():
        schema, text = _seed("seed-person")
        out.append(
            Case(
                "seed-person",
                schema,
                text,
                {
                    "name 李明": lambda d: d.get("name") == "李明",
                    "age 28": lambda d: d.get("age") == 28,
                    "hobbies 读书 跑步": lambda d: set(d.get("hobbies", [])) == {"读书", "跑步"},
                },
            )
        )
        schema, text = _seed("seed-summary")
        out.append(
            Case(
                "seed-summary",
                schema,
                text,
                {
                    "summary in Chinese": lambda d: _cjk(d.get("summary")),
                    "keywords in Chinese": lambda d: (
                        bool(d.get("keywords")) and all(_cjk(k) for k in d["keywords"])
                    ),
                    "sentiment positive": lambda d: d.get("sentiment") == "positive",
                },
            )
        )
    out += [
        Case(
            "contact-en",
            _req(_obj(name=STR, age=INT, email=STR, phone=STR), "name"),
            "Hi, I'm Sarah Connor, 34 years old. You can reach me at sarah.connor@example.com.",
            {
                "name": lambda d: d.get("name") == "Sarah Connor",
                "age 34": lambda d: d.get("age") == 34,
                "email": lambda d: d.get("email") == "sarah.connor@example.com",
                "no phone": lambda d: "phone" not in d,
            },
        ),
        Case(
            "name-only-en",
            _req(_obj(name=STR, age=INT, email=STR, city=STR), "name"),
            "My name is Tom Baker.",
            {
                "name": lambda d: d.get("name") == "Tom Baker",
                "nothing invented": lambda d: set(d) == {"name"},
            },
        ),
        Case(
            "parcel-zh",
            _req(
                _obj(recipient=STR, phone=STR, city=STR, address=STR), "recipient", "phone", "city"
            ),
            "请把包裹寄到上海市浦东新区世纪大道100号，收件人王芳，电话13812345678。",
            {
                "recipient 王芳": lambda d: d.get("recipient") == "王芳",
                "phone": lambda d: d.get("phone") == "13812345678",
                "city 上海": lambda d: "上海" in str(d.get("city", "")),
                "address kept in Chinese": lambda d: _cjk(d.get("address", "世纪大道")),
            },
        ),
        Case(
            "hotel-zh",
            _req(
                _obj(guest=STR, check_in=STR, rooms=INT, nights=INT, airport_pickup=BOOL),
                "guest",
                "rooms",
                "nights",
                "airport_pickup",
            ),
            "王先生预订了3月5日入住的两间双人房，住三晚，需要接机服务。",
            {
                "guest 王先生": lambda d: d.get("guest") in ("王先生", "王"),
                "rooms 2": lambda d: d.get("rooms") == 2,
                "nights 3": lambda d: d.get("nights") == 3,
                "pickup true": lambda d: d.get("airport_pickup") is True,
            },
        ),
        Case(
            "attendees-zh",
            _req(_obj(topic=STR, attendees=_list(STR)), "topic", "attendees"),
            "周五下午开了预算会议，参加者有张伟、李娜和刘洋。",
            {
                "topic in Chinese": lambda d: _cjk(d.get("topic")),
                "attendees": lambda d: set(d.get("attendees", [])) == {"张伟", "李娜", "刘洋"},
            },
        ),
        Case(
            "review-en",
            _req(
                _obj(
                    product=STR,
                    sentiment={"type": "string", "enum": ["positive", "mixed", "negative"]},
                    would_buy_again=BOOL,
                ),
                "product",
                "sentiment",
                "would_buy_again",
            ),
            "These Sonix H2 headphones sound great, but the left ear cup broke after two weeks. "
            "I would not buy them again.",
            {
                "product": lambda d: "Sonix H2" in str(d.get("product", "")),
                "sentiment not positive": lambda d: d.get("sentiment") in ("mixed", "negative"),
                "would not buy again": lambda d: d.get("would_buy_again") is False,
            },
        ),
        Case(
            "flat-en",
            _req(
                _obj(city=STR, rent_eur=NUM, rooms=INT, pets_allowed=BOOL, parking=BOOL),
                "city",
                "rent_eur",
                "pets_allowed",
                "parking",
            ),
            "Two-room flat in Lyon for 850 EUR a month. Pets are welcome; there is no parking.",
            {
                "city": lambda d: d.get("city") == "Lyon",
                "rent 850": lambda d: d.get("rent_eur") == 850,
                "rooms 2": lambda d: d.get("rooms", 2) == 2,
                "pets true": lambda d: d.get("pets_allowed") is True,
                "parking false": lambda d: d.get("parking") is False,
            },
        ),
        Case(
            "items-en",
            _req(
                _obj(
                    items=_list(_req(_obj(name=STR, quantity=INT, price=NUM), "name", "quantity")),
                    total=NUM,
                ),
                "items",
            ),
            "Receipt: 2 coffees at 3.50 each, 1 croissant at 2.20. Total 9.20.",
            {
                "two items": lambda d: len(d.get("items", [])) == 2,
                "coffee x2": lambda d: any(
                    "coffee" in i.get("name", "").lower() and i.get("quantity") == 2
                    for i in d.get("items", [])
                ),
                "total 9.2": lambda d: d.get("total") == 9.2,
            },
        ),
        Case(
            "job-zh",
            _req(
                _obj(
                    title=STR,
                    city=STR,
                    remote=BOOL,
                    salary_min=INT,
                    salary_max=INT,
                ),
                "title",
                "city",
                "remote",
            ),
            "招聘高级Python开发工程师，工作地点深圳，可远程办公，月薪2万到3万元。",
            {
                "title in Chinese": lambda d: _cjk(d.get("title")),
                "city 深圳": lambda d: d.get("city") == "深圳",
                "remote true": lambda d: d.get("remote") is True,
                "salary 20000-30000": lambda d: (
                    (d.get("salary_min"), d.get("salary_max")) in ((20000, 30000), (2, 3))
                ),
            },
        ),
        Case(
            "meeting-zh",
            _req(
                _obj(event=STR, time=STR, room=STR, host=STR, attendee_count=INT),
                "event",
                "room",
                "host",
            ),
            "下周三下午3点在301会议室开产品评审会，由陈经理主持。",
            {
                "event in Chinese": lambda d: _cjk(d.get("event")),
                "room 301": lambda d: "301" in str(d.get("room", "")),
                "host 陈经理": lambda d: "陈" in str(d.get("host", "")),
                "no attendee_count": lambda d: "attendee_count" not in d,
            },
        ),
        Case(
            "dose-en",
            _req(
                _obj(drug=STR, dose_mg=NUM, tablets=INT, interval_hours=INT, with_food=BOOL),
                "drug",
                "tablets",
                "interval_hours",
                "with_food",
            ),
            "Take 2 tablets of ibuprofen 200 mg every 6 hours with food.",
            {
                "drug": lambda d: str(d.get("drug", "")).lower().startswith("ibuprofen"),
                "dose 200": lambda d: d.get("dose_mg", 200) == 200,
                "tablets 2": lambda d: d.get("tablets") == 2,
                "every 6 h": lambda d: d.get("interval_hours") == 6,
                "with food": lambda d: d.get("with_food") is True,
            },
        ),
        Case(
            "flight-en",
            _req(
                _obj(flight=STR, origin=STR, destination=STR, departure=STR, gate=STR, seat=STR),
                "flight",
                "origin",
                "destination",
            ),
            "Flight LH 454 from Frankfurt to San Francisco departs at 10:15 on 12 June, gate B44.",
            {
                "flight": lambda d: "LH454" in str(d.get("flight", "")).replace(" ", ""),
                "origin": lambda d: d.get("origin") == "Frankfurt",
                "destination": lambda d: d.get("destination") == "San Francisco",
                "gate": lambda d: d.get("gate", "B44") == "B44",
                "no seat": lambda d: "seat" not in d,
            },
        ),
        Case(
            "complaint-zh",
            _req(
                _obj(
                    product=STR,
                    problem=STR,
                    sentiment={"type": "string", "enum": ["positive", "neutral", "negative"]},
                ),
                "product",
                "problem",
                "sentiment",
            ),
            "我买的洗衣机用了三天就漏水了，客服一直不回复，非常失望。",
            {
                "product 洗衣机": lambda d: "洗衣机" in str(d.get("product", "")),
                "problem in Chinese": lambda d: _cjk(d.get("problem")),
                "negative": lambda d: d.get("sentiment") == "negative",
            },
        ),
        Case(
            "recipe-en",
            _req(
                _obj(
                    dish=STR,
                    ingredients=_list(
                        _req(_obj(name=STR, amount=NUM, unit=STR), "name", "amount", "unit")
                    ),
                ),
                "dish",
                "ingredients",
            ),
            "For pancakes you need 200 g flour, 2 eggs and 300 ml milk.",
            {
                "dish": lambda d: "pancake" in str(d.get("dish", "")).lower(),
                "three ingredients": lambda d: len(d.get("ingredients", [])) == 3,
                "flour 200 g": lambda d: any(
                    "flour" in i.get("name", "").lower()
                    and i.get("amount") == 200
                    and i.get("unit") == "g"
                    for i in d.get("ingredients", [])
                ),
            },
        ),
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="the GGUF to evaluate")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only", help="run only the cases whose name contains this")
    p.add_argument("--raw", action="store_true", help="check the model's output as it is")
    args = p.parse_args(argv)

    engine = Engine(args.model, n_ctx=4096, n_threads=args.threads)
    passed = total = prompt_total = 0
    t0 = time.perf_counter()
    for case in cases():
        if args.only and args.only not in case.name:
            continue
        messages = build_messages(case.schema, case.text)
        grammar = compile_schema(case.schema, closed_objects=True, spaced=True)
        result = engine.generate(messages, grammar, max_tokens=400)
        prompt_total += result.prompt_tokens
        try:
            doc = json.loads(result.text)
        except ValueError:
            doc = None
        if doc is not None and not args.raw:
            doc = drop_empty_strings(doc, make_validator(case.schema))
        failed = [
            name
            for name, check in case.checks.items()
            if not isinstance(doc, dict) or not _ok(check, doc)
        ]
        passed += len(case.checks) - len(failed)
        total += len(case.checks)
        mark = "ok " if not failed else "BAD"
        shown = result.text if doc is None else json.dumps(doc, ensure_ascii=False)
        print(f"{mark} {case.name:<14} prompt {result.prompt_tokens:>4}  {shown}")
        for name in failed:
            print(f"      failed: {name}")
    elapsed = time.perf_counter() - t0
    print(f"\n{passed}/{total} checks passed; {prompt_total} prompt tokens in all; {elapsed:.1f} s")
    return 0


def _ok(check: Check, doc: dict[str, Any]) -> bool:
    try:
        return bool(check(doc))
    except (TypeError, AttributeError, KeyError):
        return False


if __name__ == "__main__":
    sys.exit(main())
