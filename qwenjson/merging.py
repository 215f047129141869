"""Merging the documents extracted from the pieces of a long text into one.

Each piece's document comes with its evidence in whole-document coordinates. They are merged in
document order, the first piece's document first:

* an object member no earlier piece gave is added; one an earlier piece gave is kept, unless the
  text had no source for it there (``unsupported``) and this piece has one, or (``confident``)
  this piece has one the model gave a higher confidence: then this piece's value replaces it
  (so a required field is taken from a piece that grounds it, else from the first piece, as a
  short text would give it);
* objects are merged member by member, at every depth;
* a list gets the items it doesn't hold yet, appended in the order of their sources in the
  text (those without a source where the model put them). An item is the one it already
  holds when the two are equal once normalised (case, width and blanks), or when a leaf both
  ground comes from overlapping spans of the text and none both ground from apart says two
  different things (the same person seen in two overlapping pieces, once as "Ann" and once as
  "Ann Lee", with a role each found in its own place; two people who share a role stay two);
* other values: the first piece's (with ``confident``, the surest piece's among those with a
  source in the text, when one has; a null the model abstained to has none).

The merged document is checked after each piece, by asking only what the piece's additions can
have changed (``qwenjson.local_validation``; the whole document where the schema doesn't allow
that). When a piece's additions together break it (``maxItems``, ``oneOf``, …), they are taken
back and applied one at a time, each kept only if the document still validates;
``Merger.skipped`` counts those left out. The first piece's document is valid, so the merged one
always is. Nothing in a piece's merge costs what the whole document does (a scan of it, a copy
of it): ``scripts/bench_merge.py`` on an idle 2-core machine, 1,500 / 3,000 / 6,000 distinct
people in 136 / 272 / 545 pieces, 3.4 / 11.8 / 42.9 s before this was so, 0.18 / 0.38 / 0.78 s
after, and 1.5 s for 12,000. Only a list with ``uniqueItems`` is passed over per piece
(``local_validation._still_unique``: 6,000 such people, 9.6 s; it was 102 s for 1,500).
"""

from __future__ import annotations

import bisect
import copy
import json
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema.protocols import Validator

from qwenjson.local_validation import LocalCheck
from qwenjson.pointer import follow_local_refs, to_pointer, unescape_token, value_at
from qwenjson.validate import validation_errors

__all__ = ["Found", "Merger", "normalised"]

PathT = tuple[str | int, ...]
Span = list[int] | None


@dataclass(frozen=True)
class Found:
    """One piece's document, with evidence and confidence by JSON pointer (whole-document
    offsets) and the pointers of values with no source in the text."""

    data: Any
    evidence: dict[str, Span] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (for the checkpoint); ``from_json`` reads it back exactly."""
        return {
            "data": self.data,
            "evidence": self.evidence,
            "confidence": self.confidence,
            "unsupported": list(self.unsupported),
        }

    @classmethod
    def from_json(cls, value: Any) -> Found:
        """The inverse of ``to_json``; ValueError/TypeError/KeyError on anything else."""
        evidence = {str(k): _span(v) for k, v in dict(value["evidence"]).items()}
        confidence = {str(k): float(v) for k, v in dict(value["confidence"]).items()}
        unsupported = tuple(str(p) for p in value["unsupported"])
        return cls(value["data"], evidence, confidence, unsupported)


def _span(value: Any) -> Span:
    if value is None:
        return None
    start, end = value
    return [int(start), int(end)]


@dataclass(frozen=True)
class _Set:
    """Put the piece's value at ``source`` into the merged document at ``path``."""

    path: PathT
    source: PathT


@dataclass(frozen=True)
class _Append:
    """Append the piece's value at ``source`` to the merged list at ``path``."""

    path: PathT
    source: PathT


@dataclass
class _Held:
    """What one merged list holds, indexed so that "is this item one it holds?" costs what the
    item's own spans do, not the whole list (a 1 MB text merges thousands of items): its items'
    normalised forms, and every grounded leaf's span as ``(start, end, item)`` by start."""

    keys: set[str] = field(default_factory=set)
    grounded: list[dict[str, list[int]]] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    longest: int = 0  # the longest span: how far back a span overlapping a place can start

    def add(self, value: Any, grounded: dict[str, list[int]]) -> None:
        self.keys.add(normalised(value))
        self.values.append(value)
        for span in grounded.values():
            bisect.insort(self.spans, (span[0], span[1], len(self.grounded)))
            self.longest = max(self.longest, span[1] - span[0])
        self.grounded.append(grounded)

    def holds(self, value: Any, grounded: dict[str, list[int]]) -> bool:
        """Whether an item held is ``value`` once normalised, or grounds every leaf both have
        from an overlapping span."""
        if normalised(value) in self.keys:
            return True
        near = sorted({i for span in grounded.values() for i in self.overlapping(span)})
        return any(_same_mention(grounded, self.grounded[i], value, self.values[i]) for i in near)

    def overlapping(self, span: list[int]) -> Iterator[int]:
        """The items with a grounded leaf whose span overlaps ``span``."""
        at = bisect.bisect_left(self.spans, (span[1],))  # spans starting before span's end
        while at > 0 and self.spans[at - 1][0] + self.longest > span[0]:
            at -= 1
            start, end, item = self.spans[at]
            if start < span[1] and span[0] < end:
                yield item


class Merger:
    """The merged document so far, with its evidence; ``add`` each piece's ``Found`` in order."""

    def __init__(self, validator: Validator, confident: bool = False) -> None:
        self.validator = validator
        self._check = LocalCheck(validator)
        # A value a later piece gives with a higher confidence replaces ours (else the first).
        self.confident = confident
        self.data: Any = None
        self.evidence: dict[str, Span] = {}
        self.confidence: dict[str, float] = {}
        self.unsupported: set[str] = set()
        self.started = False
        self.skipped = 0  # additions left out because they broke the schema
        # By list path, built when first asked, kept up to date by appends, dropped by a
        # change that may replace the list.
        self._held: dict[PathT, _Held] = {}
        # The evidence and confidence (pointers relative) of the items the last ``add``
        # appended: ``subtree`` needs them for each printed item, without a scan of the tables.
        self._fresh: dict[PathT, tuple[dict[str, Span], dict[str, float]]] = {}

    def add(self, found: Found) -> list[PathT]:
        """Merge one piece's document; returns the paths of the list items it appended."""
        self._fresh = {}
        if not self.started:
            return self._first(found)
        changes = list(self._changes(self.data, found, (), ()))
        if not changes:
            return []
        journal: list[_Undo] = []
        placed = [self._apply(change, found, journal) for change in changes]
        if self._check.still_valid(self.data, placed):
            return [p for c, p in zip(changes, placed, strict=True) if isinstance(c, _Append)]
        self._undo(journal)
        appended = []
        for change in changes:
            journal = []
            path = self._apply(change, found, journal)
            if not self._check.still_valid(self.data, [path]):
                self._undo(journal)
                self.skipped += 1
            elif isinstance(change, _Append):
                appended.append(path)
        return appended

    def _first(self, found: Found) -> list[PathT]:
        """Take the first piece's document, its lists' repeats left out as in later pieces
        (whole, if that breaks the schema: a ``minItems``)."""
        self.started = True
        self.data = copy.deepcopy(found.data)
        lists = [to_pointer(path) for path, _ in _lists(self.data)]
        for _, items in _lists(self.data):
            items.clear()
        self.evidence = {p: v for p, v in found.evidence.items() if not _in_any(p, lists)}
        self.confidence = {p: v for p, v in found.confidence.items() if not _in_any(p, lists)}
        self.unsupported = {p for p in found.unsupported if not _in_any(p, lists)}
        appended = []
        for change in self._changes(self.data, found, (), ()):
            path = self._apply(change, found, [])
            if isinstance(change, _Append):
                appended.append(path)
        if not validation_errors(self.data, self.validator):
            return appended
        self.data = copy.deepcopy(found.data)
        self.evidence, self.confidence = dict(found.evidence), dict(found.confidence)
        self.unsupported = set(found.unsupported)
        self._held, self._fresh = {}, {}
        return [(*path, i) for path, items in _lists(self.data) for i in range(len(items))]

    def subtree(self, path: PathT) -> tuple[Any, dict[str, Span], dict[str, float]]:
        """The merged value at ``path`` with its evidence and confidence, pointers relative."""
        value = value_at(self.data, path)
        if path in self._fresh:
            evidence, confidence = self._fresh[path]
            return value, dict(evidence), dict(confidence)
        prefix = to_pointer(path)
        return value, _within(self.evidence, prefix, ""), _within(self.confidence, prefix, "")

    def unsupported_in(self, path: PathT = ()) -> list[str]:
        """Pointers under ``path`` whose values have no source in the text, in order."""
        prefix = to_pointer(path)
        mine = {p for p in self.unsupported if _under(p, prefix)}
        return [p for p in self.evidence if p in mine] if mine else []

    # -- changes -----------------------------------------------------------------------------

    def _changes(
        self, current: Any, found: Found, path: PathT, source: PathT
    ) -> Iterator[_Set | _Append]:
        new = value_at(found.data, source)
        if isinstance(current, dict) and isinstance(new, dict):
            for key in new:
                if key not in current:
                    yield _Set((*path, key), (*source, key))
                else:
                    yield from self._changes(current[key], found, (*path, key), (*source, key))
        elif isinstance(current, list) and isinstance(new, list):
            taken: list[PathT] = []  # this piece's items appended so far: a repeat is once
            mine = _Held()  # the same, indexed
            for i in range(len(new)):
                item = (*source, i)
                if not self._holds(path, found, item) and not self._repeats(
                    found, item, taken, mine
                ):
                    taken.append(item)
            for item in _in_text_order(found, taken):
                yield _Append(path, item)
        elif not _has(found.unsupported, to_pointer(source)) and self._better(found, path, source):
            yield _Set(path, source)

    def _better(self, found: Found, path: PathT, source: PathT) -> bool:
        """Whether the piece's value at ``source`` replaces ours at ``path``: ours has no source
        where it needs one; or (``confident``) the piece's has a source in the text and ours
        has none (a null the model abstained to, whatever it was sure of), or both have one
        (or neither has) and the piece's is surer."""
        if self._has_unsupported(path):
            return True
        if not self.confident:
            return False
        theirs = _grounded(found.evidence, source)
        ours = _grounded(self.evidence, path, value_at(self.data, path))
        if bool(theirs) != bool(ours):
            return bool(theirs)
        return self._surer(found, path, source)

    def _surer(self, found: Found, path: PathT, source: PathT) -> bool:
        """Whether the piece's scalar at ``source`` has a higher confidence than ours."""
        theirs = found.confidence.get(to_pointer(source))
        ours = self.confidence.get(to_pointer(path))
        return theirs is not None and ours is not None and theirs > ours

    def _holds(self, path: PathT, found: Found, item: PathT) -> bool:
        """Whether the merged list at ``path`` holds the piece's ``item``: ``_same`` as one of
        its items, asked only of the items it could be (equal once normalised, or with a
        grounded leaf overlapping one of ``item``'s); ``_same`` with every item is the
        reference (tests/test_chunking.py checks the two agree)."""
        return self._index(path).holds(value_at(found.data, item), _grounded(found.evidence, item))

    def _repeats(self, found: Found, item: PathT, taken: list[PathT], mine: _Held) -> bool:
        """Whether the piece's ``item`` is one of its own items ``taken`` before it (indexed
        in ``mine``, which then takes it if not); ``_same`` with each is the reference."""
        value, spans = value_at(found.data, item), _grounded(found.evidence, item)
        if mine.holds(value, spans):
            return True
        mine.add(value, spans)
        return False

    def _index(self, path: PathT) -> _Held:
        if path not in self._held:
            items = value_at(self.data, path)
            grounded: list[dict[str, list[int]]] = [{} for _ in items]
            prefix = to_pointer(path) + "/"
            for pointer, span in self.evidence.items():
                if span is not None and pointer.startswith(prefix):
                    number, _, rest = pointer[len(prefix) :].partition("/")
                    grounded[int(number)]["/" + rest if rest else ""] = span
            held = self._held[path] = _Held()
            for value, spans in zip(items, grounded, strict=True):
                held.add(value, spans)
        return self._held[path]

    def _same(self, found: Found, item: PathT, other: PathT, mine: bool = False) -> bool:
        """Whether the piece's ``item`` is the merged list's ``other`` (with ``mine``: the
        piece's own earlier item ``other``)."""
        if mine:
            value, spans = value_at(found.data, other), _grounded(found.evidence, other)
        else:
            value, spans = value_at(self.data, other), _grounded(self.evidence, other)
        mine = value_at(found.data, item)
        if normalised(mine) == normalised(value):
            return True
        return _same_mention(_grounded(found.evidence, item), spans, mine, value)

    def _has_unsupported(self, path: PathT) -> bool:
        return _has(tuple(self.unsupported), to_pointer(path))

    # -- applying ----------------------------------------------------------------------------

    def _apply(self, change: _Set | _Append, found: Found, journal: list[_Undo]) -> PathT:
        """Make ``change``; returns where its value now is, and notes in ``journal`` how to
        take it back (``_undo``): a copy of the document per piece would cost what the whole
        document does."""
        value = copy.deepcopy(value_at(found.data, change.source))
        undo = _Undo(change)
        if isinstance(change, _Append):
            target = value_at(self.data, change.path)
            path: PathT = (*change.path, len(target))
            target.append(value)
            origin = to_pointer(change.source)
            evidence = _within(found.evidence, origin, "")
            self._fresh[path] = (evidence, _within(found.confidence, origin, ""))
            if change.path in self._held:
                spans = {p: span for p, span in evidence.items() if span is not None}
                self._held[change.path].add(value, spans)
        else:
            # The list indexes under it may no longer be the lists there.
            self._held = {
                k: v for k, v in self._held.items() if k[: len(change.path)] != change.path
            }
            path = change.path
            if not path:  # the whole document (a schema whose root is a string, say)
                undo.old = (self.data,)
                self.data = value
            elif path[-1] in (parent := value_at(self.data, path[:-1])):
                undo.old = (parent[path[-1]],)
                parent[path[-1]] = value
            else:
                order = _schema_order(self.validator.schema, path[:-1])
                order += [k for k in value_at(found.data, change.source[:-1]) if k not in order]
                _insert(parent, str(path[-1]), value, order)
            undo.forgotten = self._forget(to_pointer(path), undo.old)
        undo.path = path
        prefix, origin = to_pointer(path), to_pointer(change.source)
        evidence = _within(found.evidence, origin, prefix)
        confidence = _within(found.confidence, origin, prefix)
        unsupported = {prefix + p[len(origin) :] for p in found.unsupported if _under(p, origin)}
        undo.added = (set(evidence), set(confidence), unsupported - self.unsupported)
        self.evidence.update(evidence)
        self.confidence.update(confidence)
        self.unsupported.update(unsupported)
        journal.append(undo)
        return path

    def _forget(self, prefix: str, old: tuple[Any, ...]) -> _Tables:
        """Drop what the tables say under ``prefix``, where the value ``old`` was (a one-tuple;
        empty if none); returns what was dropped."""
        if old and isinstance(old[0], (dict, list)):
            evidence = {p: v for p, v in self.evidence.items() if _under(p, prefix)}
            confidence = {p: v for p, v in self.confidence.items() if _under(p, prefix)}
        else:  # a scalar has its one entry, or none: no scan of a long document's tables
            evidence = {prefix: self.evidence[prefix]} if prefix in self.evidence else {}
            confidence = {prefix: self.confidence[prefix]} if prefix in self.confidence else {}
        unsupported = {p for p in self.unsupported if _under(p, prefix)}
        for p in evidence:
            del self.evidence[p]
        for p in confidence:
            del self.confidence[p]
        self.unsupported -= unsupported
        return evidence, confidence, unsupported

    def _undo(self, journal: list[_Undo]) -> None:
        """Take back the changes ``journal`` noted, the last first."""
        for undo in reversed(journal):
            path = undo.path
            if isinstance(undo.change, _Append):
                value_at(self.data, path[:-1]).pop()
                self._held.pop(path[:-1], None)  # rebuilt when next asked
            elif not path:
                self.data = undo.old[0]
            elif undo.old:
                value_at(self.data, path[:-1])[path[-1]] = undo.old[0]
            else:
                del value_at(self.data, path[:-1])[path[-1]]
            self._fresh.pop(path, None)
            evidence_keys, confidence_keys, unsupported = undo.added
            for p in evidence_keys:
                del self.evidence[p]
            for p in confidence_keys:
                del self.confidence[p]
            self.unsupported -= unsupported
            evidence, confidence, unsupported = undo.forgotten
            self.evidence.update(evidence)
            self.confidence.update(confidence)
            self.unsupported |= unsupported


_Tables = tuple[dict[str, Span], dict[str, float], set[str]]


@dataclass
class _Undo:
    """How to take one change back: where its value went, what was there (a one-tuple; empty if
    nothing), and what the tables gained (keys) and lost (entries)."""

    change: _Set | _Append
    path: PathT = ()
    old: tuple[Any, ...] = ()
    added: tuple[set[str], set[str], set[str]] = field(
        default_factory=lambda: (set(), set(), set())
    )
    forgotten: _Tables = field(default_factory=lambda: ({}, {}, set()))


def _schema_order(root: Any, path: PathT) -> list[str]:
    """The ``properties`` of the object at ``path`` in their schema order (the order the
    grammar writes them in), as far as plain ``properties``/``items``/local ``$ref`` lead."""
    node = _one_shape(root, root) if isinstance(root, Mapping) else None
    for part in path:
        if not isinstance(node, Mapping):
            return []
        if isinstance(part, int):
            node = node.get("items")
        else:
            props = node.get("properties")
            node = props.get(part) if isinstance(props, Mapping) else None
        node = _one_shape(root, node)
    props = node.get("properties") if isinstance(node, Mapping) else None
    return [str(k) for k in props] if isinstance(props, Mapping) else []


def _one_shape(root: Mapping[str, Any], node: Any) -> Any:
    """``node`` with its $ref followed, and for an Optional model (anyOf/oneOf of one branch
    and null, as Pydantic writes it) that branch: the object its members come from."""
    node = follow_local_refs(root, node)
    if isinstance(node, Mapping) and "properties" not in node:
        for key in ("anyOf", "oneOf"):
            branches = node.get(key)
            if isinstance(branches, list):
                shapes = [follow_local_refs(root, b) for b in branches]
                other = [b for b in shapes if b != {"type": "null"}]
                if len(other) == 1:
                    return other[0]
    return node


def _insert(target: dict[str, Any], key: str, value: Any, order: list[str]) -> None:
    """Add ``key`` to ``target`` where ``order`` (the schema's, which the grammar keeps) puts
    it: before the first key of ``target`` that follows it there."""
    after = order[order.index(key) + 1 :]
    items = list(target.items())
    at = next((i for i, (k, _) in enumerate(items) if k in after), len(items))
    items.insert(at, (key, value))
    target.clear()
    target.update(items)


def normalised(value: Any) -> str:
    """``value`` as a key for equality: strings NFKC, case-folded, blanks collapsed; object
    members that are empty strings left out (a small model writes them for absent fields)."""

    def norm(v: Any) -> Any:
        if isinstance(v, str):
            return " ".join(unicodedata.normalize("NFKC", v).casefold().split())
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items() if x != ""}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), sort_keys=True, ensure_ascii=False)


def _lists(data: Any, path: PathT = ()) -> Iterator[tuple[PathT, list[Any]]]:
    """Every list directly reachable through objects (the lists that collect items)."""
    if isinstance(data, list):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _lists(value, (*path, key))


def _under(pointer: str, prefix: str) -> bool:
    return pointer == prefix or pointer.startswith(prefix + "/")


def _has(pointers: Iterable[str], prefix: str) -> bool:
    """Whether any of ``pointers`` is ``prefix`` or under it."""
    return any(_under(p, prefix) for p in pointers)


def _in_any(pointer: str, prefixes: Iterable[str]) -> bool:
    return any(_under(pointer, prefix) for prefix in prefixes)


def _within(table: dict[str, Any], origin: str, prefix: str) -> dict[str, Any]:
    """The entries of ``table`` under ``origin``, re-rooted at ``prefix``."""
    return {prefix + p[len(origin) :]: v for p, v in table.items() if _under(p, origin)}


def _in_text_order(found: Found, items: list[PathT]) -> list[PathT]:
    """``items`` by where their first grounded leaf starts in the text (a small model lists
    them out of order); one with no source stays after the item it followed."""
    keyed: list[tuple[int, int, PathT]] = []
    position = -1
    for n, item in enumerate(items):
        spans = _grounded(found.evidence, item)
        if spans:
            position = min(span[0] for span in spans.values())
        keyed.append((position, n, item))
    return [item for _, _, item in sorted(keyed)]


def _same_mention(
    mine: dict[str, list[int]], theirs: dict[str, list[int]], mine_value: Any, their_value: Any
) -> bool:
    """Whether two items are one: a leaf both ground comes from overlapping spans, and no leaf
    both ground from apart says two different things. Two people who share a role have it
    from one span and their names, different, from two: two, whichever comes first in the
    schema (the first shared leaf alone decided: with ``role`` before ``name`` one was lost).
    The same person seen by two pieces, with a role each piece found in its own place ("Ann"
    and "Ann Lee", "engineer" twice): one."""
    overlap = False
    for pointer, a in mine.items():
        b = theirs.get(pointer)
        if b is None:
            continue
        if a[0] < b[1] and b[0] < a[1]:
            overlap = True
            continue
        mine_leaf, inner = _locate(mine_value, pointer)
        if inner is None:
            if normalised(mine_leaf) != normalised(_locate(their_value, pointer)[0]):
                return False
            continue
        # Inside a nested list an index says nothing (the same skills in another order, or one
        # more seen first): a value no element of the other's list has there does ({"names":
        # ["Ann"]} and {"names": ["Bob"]} sharing a role are two; {"people": [{"name": …}]}
        # too).
        tokens = pointer.split("/")[1:]
        theirs_list, _ = _locate(their_value, "".join("/" + t for t in tokens[:inner]))
        rest = "".join("/" + t for t in tokens[inner + 1 :])
        if isinstance(theirs_list, list) and normalised(mine_leaf) not in {
            normalised(_locate(x, rest)[0]) for x in theirs_list
        }:
            return False
    return overlap


def _locate(value: Any, pointer: str) -> tuple[Any, int | None]:
    """The value at a relative JSON pointer ("" is ``value``), or None; and which of its
    tokens is the last to index a list inside ``value`` (None: none does; an item that is
    itself a list, a row, is no such list)."""
    inner = None
    for depth, token in enumerate(pointer.split("/")[1:]):
        token = unescape_token(token)
        if isinstance(value, dict):
            value = value.get(token)
        elif isinstance(value, list) and token.isascii() and token.isdecimal():
            inner = depth if depth > 0 else inner
            value = value[int(token)] if int(token) < len(value) else None
        else:
            return None, inner
    return value, inner


def _grounded(evidence: dict[str, Span], path: PathT, value: Any = None) -> dict[str, list[int]]:
    """The spans of the leaves under ``path`` that have one, pointers relative, in order;
    given the ``value`` there, a scalar's is looked up, not found in a scan of ``evidence``."""
    prefix = to_pointer(path)
    if value is not None and not isinstance(value, (dict, list)):
        span = evidence.get(prefix)
        return {"": span} if span is not None else {}
    return {
        p[len(prefix) :]: span
        for p, span in evidence.items()
        if span is not None and _under(p, prefix)
    }
