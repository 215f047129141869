"""Evidence and confidence for each value of a generated document, and abstention.

After generation the document's leaves (strings, numbers, booleans, nulls) are matched up with
what produced them:

* **evidence**: where in the input the value comes from, as code point offsets ``[start, end)``
  such that ``text[start:end]`` is the value's source. A grounded string's span is the one the
  constraint matched while it was written; other strings are looked up verbatim, numbers by
  value among the text's numbers (``41.2`` is found in ``41.20``). None: the text has no source.
* **confidence**: the probability the model gave the tokens it chose for the value, multiplied
  (``exp`` of the summed log-probabilities over the pieces that overlap the value's bytes in
  the output, the unconstrained softmax; text the grammar forced counts 1). So a value the
  model was made to write instead of its own first choice gets the low probability it gave it.
* **abstention**: a value the text has no source for is taken out where the schema lets it go:
  an optional member is left out, a nullable one becomes null, a list item is dropped (the
  rules come from ``qwenjson.grounding.grounding_rules``). An object is taken out the same
  way, where the schema lets it go (an optional object is left out, a nullable one, Pydantic's
  ``Optional[Model]``, is null, an object in a list is dropped), when the model's own choice
  for a required text member was refused: the text has no such value, and the object the
  model was made to finish with the text's nearest span is not one the text describes. (A
  number or date with no source doesn't take its object along: "two coffees" has a quantity
  the text spells out; nor does a value whose words went to another field: the model chose
  them from the text.) So is an optional or nullable
  grounded text value the model wrote with a confidence below ``abstain_below``: the model
  was unsure that this span belongs under this field (it claims words only after every other
  field has).
  If the document would no longer validate, the unsure values come back; if it still
  wouldn't, it is kept whole.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.protocols import Validator

from qwenjson.fields import Abstain, FieldRule, Path, Pattern, pattern_of
from qwenjson.generation import TokenTrace
from qwenjson.grounding import ValueRecord
from qwenjson.jsontypes import is_number
from qwenjson.pointer import to_pointer, value_at
from qwenjson.repeats import json_equal
from qwenjson.source import SourceText, may_cut

__all__ = ["Annotated", "annotate", "kept_part", "leaf_spans", "unsure"]


@dataclass(frozen=True)
class Leaf:
    """One scalar of the output: its path and byte range in the raw output text."""

    path: Path
    start: int
    end: int


@dataclass(frozen=True)
class Annotated:
    """A document after abstention, with evidence and confidence keyed by JSON pointer.

    ``unsupported``: pointers of values that needed a source and have none (a grounded string
    the model didn't choose, a number the text doesn't contain), in document order.
    """

    data: Any
    evidence: dict[str, list[int] | None]
    confidence: dict[str, float]
    unsupported: tuple[str, ...]


def leaf_spans(raw: bytes) -> list[Leaf]:
    """The scalars of the JSON text ``raw`` with their byte ranges (``raw`` must be valid)."""
    leaves: list[Leaf] = []
    # Each open container: [is_object, path, next index or current key].
    stack: list[list[Any]] = []
    pos, n = 0, len(raw)
    expect_key = False
    while pos < n:
        c = raw[pos]
        if c in b" \t\r\n:,":
            if c == 0x2C and stack and stack[-1][0]:
                expect_key = True
            elif c == 0x2C and stack:
                stack[-1][2] += 1
            pos += 1
            continue
        if c in b"]}":
            stack.pop()
            expect_key = False  # `{}` closed with no key read: the next string is a value
            pos += 1
            continue
        path: Path = (*tuple(stack[-1][1]), stack[-1][2]) if stack else ()
        if c in b"{[":
            is_object = c == 0x7B
            stack.append([is_object, path, 0])
            expect_key = is_object
            pos += 1
            continue
        if c == 0x22:
            end = _string_end(raw, pos)
            if expect_key and stack:
                stack[-1][2] = json.loads(raw[pos:end])
                expect_key = False
            else:
                leaves.append(Leaf(path, pos, end))
            pos = end
            continue
        end = pos
        while end < n and raw[end] not in b" \t\r\n,]}":
            end += 1
        leaves.append(Leaf(path, pos, end))
        pos = end
    return leaves


def _string_end(raw: bytes, start: int) -> int:
    pos = start + 1
    while raw[pos] != 0x22:
        pos += 2 if raw[pos] == 0x5C else 1
    return pos + 1


def annotate(
    data: Any,
    raw: str,
    *,
    source: SourceText,
    records: Sequence[ValueRecord],
    trace: Sequence[TokenTrace],
    rules: Mapping[Pattern, FieldRule],
    validator: Validator,
    abstain: bool = True,
    abstain_below: float = 0.0,
    objects: Mapping[Pattern, Abstain] | None = None,
    unique: Collection[Path] = (),
    unruled_numbers: bool = True,
    claims_first: Callable[[Path, Any], bool] | None = None,
    sure: Callable[[Path, Any], bool] | None = None,
    cut: Callable[[Path, str], tuple[int, int] | None] | None = None,
) -> Annotated:
    """Evidence, confidence and abstention for ``data``, parsed from the model's ``raw`` text.

    ``abstain_below``: an optional or nullable grounded text value (not a list item) with a
    lower confidence is abstained from, as one with no source is. ``objects``: what each object
    becomes when a required member has no source (``SchemaFields.objects``; none: kept).
    ``unique``: the lists (paths in ``data``) that keep only the first copy of each item, in
    every pass (``qwenjson.repeats``: the document validates only so). ``unruled_numbers``: whether
    a number where ``rules`` don't reach (an ``int | str``, a ``Decimal``) needs a source: the
    run's grounding default (off with ``--no-grounding``). ``claims_first``: whether a value
    belongs where it was written by other signs than the model's (``field_examples``): such a
    value takes its words before the others do. ``sure``: whether a value is never abstained
    from as unsure, as one the examples will move to an empty sibling (``ExampleTyping.moves``):
    the model doubted which field its words go under, and the examples answer that (a value
    they place where it stands may still be doubted: its words may be too many). ``cut``: the
    part ``(lo, hi)`` of a grounded text member (not a list item) that is its field's, when
    the model ran several fields' words together (``ExampleTyping.own_part``): the value is
    that part, with its words, before any field claims words, so that the others' stay free;
    its confidence stays the whole span's, a lower bound of the part's, and it is not abstained
    from as unsure: the model's doubt may have been the rest of the span, and the examples
    place the part (``scripts/quality.py --no-anchor --source zh-address``: 29.6 -> 30.3%,
    one document better, none worse)."""
    object_rules = objects or {}
    gone = _hollow_objects(records, object_rules) if abstain else set()
    raw_bytes = raw.encode("utf-8")
    by_start = {r.out_start: r for r in records}
    leaves = leaf_spans(raw_bytes)
    values = {leaf.path: value_at(data, leaf.path) for leaf in leaves}
    last_start = 0
    # First the place each value would come from, in document order (a repeated word: the
    # occurrence after the last value's source), and the model's probability for it.
    found: dict[Path, tuple[tuple[int, int] | None, float, bool, FieldRule | None, bytes]] = {}
    recut: dict[Path, str] = {}  # the members ``cut`` gave a part of, that part
    for leaf in leaves:
        value = values[leaf.path]
        rule = rules.get(pattern_of(leaf.path))
        record = by_start.get(leaf.start)
        span: tuple[int, int] | None
        content = b""
        if record is not None:
            span = record.span if record.status == "grounded" else None
            kind = record.rule.kind
            if span is not None:
                said = raw_bytes[leaf.start : leaf.end]
                said = said if kind in ("number", "integer") else said[1:-1]
                # The place the text says it after the last value's source, if it says it
                # twice. A date or number claims no words from other fields (below).
                # A list's string keeps the place it took while written (each place of the
                # text serves one item: SpanTracker._item_span); searched again, two "Paris"
                # of "Paris, Paris, London" or of a list out of the text's order landed on one.
                if not (kind == "text" and leaf.path and isinstance(leaf.path[-1], int)):
                    span = source.values(kind).span(said, after=last_start) or span
                content = said if kind == "text" else b""
            needs_source = True
        else:
            span = _find(source, value, last_start)
            # A field marked ``x-grounded: false`` needs none, a number anywhere else does
            # unless grounding is off by default.
            if rule is not None:
                needs_source = rule.grounded
            else:
                needs_source = unruled_numbers and is_number(value)
        if cut is not None and span is not None and record is not None and content:
            part = _cut(source, cut, leaf.path, value, span)
            if part is not None:
                value, span = part
                values[leaf.path] = recut[leaf.path] = value
                # As the text's own escaped form has it (``SourceText``), lone surrogates too.
                content = json.dumps(value, ensure_ascii=False)[1:-1].encode(
                    "utf-8", "surrogatepass"
                )
        if span is not None:
            last_start = span[0]
        found[leaf.path] = (
            span,
            _confidence(trace, leaf.start, leaf.end),
            needs_source,
            rule,
            content,
        )

    # A piece of the text is the source of one field: the 0.5B otherwise puts the same words
    # under every entity type of a schema, or a person's surname under "city". Where grounded
    # values of two fields overlap, the one the model gave the higher probability keeps it
    # (ties: the first), the other takes another occurrence or has no source. Two other rules
    # scored lower with scripts/quality.py --no-anchor (bench model, 2 threads; 36.6% with
    # this one): the value written first keeps the words, 35.6%; and a span another value
    # took refused while the model writes (it can't copy at all), 35.2%, every source lower
    # or equal. The 0.5B's copies say something: the later copy is often the right field.
    # Before the probability, the schema's examples (``claims_first``,
    # ``qwenjson.field_examples``): a value they place where it was written takes its words first.
    # A value to be abstained from as unsure (``unsure``) claims words last: the field it would
    # have taken them from keeps them, and if the value comes back (the fallback below) where
    # its words are another field's, it has no source. So do the values of an object that goes.
    def first(path: Path) -> bool:
        return claims_first is not None and claims_first(path, values[path])

    doubtful = {
        path
        for path, (_, conf, _, rule, _) in found.items()
        if abstain
        and rule is not None
        and unsure(values[path], conf, rule, abstain_below)
        and not (sure is not None and sure(path, values[path]))
        and path not in recut
    }
    owners: list[tuple[int, int, Pattern]] = []
    contested = [p for p, f in found.items() if f[4] and f[0] is not None]
    last = doubtful | {p for p in contested if any(p[: len(g)] == g for g in gone)}

    for path in sorted(contested, key=lambda p: (p in last, not first(p), -found[p][1])):
        span, conf, needs, rule, content = found[path]
        assert span is not None
        span = _unowned(source, content, span, pattern_of(path), owners)
        if span is not None:
            owners.append((*span, pattern_of(path)))
        found[path] = (span, conf, needs, rule, content)
    meta: dict[Path, tuple[list[int] | None, float, bool, FieldRule | None]] = {}
    for path, (span, conf, needs_source, rule, _) in found.items():
        value = values[path]
        missing = needs_source and span is None and value not in ("", None)
        meta[path] = ([span[0], span[1]] if span else None, conf, missing, rule)

    def build(
        drop: bool, doubt: bool, hollow: bool, once: bool
    ) -> tuple[Any, dict[str, list[int] | None], dict[str, float], list[str]]:
        evidence: dict[str, list[int] | None] = {}
        confidence: dict[str, float] = {}
        unsupported: list[str] = []

        def mark() -> tuple[int, int]:
            return len(evidence), len(unsupported)

        def since(at: tuple[int, int]) -> list[tuple[str, list[int] | None]]:
            """What was recorded after ``at`` (a value's own leaves: they are the last)."""
            return list(itertools.islice(reversed(evidence.items()), len(evidence) - at[0]))

        def forget(at: tuple[int, int]) -> list[float]:
            """Take out what was recorded after ``at``; returns the confidences."""
            taken = [confidence.pop(evidence.popitem()[0]) for _ in range(len(evidence) - at[0])]
            del unsupported[at[1] :]
            return taken

        def walk(node: Any, old: Path, new: Path) -> tuple[bool, Any]:
            info = meta.get(old)
            if info is not None and not isinstance(node, dict | list):
                span, conf, missing, rule = info
                node = recut.get(old, node)
                # An empty grounded string is an abstention; so is a value with no source, and
                # an unsure one (``doubt``).
                empty = rule is not None and (
                    (node == "" and rule.grounded) or missing or (doubt and old in doubtful)
                )
                if drop and empty and rule is not None and rule.abstain in ("omit", "item"):
                    return False, None
                if drop and empty and rule is not None and rule.abstain == "null":
                    node, span, missing = None, None, False
                pointer = to_pointer(new)
                evidence[pointer] = span
                confidence[pointer] = conf
                if missing:
                    unsupported.append(pointer)
                return True, node
            if isinstance(node, dict):
                out: dict[str, Any] = {}
                start = mark()
                for key, sub in node.items():
                    keep, value = walk(sub, (*old, key), (*new, key))
                    if keep:
                        out[key] = value
                if not (hollow and old in gone):
                    return True, out
                # Its leaves' confidences multiplied: the probability of what it held.
                product = math.prod(forget(start))
                if object_rules.get(pattern_of(old)) in ("omit", "item"):
                    return False, None
                evidence[to_pointer(new)] = None
                confidence[to_pointer(new)] = round(product, 4)
                return True, None
            if isinstance(node, list):
                items: list[Any] = []
                mentions: set[str] = set()  # each kept item with its sources, as JSON
                places: set[tuple[Any, tuple[int, ...] | None]] = set()  # strings, where said
                for i, sub in enumerate(node):
                    # A list that repeats an item ended there (``Grounding``): the repeat goes;
                    # a string the text says again is another item (Paris, London, Paris).
                    if drop and isinstance(sub, dict | list):
                        if sub in node[:i] and _grounded_within(meta, values, (*old, i)):
                            continue
                    elif drop and _ended_list_at(meta, (*old, i)):
                        info = meta.get((*old, i))
                        place = (sub, tuple(info[0]) if info and info[0] else None)
                        if place in places:
                            continue
                        places.add(place)
                    start = mark()
                    keep, value = walk(sub, (*old, i), (*new, len(items)))
                    if not keep:
                        continue
                    if old in unique and any(json_equal(value, kept) for kept in items):
                        forget(start)
                        continue
                    # So does an item that is one already kept, from the same words of the text,
                    # once values are taken out (the model wrote "Bob" again and again with ages
                    # the text doesn't give); another "Bob" of the text is another item.
                    if once and isinstance(value, dict | list):
                        prefix = len(to_pointer((*new, len(items))))
                        sources = [(p[prefix:], span) for p, span in since(start) if span]
                        mention = json.dumps([value, sources])
                        if mention in mentions and _grounded_within(meta, values, (*old, i)):
                            forget(start)
                            continue
                        mentions.add(mention)
                    items.append(value)
                return True, items
            return True, node

        _, result = walk(data, (), ())
        return result, evidence, confidence, unsupported

    # If the document would no longer validate, the unsure values come back first (a higher
    # threshold never restores a value with no source), then the items listed once, then the
    # objects taken out whole, then everything.
    for drop, doubt, once, hollow in (
        (abstain, abstain, abstain, abstain),
        (True, False, True, True),
        (True, False, False, True),
        (True, False, False, False),
        (False, False, False, False),
    ):
        result, evidence, confidence, unsupported = build(drop, doubt, hollow, once)
        if not abstain or result == data or validator.is_valid(result):
            break
    return Annotated(result, evidence, confidence, tuple(unsupported))


def _hollow_objects(
    records: Sequence[ValueRecord], objects: Mapping[Pattern, Abstain]
) -> set[Path]:
    """The objects to take out whole: for each required, non-nullable text member whose
    model's own choice was refused (``unsupported``), the nearest object holding it that the
    schema lets go (never the root: it holds everything else the text gave)."""
    gone: set[Path] = set()
    for record in records:
        rule = record.rule
        if record.status != "unsupported" or rule.kind != "text" or rule.abstain != "none":
            continue
        at = record.path[:-1]
        while at and objects.get(pattern_of(at), "none") == "none" and isinstance(at[-1], str):
            at = at[:-1]
        if at and objects.get(pattern_of(at), "none") != "none":
            gone.add(at)
    return gone


def unsure(node: Any, confidence: float, rule: FieldRule, below: float) -> bool:
    """Whether ``node`` is a grounded text value the schema lets go that the model wrote with a
    confidence under ``below``. List items are kept: a list is scored by its items together,
    and dropping the unsure ones lowered every measured score (see ``ExtractOptions``)."""
    return (
        isinstance(node, str)
        and node != ""
        and rule.grounded
        and rule.kind == "text"
        and rule.abstain in ("omit", "null")
        and confidence < below
    )


def _ended_list_at(
    meta: Mapping[Path, tuple[list[int] | None, float, bool, FieldRule | None]], at: Path
) -> bool:
    """Whether the list item at ``at`` is one whose repeat ``Grounding`` ends a list on: a
    grounded string (a repeated number or boolean is data: scores 90, 85, 90)."""
    info = meta.get(at)
    rule = info[3] if info is not None else None
    return rule is not None and rule.grounded and rule.kind == "text"


def _grounded_within(
    meta: Mapping[Path, tuple[list[int] | None, float, bool, FieldRule | None]],
    values: Mapping[Path, Any],
    at: Path,
) -> bool:
    """Whether grounded text was written under the path ``at`` (a non-empty string: then its
    repeats are dropped, as ``Grounding`` ends a list that repeats one)."""
    n = len(at)
    return any(
        len(path) > n
        and path[:n] == at
        and rule is not None
        and rule.grounded
        and rule.kind == "text"
        and isinstance(values.get(path), str)
        and values.get(path) != ""
        for path, (_, _, _, rule) in meta.items()
    )


def _unowned(
    source: SourceText,
    content: bytes,
    span: tuple[int, int],
    pattern: Pattern,
    owners: Sequence[tuple[int, int, Pattern]],
) -> tuple[int, int] | None:
    """``span``, or another occurrence of ``content`` if another field's source overlaps that
    one; None when every occurrence overlaps another field's source."""

    def free(candidate: tuple[int, int]) -> bool:
        start, end = candidate
        return all(p == pattern or e <= start or s >= end for s, e, p in owners)

    if free(span):
        return span
    for start in source.occurrences(content):
        other = source.span_at(start, len(content))
        if other is not None and free(other):
            return other
    return None


def _cut(
    source: SourceText,
    cut: Callable[[Path, str], tuple[int, int] | None],
    path: Path,
    value: Any,
    span: tuple[int, int],
) -> tuple[str, tuple[int, int]] | None:
    """The part of a member's grounded ``value`` that ``cut`` keeps, with its span, when the
    value is the text's own words at ``span`` (then so is the part)."""
    if not path or isinstance(path[-1], int) or not isinstance(value, str):
        return None
    if not source.says(value, span):
        return None
    part = cut(path, value)
    if part is None or part == (0, len(value)):
        return None
    return kept_part(value, span, part)


def kept_part(
    value: str, span: tuple[int, int] | list[int], part: tuple[int, int]
) -> tuple[str, tuple[int, int]]:
    """The part ``(lo, hi)`` of ``value``, whose source is ``span``, with the part's span;
    a cut that keeps no part of ``value`` is a bug (ValueError)."""
    lo, hi = part
    if not 0 <= lo < hi <= len(value):
        raise ValueError(f"a cut must keep a part of {value!r}, not [{lo}, {hi})")
    return value[lo:hi], (span[0] + lo, span[0] + hi)


def _confidence(trace: Sequence[TokenTrace], start: int, end: int) -> float:
    total = 0.0
    for piece in trace:
        if piece.end > start and piece.start < end and piece.logprob is not None:
            total += piece.logprob
    return round(math.exp(total), 4)


def _all_places(haystack: str, needle: str) -> Iterator[int]:
    at = haystack.find(needle)
    while at >= 0:
        yield at
        at = haystack.find(needle, at + 1)


def _find(source: SourceText, value: Any, after: int) -> tuple[int, int] | None:
    """Where a value that wasn't grounded while generated occurs in the text, if anywhere."""
    text, offset = source.text, source.offset
    if isinstance(value, str) and value:
        for haystack, needle in ((text, value), (text.casefold(), value.casefold())):
            if len(haystack) != len(text):
                continue  # casefolding changed lengths: offsets would not map back
            # Whole words only, as a grounded value's source: an enum label "happy" has none
            # in "unhappy". The match's own length: "Hauptstraße" casefolds longer.
            places = [
                at
                for at in _all_places(haystack, needle)
                if may_cut(text, at) and may_cut(text, at + len(needle))
            ]
            at = next((a for a in places if a >= after - offset), places[0] if places else -1)
            if at >= 0:
                return at + offset, at + offset + len(needle)
        return None
    if is_number(value):
        # The numbers as a grounded number reads them (``12,50``, ``1,234.50``, a sign only
        # where it isn't a dash), so both ways find the same places; read once per text.
        best: tuple[int, int] | None = None
        for reading in source.readings("number").readings:
            try:
                found, wanted = float(reading.content), float(value)
            except (ValueError, OverflowError):  # a number too large for a float isn't found
                continue
            if math.isclose(found, wanted, rel_tol=0.0, abs_tol=1e-9):
                if reading.span[0] >= after:
                    return reading.span
                best = best or reading.span
        return best
    return None
