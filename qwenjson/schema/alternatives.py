"""Choosing among alternatives: ``anyOf`` and ``oneOf`` (distributed over their siblings, with
proofs that ``oneOf``'s branches can't overlap), and ``enum``/``const`` (the allowed values as
literals, or a trie of them)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from qwenjson.errors import SchemaError
from qwenjson.jsontypes import expanded_types, json_equal, json_type_of, type_allows
from qwenjson.schema.flat import (
    Flat,
    LeftRecursion,
    Node,
    Reader,
    Unsatisfiable,
    canonical_json,
    has_surrogate,
    is_empty,
    py_search,
)
from qwenjson.schema.flatten import Flattener
from qwenjson.schema.gbnf import Expr, Literal, alt, trie_alternation
from qwenjson.schema.regex_syntax import ecma_regex

# More anyOf/oneOf combinations than this in one schema node are not distributed.
MAX_ALTERNATIVES_PRODUCT = 64
# Enums with more values than this are factored into a trie (shared prefixes).
TRIE_THRESHOLD = 16
# Pairwise value comparisons a oneOf proof may make before giving up (validation then decides).
_PROOF_BUDGET = 20_000


class Alternatives(Flattener):
    """anyOf, oneOf, enum and const."""

    def _read_alternatives(self, r: Reader, node: Node, f: Flat) -> None:
        """anyOf and oneOf of ``r`` into ``f``."""
        s = r.schema
        for kind in ("anyOf", "oneOf"):
            if kind in s:
                alts = s[kind]
                if not isinstance(alts, list) or not alts:
                    raise SchemaError(f"{kind} must be a non-empty array", r.pointer(kind))
                f.groups.append(
                    (
                        kind,
                        [self._sub(node, v, kind, i) for i, v in enumerate(alts)],
                        r.pointer(kind),
                    )
                )

    def _merge_alternatives(self, m: Flat, a: Flat, b: Flat) -> None:
        """anyOf/oneOf of ``a`` and ``b`` together, into ``m``."""
        m.groups = a.groups + b.groups

    def _gen_groups(self, flat: Flat, node: Node) -> Expr:
        kind, branches, gptr = flat.groups[0]
        rest = flat.copy()
        rest.groups = flat.groups[1:]
        product = 1
        for _, bs, _ in flat.groups:
            product *= len(bs)
        if product > MAX_ALTERNATIVES_PRODUCT and len(flat.groups) > 1:
            # Keep the first group in the grammar; the others are checked afterwards.
            for k, _, p in flat.groups[1:]:
                self.mark(p.rsplit("/", 1)[0], k, "validated-after", "too many combinations")
            rest.groups = []
        empty_rest = is_empty(rest)
        alts: list[Expr] = []
        unsatisfiable = False  # a flag, not the errors: those would hold this frame (a cycle)
        for i, br in enumerate(branches):
            try:
                if empty_rest:
                    alts.append(self.visit(br))
                    continue
                target = self._deref(br)
                if target.key in self.left:
                    # X = (siblings ∧ X) | …: the branch adds nothing to X.
                    raise LeftRecursion(target.key)
                merged = self.merge(rest, self.flatten(br))
                if merged is False:
                    unsatisfiable = True  # the branch contradicts its siblings
                    continue
                key = f"{node.key}|{kind}{len(flat.groups)}:{i}"
                sub = (
                    Node(merged, br.pointer, br.base, key)
                    if isinstance(merged, bool)
                    else Node(None, br.pointer, br.base, key, merged)
                )
                alts.append(self.visit(sub))
            except LeftRecursion as e:
                if e.key != node.key:
                    raise SchemaError(
                        "left-recursive $ref cycle (a schema that is one of its own alternatives "
                        "through another one)",
                        br.pointer,
                    ) from None
            except Unsatisfiable:
                unsatisfiable = True
        if not alts:
            if unsatisfiable:
                raise Unsatisfiable(f"no branch of {kind} can be satisfied", gptr)
            raise SchemaError(f"{kind} refers only to itself (no base case)", gptr)
        if kind == "oneOf" and len(alts) > 1 and not self._disjoint(rest, branches):
            self.mark(
                gptr.rsplit("/", 1)[0],
                "oneOf",
                "validated-after",
                "the grammar allows any branch; exactly-one is checked afterwards",
            )
        texts = [a.text for a in alts if isinstance(a, Literal)]
        if len(alts) > TRIE_THRESHOLD and len(texts) == len(alts):
            # Many constants (anyOf of consts): one trie instead of thousands of stacks.
            return trie_alternation(texts)
        return alt(alts)

    def _disjoint(self, rest: Flat, branches: list[Node]) -> bool:
        """Can no instance match two branches? Proofs: types, enums, a discriminator property,
        a property one branch requires and the other forbids."""
        flats: list[Flat] = []
        for br in branches:
            f = self.merge(rest, self.flatten(br))
            if f is False:
                continue  # matches nothing: overlaps nothing
            if not isinstance(f, Flat) or f.groups:
                return False
            flats.append(f)
        if len(flats) > 64:
            return False  # quadratic proof; many branches go to validation
        return all(self._apart(x, y) for i, x in enumerate(flats) for y in flats[i + 1 :])

    def _apart(self, x: Flat, y: Flat) -> bool:
        tx, ty = _possible_types(x), _possible_types(y)
        if not (tx & ty):
            return True
        if _enums_apart(x.enum, y.enum):
            return True
        # An enum none of whose values the other branch admits.
        for a, b in ((x, y), (y, x)):
            if a.enum is None or len(a.enum) * (len(b.enum or ()) + 1) > _PROOF_BUDGET:
                continue
            if not any(scalar_fits(b, v) for v in a.enum):
                return True
        common = tx & ty
        if common <= {"number", "integer"}:
            return _intervals_apart(x, y)
        if common != {"object"}:
            return False
        for name in set(x.required) & set(y.required):
            if _enums_apart(self._prop_enum(x, name), self._prop_enum(y, name)):
                return True
        return any(self._forbids(b, name) for a, b in ((x, y), (y, x)) for name in a.required)

    def _prop_enum(self, f: Flat, name: str) -> list[Any] | None:
        node = f.properties.get(name)
        if node is None:
            return None
        flat = self.flatten(node)
        return flat.enum if isinstance(flat, Flat) else None

    def _forbids(self, f: Flat, name: str) -> bool:
        node = f.properties.get(name)
        if node is not None:
            return self.flatten(node) is False
        if any(py_search(p, name) for p in f.pattern_props):
            return False
        return any(self.flatten(a) is False for a in f.additional)

    def _gen_enum(self, f: Flat, node: Node) -> Expr:
        texts: list[str] = []
        siblings = replace(f, enum=None)  # (checking v against the enum itself: n²)
        for v in f.enum or ():
            # Values the sibling keywords (lengths, patterns, bounds) rule out are left out.
            if not scalar_fits(siblings, v):
                continue
            try:
                texts += canonical_json(v, self.separators)
            except (TypeError, ValueError):
                continue
        texts = [t for t in dict.fromkeys(texts) if not has_surrogate(t)]
        if not texts:
            raise Unsatisfiable("no value of enum/const is allowed here", f.pointer)
        beyond_scalars = f.object_constrained or f.array_constrained or f.formats
        if beyond_scalars or any(_unsure(p) for p, _ in f.patterns):
            self.mark(
                f.pointer,
                "enum",
                "validated-after",
                "keywords beside enum/const that the values weren't checked against here",
            )
        if len(texts) > TRIE_THRESHOLD:
            return trie_alternation(texts)
        return alt(Literal(t) for t in texts)


def _possible_types(f: Flat) -> set[str]:
    """The types an instance of ``f`` can have (an enum narrows them to its values')."""
    types = expanded_types(f.types)
    if f.enum is not None:
        types &= expanded_types({json_type_of(v) for v in f.enum})
    return types


def scalar_fits(f: Flat, value: Any) -> bool:
    """Might ``value`` satisfy ``f``? Checks types, enum, string and number keywords only."""
    if not type_allows(f.types, value):
        return False
    if f.enum is not None and not any(json_equal(value, w) for w in f.enum):
        return False
    if isinstance(value, str):
        if len(value) < f.min_len or (f.max_len is not None and len(value) > f.max_len):
            return False
        return all(py_search(p, value) or _unsure(p) for p, _ in f.patterns)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not _intervals_apart(
            f, Flat(f.pointer, lower=[(value, False)], upper=[(value, False)])
        )
    return True


def _unsure(pattern: str) -> bool:
    # A pattern the ECMA translator can't read (``py_search`` matches nothing): assume a match.
    try:
        ecma_regex(pattern)
    except (SchemaError, re.error):
        return True
    return False


def _intervals_apart(x: Flat, y: Flat) -> bool:
    """Do the numeric bounds of ``x`` and ``y`` leave no number in common?"""

    def above(lower: list[tuple[float, bool]], upper: list[tuple[float, bool]]) -> bool:
        # Is some lower bound above (or, exclusively, at) some upper bound?
        return any(
            lo > hi or (lo == hi and (lo_ex or hi_ex)) for lo, lo_ex in lower for hi, hi_ex in upper
        )

    return above(x.lower, y.upper) or above(y.lower, x.upper)


def _enums_apart(a: list[Any] | None, b: list[Any] | None) -> bool:
    """Both are enums and share no value."""
    if a is None or b is None or len(a) * len(b) > _PROOF_BUDGET:
        return False
    return not any(json_equal(v, w) for v in a for w in b)
