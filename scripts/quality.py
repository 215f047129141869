#!/usr/bin/env python3
"""Extraction quality: score ``qwenjson extract`` and an anchor on ../shared/corpus/extraction-dev.

    .venv/bin/python scripts/quality.py --model "$(../shared/models/get-bench-model.sh)" \\
        --out /tmp/quality.jsonl

Every case of the corpus (a JSON Schema, a text and the gold object) is extracted twice, one
model loaded at a time:

- **qwenjson**: the library in-process, as ``qwenjson extract`` runs by default (the defaults
  of ``ExtractOptions``: closed objects, spaced grammar, 2 retries, empty optional strings
  dropped; a 4096-token context; the prompt prefix cached in a temporary directory);
- **anchor**: llama-cpp-python's ``create_chat_completion`` with ``response_format``
  ``{"type": "json_object", "schema": …}``, the raw schema in the system message, greedy,
  1024 tokens at most (``--no-anchor`` skips it).

and scored with the corpus README's eight rules (the scorer below is this project's own). It
prints, per source, per language and overall, for both systems side by side: the score, the
valid documents, the output list items not found in the input (rule 8: count, and share of all
list items in valid documents) and the seconds per case (mean, max; wall time of the
extraction call, model loading excluded). When qwenjson's result carries a per-leaf confidence
map (keyed by JSON pointer), a calibration table follows.

``--out FILE.jsonl`` writes one line per (system, case) as each finishes — id, source, lang,
the output or the error, validity, score, per-field scores, invalid-list-items, seconds — so
two runs can be compared line by line. ``--gold`` scores each case's gold object instead of a
model (no model needed): the scorer's sanity check, which must give 100% with every case valid.
A shorter self-check of the scoring rules runs before every run.

Not a test: scores depend on the model, and seconds on the machine's load (printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import re
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol

from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

ROOT = Path(__file__).resolve().parents[1]
try:  # PYTHONPATH (e.g. a worktree of an older commit) wins over this checkout
    import qwenjson
except ImportError:  # run from a checkout without an install
    sys.path.append(str(ROOT))
    import qwenjson

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "extraction-dev"
ANCHOR_INSTRUCTION = "Extract the data from the user's text as JSON matching this schema:"
ANCHOR_MAX_TOKENS = 1024
N_CTX = 4096
# Calibration buckets: [lo, hi), the last one closed.
BUCKETS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.0))

Json = Any


# -- the scorer (the corpus README's rules) ------------------------------------------------------


def normalize(text: str) -> str:
    """Rule 3: NFKC, casefold, then delete whitespace, punctuation and symbols (Z*, P*, S*)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(
        ch for ch in folded if not ch.isspace() and unicodedata.category(ch)[0] not in "ZPS"
    )


def is_empty(value: Json) -> bool:
    """Rule 2: null, an empty or all-whitespace string, ``[]`` or ``{}``."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | dict):
        return not value
    return False


def flatten(value: Json, prefix: str = "") -> dict[str, Json]:
    """Rule 2: leaf fields by dotted path; nested objects are descended, arrays are leaves."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    leaves: dict[str, Json] = {}
    for key, member in value.items():
        leaves.update(flatten(member, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def _is_number(value: Json) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_money(text: str) -> float | None:
    """Rule 4: a string read as an amount: ``"RM 1,234.50"`` → 1234.5, ``"12,50"`` → 12.5."""
    text = unicodedata.normalize("NFKC", text)
    negative = bool(re.match(r"\s*\D{0,4}-", text))
    digits = re.sub(r"[^0-9.,]", "", text).strip(".,")
    if not re.search(r"\d", digits):
        return None
    if "," in digits and "." in digits:  # the later one is the decimal mark
        thousands = "," if digits.rfind(",") < digits.rfind(".") else "."
        digits = digits.replace(thousands, "").replace(",", ".")
    elif "," in digits:  # "12,50" is a decimal comma, "1,234" a thousands separator
        decimal = digits.count(",") == 1 and re.search(r",\d{1,2}$", digits)
        digits = digits.replace(",", ".") if decimal else digits.replace(",", "")
    elif digits.count(".") > 1:  # "1.234.567"
        digits = digits.replace(".", "")
    try:
        amount = float(digits)
    except ValueError:
        return None
    return -amount if negative else amount


MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_TIME = r"(?:[\st,]+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?)?"
_ORD = r"(?:st|nd|rd|th)?"
# (pattern, order of the groups: y = year, m = month number, b = month name, d = day)
DATE_FORMS = [
    (r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", "ymd"),  # ISO (and 2018/12/25)
    (r"(\d{4})(\d{2})(\d{2})", "ymd"),  # 20181225
    (r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})", "dmy"),  # day first: 25/12/2018, 25.12.18
    (rf"(\d{{1,2}}){_ORD}[\s\-/.]*([a-z]+)\.?[\s\-/.,]*(\d{{4}}|\d{{2}})", "dby"),  # 25 Dec 2018
    (rf"([a-z]+)\.?[\s\-/.]*(\d{{1,2}}){_ORD},?[\s\-/.]*(\d{{4}})", "bdy"),  # Dec 25, 2018
    (r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?", "ymd"),  # 2018年12月25日
]


def parse_date(text: str) -> dt.date | None:
    """Rule 5: a calendar date in one of ``DATE_FORMS`` (a time of day after it is ignored)."""
    text = unicodedata.normalize("NFKC", text).strip().casefold()
    for pattern, order in DATE_FORMS:
        match = re.fullmatch(pattern + _TIME, text)
        if match is None:
            continue
        parts = dict(zip(order, match.groups(), strict=True))
        month = MONTHS.get(parts["b"]) if "b" in parts else int(parts["m"])
        year = int(parts["y"])
        if month is None:
            continue
        try:
            return dt.date(year + 2000 if year < 100 else year, month, int(parts["d"]))
        except ValueError:
            continue
    return None


def item_key(item: Json) -> str:
    """A list item (or scalar) as compared and searched: normalised text."""
    if isinstance(item, str):
        return normalize(item)
    return normalize(json.dumps(item, ensure_ascii=False, sort_keys=True))


def list_f1(output: Json, gold: Json) -> float:
    """Rule 6: F1 of the normalised item sets; a scalar counts as a one-item list."""
    got = {item_key(i) for i in (output if isinstance(output, list) else [output])}
    want = {item_key(i) for i in (gold if isinstance(gold, list) else [gold])}
    hits = len(got & want)
    if not hits:
        return 0.0
    precision, recall = hits / len(got), hits / len(want)
    return 2 * precision * recall / (precision + recall)


def field_score(output: Json, gold: Json) -> float:
    """Rules 2–6: one scored field, in [0, 1]."""
    if is_empty(output) or is_empty(gold):
        return 0.0  # a missed or an invented value (both empty is never scored)
    if isinstance(gold, list):
        return list_f1(output, gold)
    if isinstance(gold, bool) or isinstance(output, bool):
        return float(output is gold)
    if _is_number(gold):
        amount = parse_money(output) if isinstance(output, str) else output
        return float(_is_number(amount) and abs(amount - gold) <= 0.005)
    if isinstance(gold, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", gold):
        day = parse_date(output) if isinstance(output, str) else None
        return float(day is not None and day.isoformat() == gold)
    return float(item_key(output) == item_key(gold))


def list_items(document: Json) -> Iterator[tuple[str, Json]]:
    """Every item of every list leaf, with its field path."""
    for path, value in flatten(document).items():
        if isinstance(value, list):
            for item in value:
                yield path, item


def strings_not_in_input(document: Json, schema: Json, text: str) -> tuple[int, int]:
    """Beyond rule 8: (scalar strings, how many of them are not in the input), leaving out
    fields with an ``enum`` or ``format`` (labels and reformatted dates, not copies). Values
    copied from the schema's descriptions are scalars as often as list items."""
    haystack = normalize(text)
    total = missing = 0
    for path, value in flatten(document).items():
        node: Json = schema
        for part in path.split("."):
            props = node.get("properties", {}) if isinstance(node, dict) else {}
            node = props.get(part, {})
        if not isinstance(value, str) or not isinstance(node, dict):
            continue
        if "enum" in node or "format" in node or not value.strip():
            continue
        total += 1
        missing += item_key(value) not in haystack
    return total, missing


def not_in_input(document: Json, text: str) -> list[str]:
    """Rule 8: output list items whose normalised form is not in the normalised input."""
    haystack = normalize(text)
    return [
        item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        for _, item in list_items(document)
        if item_key(item) not in haystack
    ]


@dataclass(frozen=True)
class Score:
    """How one output scored against one case."""

    valid: bool
    score: float
    fields: dict[str, float] = field(default_factory=dict)
    list_items: int = 0  # items of all list leaves (valid documents only)
    not_in_input: list[str] = field(default_factory=list)
    problem: str | None = None  # why the output is invalid


def make_checker(schema: Json) -> Validator:
    """A validator for the schema's own draft, without format checking (rule 1)."""
    cls = validator_for(schema)
    return cls(schema)


def score_document(document: Json, gold: Json, checker: Validator, text: str) -> Score:
    """Rules 1–8 for a parsed output document."""
    if not isinstance(document, dict):
        return Score(False, 0.0, problem="the output is not a JSON object")
    error = next(iter(checker.iter_errors(document)), None)
    if error is not None:
        return Score(False, 0.0, problem=f"/{'/'.join(map(str, error.path))}: {error.message}")
    got, want = flatten(document), flatten(gold)
    fields = {
        path: field_score(got.get(path), want.get(path))
        for path in [*want, *(p for p in got if p not in want)]
        if not (is_empty(got.get(path)) and is_empty(want.get(path)))
    }
    score = sum(fields.values()) / len(fields) if fields else 1.0
    items = sum(1 for _ in list_items(document))
    return Score(True, score, fields, items, not_in_input(document, text))


def score_text(output: str, gold: Json, checker: Validator, text: str) -> Score:
    """Rule 1 then the rest: parse the system's output text and score it."""
    try:
        document = json.loads(output)
    except (json.JSONDecodeError, TypeError) as e:
        return Score(False, 0.0, problem=f"not JSON: {e}")
    return score_document(document, gold, checker, text)


# -- calibration ---------------------------------------------------------------------------------


def pointer_parts(pointer: str) -> list[str]:
    """A JSON pointer's reference tokens, unescaped."""
    if not pointer:
        return []
    from qwenjson.pointer import unescape_token

    return [unescape_token(p) for p in pointer.lstrip("/").split("/")]


def confidence_pairs(
    document: Json, gold: Json, fields: Mapping[str, float], confidence: Mapping[str, float]
) -> list[tuple[float, bool]]:
    """(confidence, right) per leaf of the confidence map (JSON pointer → p).

    A list item is right if its normalised form is among the gold list's items; any other leaf
    is right if its field scored 1.0 (or wasn't scored: empty on both sides).
    """
    gold_leaves = flatten(gold)
    pairs: list[tuple[float, bool]] = []
    for pointer, p in confidence.items():
        node, keys, in_list = document, [], False
        try:
            for part in pointer_parts(pointer):
                in_list = isinstance(node, list)
                node = node[int(part)] if in_list else node[part]
                if not in_list:
                    keys.append(part)
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # a pointer that doesn't resolve in the output: nothing to judge
        if isinstance(node, dict):
            continue
        path = ".".join(keys)
        if in_list:
            want = gold_leaves.get(path)
            want_items = want if isinstance(want, list) else [] if is_empty(want) else [want]
            right = item_key(node) in {item_key(i) for i in want_items}
        else:
            right = fields.get(path, 1.0) == 1.0
        pairs.append((float(p), right))
    return pairs


def calibration_rows(pairs: Iterable[tuple[float, bool]]) -> list[tuple[str, int, int]]:
    """Per bucket of ``BUCKETS``: (label, leaves, right leaves)."""
    rows = []
    pairs = list(pairs)
    for i, (lo, hi) in enumerate(BUCKETS):
        last = i == len(BUCKETS) - 1
        inside = [r for p, r in pairs if lo <= p < hi or (last and p == hi)]
        label = f"[{lo:.1f}, {hi:.1f}{']' if last else ')'}"
        rows.append((label, len(inside), sum(inside)))
    return rows


def format_calibration(pairs: Sequence[tuple[float, bool]]) -> str:
    """The calibration table, or '' when there is no confidence at all."""
    if not pairs:
        return ""
    lines = ["calibration (qwenjson): leaves by confidence, and the share that is right", ""]
    lines.append(f"{'confidence':<12} {'leaves':>7} {'right':>7} {'share':>7}")
    for label, n, right in calibration_rows(pairs):
        share = f"{100 * right / n:6.1f}%" if n else "      -"
        lines.append(f"{label:<12} {n:>7} {right:>7} {share}")
    return "\n".join(lines)


# -- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One extraction task of the corpus."""

    id: str
    source: str
    lang: str
    schema: Json
    input: str
    gold: Json


def load_cases(corpus: Path, sources: Sequence[str] | None, limit: int | None) -> list[Case]:
    """The corpus's cases, in file order, filtered by source and cut to ``limit`` per source."""
    cases: list[Case] = []
    taken: dict[str, int] = {}
    with (corpus / "cases.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            raw = json.loads(line)
            case = Case(
                raw["id"], raw["source"], raw["lang"], raw["schema"], raw["input"], raw["gold"]
            )
            if sources and case.source not in sources:
                continue
            if limit is not None and taken.get(case.source, 0) >= limit:
                continue
            taken[case.source] = taken.get(case.source, 0) + 1
            cases.append(case)
    return cases


def schema_key(schema: Json) -> str:
    return json.dumps(schema, sort_keys=True)


# -- the systems ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One system's answer to one case, scored."""

    system: str
    id: str
    source: str
    lang: str
    output: Json = None  # the parsed document, or the raw text when it isn't JSON
    error: str | None = None
    valid: bool = False
    score: float = 0.0
    fields: dict[str, float] = field(default_factory=dict)
    list_items: int = 0
    not_in_input: list[str] = field(default_factory=list)
    seconds: float = 0.0
    info: dict[str, Json] = field(default_factory=dict)  # attempts, tokens, finish reason
    confidence: dict[str, float] | None = None
    calibration: list[tuple[float, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    """What a system returned for one text: output text or an error, and extras."""

    text: str | None
    error: str | None = None
    info: dict[str, Json] = field(default_factory=dict)
    confidence: dict[str, float] | None = None


class System(Protocol):
    name: str

    def answer(self, case: Case) -> Answer: ...

    def close(self) -> None: ...


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class Qwenjson:
    """``qwenjson extract`` with its defaults, in-process: one Extractor per schema."""

    name = "qwenjson"

    def __init__(
        self, model: Path, threads: int, cache_dir: Path, abstain_below: float | None = None
    ) -> None:
        from qwenjson.pipeline import ExtractOptions, open_model

        self.generator = open_model(model, threads=threads, n_ctx=N_CTX, cache_dir=cache_dir)
        # Whatever ``extract`` does by default; evidence too when the library offers it (it
        # only adds the maps beside the document).
        known = {f.name for f in dataclasses.fields(ExtractOptions)}
        extra: dict[str, Any] = {"evidence": True} if "evidence" in known else {}
        if abstain_below is not None and "abstain_below" in known:
            extra["abstain_below"] = abstain_below
        self.options = ExtractOptions(**extra)
        self.extractors: dict[str, Any] = {}

    def answer(self, case: Case) -> Answer:
        from qwenjson.errors import QwenJsonError
        from qwenjson.pipeline import Extractor

        key = schema_key(case.schema)
        try:
            if key not in self.extractors:
                self.extractors[key] = Extractor(case.schema, self.generator, self.options)
            result = self.extractors[key].run(case.input)
        except QwenJsonError as e:
            return Answer(None, _error_text(e), {"exit_code": e.exit_code})
        except Exception as e:  # a bug in the library: keep going, keep the message
            return Answer(None, _error_text(e), {"exit_code": 1})
        results = getattr(result, "results", ())
        info: dict[str, Any] = {
            "attempts": getattr(result, "attempts", None),
            "generated_tokens": sum(r.generated_tokens for r in results),
        }
        if results:
            # The last attempt's raw text and token trace, so that other definitions of
            # confidence can be scored from one run's records (each piece: start, end byte,
            # log-probability, or null where the grammar forced the text).
            last = results[-1]
            info["raw"] = last.text
            info["trace"] = [
                [t.start, t.end, None if t.logprob is None else round(t.logprob, 5)]
                for t in last.trace
            ]
        return Answer(result.json, info=info, confidence=_confidence_of(result))

    def close(self) -> None:
        self.generator.close()


def _confidence_of(result: Any) -> dict[str, float] | None:
    """The per-leaf confidence map (JSON pointer → p) of an extraction result, if it has one."""
    for holder in (result, getattr(result, "evidence", None)):
        confidence = getattr(holder, "confidence", None)
        if isinstance(confidence, Mapping) and confidence:
            return {str(k): float(v) for k, v in confidence.items()}
    return None


class Anchor:
    """llama-cpp-python's own JSON-schema path, with the raw schema in the system message."""

    name = "anchor"

    def __init__(self, model: Path, threads: int) -> None:
        from qwenjson.buildcheck import load_llama

        # Loaded as qwenjson loads (extra buffer types off on an AMX build, whose first decode
        # they crash); otherwise llama-cpp-python's own path, as its users call it.
        self.llm: Any = load_llama(model, n_ctx=N_CTX, n_threads=threads, verbose=False)

    def answer(self, case: Case) -> Answer:
        schema_text = json.dumps(case.schema, ensure_ascii=False)
        messages = [
            {"role": "system", "content": f"{ANCHOR_INSTRUCTION}\n{schema_text}"},
            {"role": "user", "content": case.input},
        ]
        try:
            reply = self.llm.create_chat_completion(
                messages=messages,
                response_format={"type": "json_object", "schema": case.schema},
                temperature=0,
                max_tokens=ANCHOR_MAX_TOKENS,
            )
        except Exception as e:
            return Answer(None, _error_text(e))
        choice = reply["choices"][0]
        info = {
            "finish_reason": choice.get("finish_reason"),
            "generated_tokens": reply.get("usage", {}).get("completion_tokens"),
        }
        return Answer(choice["message"]["content"] or "", info=info)

    def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if callable(close):
            close()
        self.llm = None


class Gold:
    """Not a model: answers each case with its gold object (the scorer's sanity check)."""

    name = "gold"

    def answer(self, case: Case) -> Answer:
        return Answer(json.dumps(case.gold, ensure_ascii=False))

    def close(self) -> None:
        pass


# -- running -------------------------------------------------------------------------------------


class Checkers:
    """One validator per distinct schema."""

    def __init__(self) -> None:
        self._by_key: dict[str, Validator] = {}

    def __call__(self, schema: Json) -> Validator:
        key = schema_key(schema)
        if key not in self._by_key:
            self._by_key[key] = make_checker(schema)
        return self._by_key[key]


def score_answer(
    system: str, case: Case, answer: Answer, seconds: float, checker: Validator
) -> Run:
    """A system's answer to a case, scored (an error scores 0 and is invalid)."""
    run = Run(system, case.id, case.source, case.lang, seconds=seconds, info=answer.info)
    if answer.text is None:
        run.error = answer.error or "no output"
        return run
    score = score_text(answer.text, case.gold, checker, case.input)
    try:
        run.output = json.loads(answer.text)
    except json.JSONDecodeError:
        run.output = answer.text
    run.error = score.problem
    run.valid, run.score, run.fields = score.valid, score.score, score.fields
    run.list_items, run.not_in_input = score.list_items, score.not_in_input
    if answer.confidence and score.valid:
        run.confidence = answer.confidence
        run.calibration = confidence_pairs(run.output, case.gold, score.fields, answer.confidence)
    return run


def run_system(
    system: System,
    cases: Sequence[Case],
    checkers: Checkers,
    out: IO[str] | None,
    log: Callable[[str], None],
) -> list[Run]:
    """Every case through ``system``, timed around the answer; records written as they finish."""
    runs = []
    for i, case in enumerate(cases, 1):
        started = time.perf_counter()
        answer = system.answer(case)
        seconds = time.perf_counter() - started
        run = score_answer(system.name, case, answer, seconds, checkers(case.schema))
        runs.append(run)
        mark = "valid" if run.valid else f"INVALID ({(run.error or '').splitlines()[0][:70]})"
        log(f"[{system.name} {i}/{len(cases)}] {case.id}: {run.score:.2f} {mark} {seconds:.1f}s")
        if out is not None:
            record = asdict(run)
            record.pop("calibration")
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    return runs


# -- the table -----------------------------------------------------------------------------------


def _group_cells(runs: Sequence[Run]) -> list[str]:
    """score, valid, not-in-input, seconds mean / max for a group of runs."""
    if not runs:
        return ["-", "-", "-", "-", "-"]
    items = sum(r.list_items for r in runs)
    missing = sum(len(r.not_in_input) for r in runs)
    share = f"{100 * missing / items:.0f}%" if items else "-"
    seconds = [r.seconds for r in runs]
    return [
        f"{100 * sum(r.score for r in runs) / len(runs):.1f}%",
        f"{sum(r.valid for r in runs)}/{len(runs)}",
        f"{missing}/{items} {share}",
        f"{sum(seconds) / len(seconds):.1f}",
        f"{max(seconds):.1f}",
    ]


def format_table(cases: Sequence[Case], results: Mapping[str, Sequence[Run]]) -> str:
    """Per source, per language and overall: each system's cells side by side."""
    # (label, the attribute a group shares, its value); overall: every case
    groups = [(s, "source", s) for s in dict.fromkeys(c.source for c in cases)]
    groups += [(f"lang {g}", "lang", g) for g in dict.fromkeys(c.lang for c in cases)]
    groups.append(("overall", "", ""))

    def member(item: Case | Run, attr: str, value: str) -> bool:
        return not attr or getattr(item, attr) == value

    heads = ["score", "valid", "not in input", "s mean", "s max"]
    widths = [6, 7, 13, 6, 5]
    name_w = max(12, *(len(g) for g, _, _ in groups))
    top = " " * (name_w + 6)
    head = f"{'':<{name_w}} {'cases':>5}"
    for system in results:
        span = sum(widths) + len(widths) - 1
        top += f" | {system:<{span}}"
        head += " | " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    lines = [top.rstrip(), head, "-" * len(head)]
    for label, attr, value in groups:
        n = sum(1 for c in cases if member(c, attr, value))
        row = f"{label:<{name_w}} {n:>5}"
        for runs in results.values():
            cells = _group_cells([r for r in runs if member(r, attr, value)])
            row += " | " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        if label == "overall":
            lines.append("-" * len(head))
        lines.append(row)
    return "\n".join(lines)


def worst(runs: Sequence[Run], n: int = 10) -> list[Run]:
    """The ``n`` lowest-scoring runs (invalid ones first, then by score)."""
    return sorted(runs, key=lambda r: (r.valid, r.score, -r.seconds))[:n]


# -- self-check ----------------------------------------------------------------------------------


def check_rules() -> None:
    """The README's own examples of the rules, as assertions (cheap; runs every time)."""
    assert normalize("NO.53, JALAN") == normalize("no 53 jalan")
    assert normalize("《魔兽世界》") == normalize("魔兽世界")
    assert parse_money("RM 1,234.50") == 1234.5
    assert parse_money("12,50") == 12.5
    assert field_score("RM 41.20", 41.2) == 1.0 and field_score(41.21, 41.2) == 0.0
    for form in ["2018-12-25", "25/12/2018", "25 Dec 2018", "Dec 25, 2018", "2018年12月25日"]:
        assert field_score(form, "2018-12-25") == 1.0, form
    assert field_score("12/25/2018", "2018-12-25") == 0.0  # day-first only
    assert list_f1(["a", "A.", "b"], ["a", "c"]) == 0.5
    assert field_score("x", ["x"]) == 1.0  # a scalar for a list is a one-item list
    schema = {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}
    assert score_text('{"d": "not a date"}', {"d": "x"}, make_checker(schema), "").valid
    assert not score_text("[1]", {}, make_checker(schema), "").valid
    case = score_document(
        {"a": {"b": "x", "c": ""}, "l": ["q", "z"]},
        {"a": {"b": "X"}, "l": ["q"]},
        make_checker({"type": "object"}),
        "q!",
    )
    assert case.fields == {"a.b": 1.0, "l": 2 / 3} and case.not_in_input == ["z"], case
    assert score_document({}, {}, make_checker({"type": "object"}), "").score == 1.0
    pairs = confidence_pairs(
        {"l": ["q", "z"], "a": "x"},
        {"l": ["q"]},
        {"a": 0.0},
        {"/l/0": 0.95, "/l/1": 0.6, "/a": 0.2},
    )
    assert pairs == [(0.95, True), (0.6, False), (0.2, False)], pairs
    assert calibration_rows([(1.0, True), (0.5, False)])[3] == ("[0.9, 1.0]", 1, 1)


def check_gold(cases: Sequence[Case], runs: Sequence[Run]) -> list[str]:
    """Problems with the gold run: it must score 100% with every case valid."""
    problems = [
        f"{r.id}: {r.error or 'score'} {r.score:.3f}" for r in runs if not r.valid or r.score != 1.0
    ]
    if len(runs) != len(cases):
        problems.append(f"{len(runs)} runs for {len(cases)} cases")
    return problems


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="the .gguf (required unless --gold)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--no-anchor", action="store_true", help="skip llama-cpp-python")
    parser.add_argument("--source", action="append", help="only this source (repeatable)")
    parser.add_argument("--limit", type=int, help="at most N cases per source")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="per-case records (JSON lines)")
    parser.add_argument("--gold", action="store_true", help="score the gold (sanity check)")
    parser.add_argument(
        "--abstain-below",
        type=float,
        metavar="P",
        help="qwenjson's --abstain-below (default: the library's); 0 keeps every value, for "
        "scripts/abstain_threshold.py",
    )
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        metavar="OUT",
        help="print the tables from --out records of earlier runs (e.g. one run per process, "
        "split by --source), scored again; no model is run",
    )
    args = parser.parse_args(argv)
    if args.model is None and not args.gold and not args.report:
        parser.error('--model is required (e.g. "$(../shared/models/get-bench-model.sh)")')
    return args


def report(paths: Sequence[Path], corpus: Path) -> dict[str, list[Run]]:
    """Runs from ``--out`` records, scored again from their outputs (first record per system
    and case wins), in the corpus's order."""
    cases = {c.id: c for c in load_cases(corpus, None, None)}
    checkers = Checkers()
    results: dict[str, dict[str, Run]] = {}
    for path in paths:
        for line in path.read_text("utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            case = cases[record["id"]]
            runs = results.setdefault(record["system"], {})
            if case.id in runs:
                continue
            output = record.get("output")
            text = None if output is None else json.dumps(output, ensure_ascii=False)
            answer = Answer(text, record.get("error"), record.get("info") or {})
            answer = replace(answer, confidence=record.get("confidence"))
            runs[case.id] = score_answer(
                record["system"], case, answer, record["seconds"], checkers(case.schema)
            )
    order = list(cases)
    return {s: sorted(r.values(), key=lambda r: order.index(r.id)) for s, r in results.items()}


def print_strings_diagnostic(cases: Sequence[Case], runs: Sequence[Run]) -> None:
    """Per source: scalar strings not found in the input (see ``strings_not_in_input``)."""
    by_id = {c.id: c for c in cases}
    counts: dict[str, list[int]] = {}
    for r in runs:
        if not r.valid:
            continue
        case = by_id[r.id]
        total, missing = strings_not_in_input(r.output, case.schema, case.input)
        cell = counts.setdefault(case.source, [0, 0])
        cell[0] += total
        cell[1] += missing
    shown = ", ".join(f"{s} {m}/{t}" for s, (t, m) in counts.items())
    total = sum(t for t, _ in counts.values())
    missing = sum(m for _, m in counts.values())
    print(f"scalar strings not in the input ({runs[0].system if runs else ''}): {missing}/{total}")
    print(f"  {shown}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_rules()
    results: dict[str, list[Run]]  # by system: read back (--report) or run here
    if args.report:
        results = report(args.report, args.corpus)
        ids = {r.id for runs in results.values() for r in runs}
        cases = [c for c in load_cases(args.corpus, None, None) if c.id in ids]
        print(f"corpus: {args.corpus}; records from {', '.join(map(str, args.report))}")
        print()
        print(format_table(cases, results))
        for runs in results.values():
            print()
            print_strings_diagnostic(cases, runs)
        if "qwenjson" in results:
            pairs = [p for r in results["qwenjson"] for p in r.calibration]
            print()
            print(format_calibration(pairs) or "calibration: no confidence (skipped)")
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    cases = load_cases(args.corpus, args.source, args.limit)
    if not cases:
        log(f"no cases in {args.corpus} for {args.source}")
        return 2
    if not args.gold:
        log(f"qwenjson from {qwenjson.__file__}; {len(cases)} cases")
    checkers = Checkers()
    results = {}
    load = os.getloadavg()
    out = args.out.open("w", encoding="utf-8") if args.out else None
    try:
        if args.gold:
            results["gold"] = run_system(Gold(), cases, checkers, out, lambda _: None)
        else:
            with tempfile.TemporaryDirectory(prefix="quality-kv-") as cache_dir:
                systems: list[Callable[[], System]] = [
                    lambda: Qwenjson(args.model, args.threads, Path(cache_dir), args.abstain_below)
                ]
                if not args.no_anchor:
                    systems.append(lambda: Anchor(args.model, args.threads))
                for make in systems:
                    system = make()  # one model in memory at a time
                    try:
                        results[system.name] = run_system(system, cases, checkers, out, log)
                    finally:
                        system.close()
                        del system
                        gc.collect()
    finally:
        if out is not None:
            out.close()
    load_after = os.getloadavg()

    print(f"corpus: {args.corpus} ({len(cases)} cases)")
    if not args.gold:
        print(f"model: {args.model}; threads {args.threads}; qwenjson from {qwenjson.__file__}")
        print(f"load average (1 min) before / after: {load[0]:.2f} / {load_after[0]:.2f}")
    print()
    print(format_table(cases, results))
    if "qwenjson" in results:
        pairs = [p for r in results["qwenjson"] for p in r.calibration]
        table = format_calibration(pairs)
        print()
        print(table or "calibration: no confidence in qwenjson's results (skipped)")
        print()
        print("worst qwenjson cases:")
        for r in worst(results["qwenjson"]):
            what = r.error or json.dumps(r.output, ensure_ascii=False)
            print(f"  {r.id:<24} {r.score:.2f} {r.seconds:5.1f}s {what[:150]}")
    if args.gold:
        problems = check_gold(cases, results["gold"])
        for problem in problems:
            print(f"gold check FAILED: {problem}")
        if problems:
            return 1
        print(f"\ngold check passed: {len(cases)} cases, all valid, 100%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
