"""Array keywords: ``items``, ``prefixItems``, ``additionalItems``, ``minItems``, ``maxItems``
→ GBNF for JSON arrays (``contains`` and ``uniqueItems`` are validated after generation)."""

from __future__ import annotations

from qwenjson.errors import SchemaError
from qwenjson.schema.core import ARRAY, VALUE
from qwenjson.schema.flat import (
    MAX_EXACT_REPEAT,
    Flat,
    Node,
    Reader,
    Unsatisfiable,
    min_opt,
)
from qwenjson.schema.flatten import Flattener
from qwenjson.schema.gbnf import EMPTY, Expr, Literal, group, optional, repeat, seq
from qwenjson.schema.keywords import grammar_keywords

_ARRAY_KEYWORDS = grammar_keywords("array")


class ArrayRules(Flattener):
    """The array keywords: read, merged, and as GBNF."""

    def _read_arrays(self, r: Reader, node: Node, f: Flat) -> None:
        """The array keywords of ``r`` into ``f``."""
        s = r.schema
        items = s.get("items")
        if isinstance(items, list):
            if self.draft >= 2020:
                raise SchemaError(
                    "items must be a schema (use prefixItems for tuples)", r.pointer("items")
                )
            f.prefix = [[self._sub(node, v, "items", i)] for i, v in enumerate(items)]
            if "additionalItems" in s:
                f.items = [self._sub(node, s["additionalItems"], "additionalItems")]
        elif items is not None:
            f.items = [self._sub(node, items, "items")]
        if "prefixItems" in s and self.draft >= 2020:
            pi = s["prefixItems"]
            if not isinstance(pi, list):
                raise SchemaError("prefixItems must be an array", r.pointer("prefixItems"))
            f.prefix = [[self._sub(node, v, "prefixItems", i)] for i, v in enumerate(pi)]
        f.min_items = r.count("minItems") or 0
        f.max_items = r.count("maxItems")
        f.array_constrained = not _ARRAY_KEYWORDS.isdisjoint(s)

    def _merge_arrays(self, m: Flat, a: Flat, b: Flat) -> None:
        """The array keywords of ``a`` and ``b`` together, into ``m``."""
        longest = max(len(a.prefix), len(b.prefix))
        prefix: list[list[Node]] = []
        for i in range(longest):
            here = (a.prefix[i] if i < len(a.prefix) else a.items) + (
                b.prefix[i] if i < len(b.prefix) else b.items
            )
            prefix.append(here)
        m.prefix = prefix
        m.items = a.items + b.items
        m.min_items = max(a.min_items, b.min_items)
        m.max_items = min_opt(a.max_items, b.max_items)
        m.array_constrained = a.array_constrained or b.array_constrained

    def _gen_array(self, f: Flat, node: Node) -> Expr:
        if not f.array_constrained and not f.prefix and not f.items:
            return ARRAY
        lo, hi = f.min_items, f.max_items
        if hi is not None and lo > hi:
            raise Unsatisfiable(f"minItems {lo} > maxItems {hi}", f.pointer)
        with self.consuming():
            prefix: list[Expr | None] = []
            for subs in f.prefix:
                try:
                    prefix.append(self.visit(self._all(subs)))
                except Unsatisfiable:
                    prefix.append(None)  # no item can stand here: the array ends before
            rest: Expr | None
            try:
                rest = self.visit(self._all(f.items)) if f.items else VALUE
            except Unsatisfiable:
                rest = None
        # Positions the array can reach: the first impossible prefix item ends it.
        cap = len(prefix)
        for i, p in enumerate(prefix):
            if p is None:
                cap = i
                break
        prefix = prefix[:cap]
        if rest is None or cap < len(f.prefix):
            hi = cap if hi is None else min(hi, cap)
        if lo > (hi if hi is not None else lo):
            raise Unsatisfiable("minItems can't be reached with these items", f.pointer)

        # From where the prefix ends (or maxItems stops the array) back to the first item: a
        # loop, not a recursive closure (that would hold this compiler in a reference cycle).
        end = len(prefix) if hi is None else min(len(prefix), hi)
        items = EMPTY if end == hi else self._items_after_prefix(f, end, rest, lo, hi)
        for i in range(end - 1, -1, -1):
            body = seq(self.comma if i > 0 else EMPTY, prefix[i] or EMPTY, items)
            items = body if i < lo else optional(body)
        return seq(Literal("["), items, Literal("]"))

    def _items_after_prefix(
        self, f: Flat, i: int, rest: Expr | None, lo: int, hi: int | None
    ) -> Expr:
        """Items from position ``i`` (past the prefix) on, each a ``rest``, ``i`` items written."""
        if rest is None:
            return EMPTY  # unreachable: hi stops the array before the rest
        need, more = self.capped(
            f,
            max(lo - i, 0),
            None if hi is None else hi - i,
            MAX_EXACT_REPEAT,
            ("minItems", "maxItems"),
            "too many for the grammar",
        )
        if i > 0:
            return repeat(group(seq(self.comma, rest)), need, more)
        first = seq(
            rest,
            repeat(
                group(seq(self.comma, rest)),
                max(need - 1, 0),
                None if more is None else more - 1,
            ),
        )
        return first if need > 0 else optional(first)
