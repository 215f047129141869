"""A regex as a small tree (character sets, sequences, alternations, repetitions, anchors):
built by walking the standard library's parse of the pattern, with the anchors resolved exactly."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.schema.regex_charsets import (
    _DIGIT,
    _DOT,
    _SPACE,
    _WORD,
    UNIVERSE,
    Ranges,
    _complement,
    _fold_case,
    _intersect,
    _normalize,
)
from qwenjson.schema.regex_syntax import _ecma_to_python, quiet_re

# Why private modules: Python has no public API that exposes a regex's parse tree, and a
# hand-written parser would be a second, less tested implementation of the same syntax. The op
# names used below (LITERAL, IN, BRANCH, SUBPATTERN, MAX_REPEAT, …) have been stable since
# Python 2 (sre_parse; re._parser since 3.11); tests/test_regex.py pins the shapes this module
# relies on, so a change shows up there. Typeshed has no stubs for them, hence Any.
sre_p: Any = importlib.import_module("re._parser")
sre_c: Any = importlib.import_module("re._constants")

_CATEGORIES: dict[Any, Ranges] = {
    sre_c.CATEGORY_DIGIT: _DIGIT,
    sre_c.CATEGORY_NOT_DIGIT: _complement(_DIGIT),
    sre_c.CATEGORY_WORD: _WORD,
    sre_c.CATEGORY_NOT_WORD: _complement(_WORD),
    sre_c.CATEGORY_SPACE: _SPACE,
    sre_c.CATEGORY_NOT_SPACE: _complement(_SPACE),
}

# llama.cpp expands ``x{m,n}`` into about n symbols and n-m nested rules; past this bound the
# grammar grows faster than it helps, so the pattern is refused (it can be checked afterwards).
MAX_REPEAT_BOUND = 1000
# Anchors inside a bounded repetition are resolved by unrolling it; only small ones are unrolled.
_MAX_ANCHOR_UNROLL = 16

# --------------------------------------------------------------------------------------------
# Intermediate form.


@dataclass(frozen=True)
class _Chars:
    ranges: Ranges


@dataclass(frozen=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Alt:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Repeat:
    node: _Node
    lo: int
    hi: int | None  # None: unbounded


@dataclass(frozen=True)
class _Anchor:
    start: bool  # True for `^`, False for `$`


_Node = _Chars | _Seq | _Alt | _Repeat | _Anchor

_EMPTY = _Seq(())  # matches the empty string only
_NOTHING = _Alt(())  # matches no string at all
_ANY_CHAR = _Chars(UNIVERSE)
_PAD = _Repeat(_ANY_CHAR, 0, None)


def _seq(items: list[_Node]) -> _Node:
    flat: list[_Node] = []
    for item in items:
        if item == _NOTHING:
            return _NOTHING
        if isinstance(item, _Seq):
            flat.extend(item.items)
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else _Seq(tuple(flat))


def _alt(items: list[_Node]) -> _Node:
    if len(items) == 1 and not isinstance(items[0], _Alt):
        return items[0]  # nothing to merge (and no need to hash a possibly huge node)
    flat: list[_Node] = []
    seen: set[_Node] = set()
    for item in items:
        parts = item.items if isinstance(item, _Alt) else (item,)
        for part in parts:
            if part not in seen:
                seen.add(part)
                flat.append(part)
    # Single characters and sets side by side become one set: one class instead of many branches.
    sets = [p for p in flat if isinstance(p, _Chars)]
    if len(sets) > 1:
        merged = _Chars(_normalize([r for s in sets for r in s.ranges]))
        flat = [merged] + [p for p in flat if not isinstance(p, _Chars)]
    return flat[0] if len(flat) == 1 else _Alt(tuple(flat))


def _nullable(node: _Node) -> bool:
    if isinstance(node, _Chars):
        return False
    if isinstance(node, _Seq):
        return all(_nullable(i) for i in node.items)
    if isinstance(node, _Alt):
        return any(_nullable(i) for i in node.items)
    if isinstance(node, _Repeat):
        return node.lo == 0 or _nullable(node.node)
    return True


def _nonempty(node: _Node) -> _Node:
    """The language of ``node`` without the empty string (anchors already resolved)."""
    if not _nullable(node):
        return node
    if isinstance(node, _Seq):
        if not node.items:
            return _NOTHING
        # L(A·R) \ ε = (L(A) \ ε)·R ∪ (L(R) \ ε), every item being nullable here.
        head, rest = node.items[0], _seq(list(node.items[1:]))
        return _alt([_seq([_nonempty(head), rest]), _nonempty(rest)])
    if isinstance(node, _Alt):
        return _alt([_nonempty(i) for i in node.items])
    if isinstance(node, _Repeat):
        if node.hi == 0:
            return _NOTHING
        return _repeat(_nonempty(node.node), 1, node.hi)
    return _NOTHING


def _repeat(node: _Node, lo: int, hi: int | None) -> _Node:
    if hi is not None and hi < lo:
        return _NOTHING
    if hi == 0 or node == _EMPTY:
        return _EMPTY
    if node == _NOTHING:
        return _EMPTY if lo == 0 else _NOTHING
    if lo == hi == 1:
        return node
    if _nullable(node) and (hi is None or hi > 1) and not _has_anchor(node):
        # GBNF turns `x*` into `r ::= x r | ε`, which is left-recursive (and refused by llama.cpp)
        # when x can be empty. X{m,n} with X nullable is (X∖ε){0,n}: same language, no such loop.
        return _repeat(_nonempty(node), 0, hi)
    return _Repeat(node, lo, hi)


def _has_anchor(node: _Node) -> bool:
    if isinstance(node, _Anchor):
        return True
    if isinstance(node, _Seq | _Alt):
        return any(_has_anchor(i) for i in node.items)
    if isinstance(node, _Repeat):
        return _has_anchor(node.node)
    return False


def _parse(pattern: str) -> Any:
    python_pattern = _ecma_to_python(pattern)
    try:
        with quiet_re():
            # "Possible nested set" warnings: ECMA has no nested sets; the plain reading holds.
            return sre_p.parse(python_pattern)
    except re.error as exc:
        raise SchemaError(f"invalid regular expression {pattern!r}: {exc}") from None
    except RecursionError:
        raise UnsupportedKeywordError(
            "pattern", "", "regular expression nested too deeply"
        ) from None


# --------------------------------------------------------------------------------------------
# Python op tree → intermediate form.

_IGNORECASE: int = sre_c.SRE_FLAG_IGNORECASE
_SUPPORTED_FLAGS = sre_c.SRE_FLAG_IGNORECASE | sre_c.SRE_FLAG_DOTALL | sre_c.SRE_FLAG_VERBOSE
_IGNORED_FLAGS = sre_c.SRE_FLAG_UNICODE  # str patterns are always Unicode: no effect here


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def refuse(self, what: str) -> UnsupportedKeywordError:
        return UnsupportedKeywordError("pattern", "", f"{what} in {self.pattern!r}")

    def check_flags(self, flags: int) -> None:
        bad = flags & ~(_SUPPORTED_FLAGS | _IGNORED_FLAGS)
        if bad:
            names = re.RegexFlag(bad).name or str(bad)
            raise self.refuse(f"regex flag {names} (ECMA-262 patterns in JSON Schema have none)")

    def seq(self, ops: Any, flags: int) -> _Node:
        return _seq([self.op(op, av, flags) for op, av in ops])

    def charset(self, ranges: Ranges, flags: int) -> _Node:
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1] and not flags & _IGNORECASE:
            cp = ranges[0][0]  # the common case, a literal character: skip the set algebra
            return _NOTHING if 0xD800 <= cp <= 0xDFFF else _Chars(ranges)
        if flags & sre_c.SRE_FLAG_IGNORECASE:
            ranges = _fold_case(ranges)
        ranges = _intersect(ranges, UNIVERSE)
        return _Chars(ranges) if ranges else _NOTHING

    def op(self, op: Any, av: Any, flags: int) -> _Node:
        if op is sre_c.LITERAL:
            return self.charset(((av, av),), flags)
        if op is sre_c.NOT_LITERAL:
            return _Chars(_intersect(_complement(_fold(((av, av),), flags)), UNIVERSE))
        if op is sre_c.ANY:
            return _Chars(UNIVERSE if flags & sre_c.SRE_FLAG_DOTALL else _intersect(_DOT, UNIVERSE))
        if op is sre_c.IN:
            return self.in_(av, flags)
        if op is sre_c.BRANCH:
            return _alt([self.seq(branch, flags) for branch in av[1]])
        if op is sre_c.SUBPATTERN:
            _group, add, remove, sub = av
            self.check_flags(add)
            return self.seq(sub, (flags | add) & ~remove)
        if op is sre_c.MAX_REPEAT or op is sre_c.MIN_REPEAT:
            lo, hi, sub = av
            hi = None if hi is sre_c.MAXREPEAT else hi
            if lo > MAX_REPEAT_BOUND or (hi is not None and hi > MAX_REPEAT_BOUND):
                bound = hi if hi is not None and hi > MAX_REPEAT_BOUND else lo
                raise self.refuse(f"repetition bound {bound} above {MAX_REPEAT_BOUND}")
            # Lazy and greedy repetitions match the same strings: only the chosen match differs.
            return _repeat(self.seq(sub, flags), lo, hi)
        if op is sre_c.AT:
            if av is sre_c.AT_BEGINNING:
                if flags & sre_c.SRE_FLAG_MULTILINE:
                    raise self.refuse("multiline ^")
                return _Anchor(start=True)
            if av is sre_c.AT_END:
                # ECMA `$` without the m flag: end of input (Python's also allows a final "\n").
                return _Anchor(start=False)
            if av in (sre_c.AT_BOUNDARY, sre_c.AT_NON_BOUNDARY):
                raise self.refuse("word boundary \\b or \\B")
            raise self.refuse(f"anchor {av}")
        if op is sre_c.ASSERT or op is sre_c.ASSERT_NOT:
            raise self.refuse("lookahead or lookbehind")
        if op is sre_c.GROUPREF or op is sre_c.GROUPREF_EXISTS:
            raise self.refuse("backreference")
        if op is sre_c.POSSESSIVE_REPEAT or op is sre_c.ATOMIC_GROUP:
            raise self.refuse("possessive quantifier or atomic group")
        raise self.refuse(f"regex construct {op}")

    def in_(self, items: Any, flags: int) -> _Node:
        negate = False
        ranges: list[tuple[int, int]] = []
        for op, av in items:
            if op is sre_c.NEGATE:
                negate = True
            elif op is sre_c.LITERAL:
                ranges.append((av, av))
            elif op is sre_c.RANGE:
                ranges.append((av[0], av[1]))
            elif op is sre_c.CATEGORY:
                if av not in _CATEGORIES:
                    raise self.refuse(f"character category {av}")
                ranges.extend(_CATEGORIES[av])
            else:
                raise self.refuse(f"character class item {op}")
        positive = _fold(_normalize(ranges), flags)
        result = _complement(positive) if negate else positive
        result = _intersect(result, UNIVERSE)
        return _Chars(result) if result else _NOTHING


def _fold(ranges: Ranges, flags: int) -> Ranges:
    return _fold_case(ranges) if flags & sre_c.SRE_FLAG_IGNORECASE else ranges


# --------------------------------------------------------------------------------------------
# Anchors: each alternative is (anchored at the start, body, anchored at the end).

_Triple = tuple[bool, _Node, bool]


def _only_empty(node: _Node) -> _Node:
    return _EMPTY if _nullable(node) else _NOTHING


def _merge(triples: list[_Triple]) -> list[_Triple]:
    by_anchor: dict[tuple[bool, bool], list[_Node]] = {}
    for left, body, right in triples:
        if body != _NOTHING:
            by_anchor.setdefault((left, right), []).append(body)
    return [(left, _alt(bodies), right) for (left, right), bodies in by_anchor.items()]


def _concat(acc: list[_Triple], item: list[_Triple]) -> list[_Triple]:
    """Triples of A·B from those of A and B."""
    out: list[_Triple] = []
    for a_left, a_body, a_right in acc:
        for b_left, b_body, b_right in item:
            # `^` in B: A matched nothing; `$` in A: B matches nothing.
            head = _only_empty(a_body) if b_left else a_body
            tail = _only_empty(b_body) if a_right else b_body
            out.append((a_left or b_left, _seq([head, tail]), a_right or b_right))
    return _merge(out)


def _star(item: list[_Triple], lo: int) -> list[_Triple]:
    """Triples of X{lo,} (lo 0 or 1) from those of X.

    Iterations that match nothing can be dropped, so at most one iteration carries `^` (the
    first that matches anything: all before it must be empty) and at most one carries `$` (the
    last); all others are unanchored.
    """
    body = {(left, right): b for left, b, right in item}
    free, start = body.get((False, False), _NOTHING), body.get((True, False), _NOTHING)
    end, both = body.get((False, True), _NOTHING), body.get((True, True), _NOTHING)
    many = _repeat(free, 0, None)
    return _merge(
        [
            (False, _repeat(free, lo, None), False),
            (False, _seq([many, end]), True),
            (True, _seq([start, many]), False),
            (True, _alt([_seq([start, many, end]), both]), True),
        ]
    )


def _resolve(node: _Node, refuse: _Translator) -> list[_Triple]:
    """Exact anchor resolution: ``^`` forces all before it to match empty, and position 0."""
    if not _has_anchor(node):
        return [(False, node, False)]
    if isinstance(node, _Anchor):
        return [(True, _EMPTY, False)] if node.start else [(False, _EMPTY, True)]
    if isinstance(node, _Alt):
        return _merge([t for item in node.items for t in _resolve(item, refuse)])
    acc: list[_Triple] = [(False, _EMPTY, False)]
    if isinstance(node, _Seq):
        # Runs of anchor-free items go in whole: concatenating item by item would copy the
        # growing body once per item (quadratic on a 100,000-character literal).
        run: list[_Node] = []
        for sub in node.items:
            if not _has_anchor(sub):
                run.append(sub)
                continue
            if run:
                acc, run = _concat(acc, [(False, _seq(run), False)]), []
            acc = _concat(acc, _resolve(sub, refuse))
        return _concat(acc, [(False, _seq(run), False)]) if run else acc
    if isinstance(node, _Repeat):
        # X{lo,hi} = X…X (lo times) then hi-lo optional X; X{lo,} = X…X (lo-1 times) then X+.
        copies = node.lo if node.hi is not None else max(node.lo - 1, 0)
        optional = 0 if node.hi is None else node.hi - node.lo
        if copies + optional > _MAX_ANCHOR_UNROLL:
            raise refuse.refuse("anchor inside a repetition of more than 16 copies")
        item = _resolve(node.node, refuse)
        for _ in range(copies):
            acc = _concat(acc, item)
        maybe = _merge([*item, (False, _EMPTY, False)])
        for _ in range(optional):
            acc = _concat(acc, maybe)
        if node.hi is None:
            acc = _concat(acc, _star(item, min(node.lo, 1)))
        return acc
    raise AssertionError(node)  # pragma: no cover - every node kind is handled above
