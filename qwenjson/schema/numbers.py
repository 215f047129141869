"""Number keywords: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum`` →
GBNF for JSON numbers and integers in range (``ranges``); ``multipleOf`` is validated after
generation, except ``multipleOf: 1`` (integers)."""

from __future__ import annotations

import math

from qwenjson.errors import SchemaError
from qwenjson.schema.core import INTEGER, NUMBER
from qwenjson.schema.flat import Flat, Node, Reader, Unsatisfiable
from qwenjson.schema.flatten import Flattener
from qwenjson.schema.gbnf import Expr
from qwenjson.schema.ranges import int_range, number_range


class NumberRules(Flattener):
    """The number keywords: read, merged, and as GBNF."""

    def _read_numbers(self, r: Reader, node: Node, f: Flat) -> None:
        """The number keywords of ``r`` into ``f``."""
        s = r.schema
        sides = ((f.lower, f.lower_keywords), (f.upper, f.upper_keywords))
        for kw, (side, written) in zip(("minimum", "maximum"), sides, strict=True):
            if kw in s:
                v = s[kw]
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise SchemaError(f"{kw} must be a number", r.pointer(kw))
                excl_kw = "exclusiveMinimum" if kw == "minimum" else "exclusiveMaximum"
                side.append((v, s.get(excl_kw) is True))
                written.append((r.at, kw))
        for kw, (side, written) in zip(
            ("exclusiveMinimum", "exclusiveMaximum"), sides, strict=True
        ):
            v = s.get(kw)
            if isinstance(v, int | float) and not isinstance(v, bool):
                side.append((v, True))
                written.append((r.at, kw))
            elif v is True:  # draft 4's: it makes the minimum or maximum exclusive
                written.append((r.at, kw))
            elif v is not None and not isinstance(v, bool):
                raise SchemaError(f"{kw} must be a number", r.pointer(kw))
        mult = s.get("multipleOf")
        if mult is not None:
            if isinstance(mult, bool) or not isinstance(mult, int | float) or mult <= 0:
                raise SchemaError("multipleOf must be a number above 0", r.pointer("multipleOf"))
            if mult == 1 and f.types is not None and "number" in f.types:
                # multipleOf 1 on numbers means integers: the grammar can say that exactly.
                f.types = (f.types - {"number"}) | {"integer"}
                self.mark(r.at, "multipleOf", "enforced", "multipleOf 1: integers only")

    def _merge_numbers(self, m: Flat, a: Flat, b: Flat) -> None:
        """The number keywords of ``a`` and ``b`` together, into ``m``."""
        m.lower = a.lower + b.lower
        m.upper = a.upper + b.upper
        m.lower_keywords = a.lower_keywords + b.lower_keywords
        m.upper_keywords = a.upper_keywords + b.upper_keywords

    def _gen_number(self, t: str, f: Flat, node: Node) -> Expr:
        lo = hi = None
        lo_ex = hi_ex = False
        for v, ex in f.lower:
            if lo is None or v > lo or (v == lo and ex):
                lo, lo_ex = v, ex
        for v, ex in f.upper:
            if hi is None or v < hi or (v == hi and ex):
                hi, hi_ex = v, ex
        if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_ex or hi_ex))):
            raise Unsatisfiable(f"minimum {lo} is above maximum {hi}", f.pointer)
        if t == "integer":
            ilo = None if lo is None else (math.floor(lo) + 1 if lo_ex else math.ceil(lo))
            ihi = None if hi is None else (math.ceil(hi) - 1 if hi_ex else math.floor(hi))
            if ilo is not None and ihi is not None and ilo > ihi:
                raise Unsatisfiable(f"no integer between {lo} and {hi}", f.pointer)
            if ilo is None and ihi is None:
                return INTEGER
            return int_range(ilo, ihi)
        if lo is None and hi is None:
            return NUMBER
        exact = all(v is None or float(v).is_integer() for v in (lo, hi))
        # Which sides the grammar holds loosely: widened to the enclosing integers (a superset;
        # an exclusive integer bound becomes inclusive too), or every side when no range fits.
        widened = [(lo is not None and (lo_ex or not float(lo).is_integer()), f.lower_keywords)]
        widened.append((hi is not None and (hi_ex or not float(hi).is_integer()), f.upper_keywords))
        if not exact:
            lo, lo_ex = (None, False) if lo is None else (math.floor(lo), False)
            hi, hi_ex = (None, False) if hi is None else (math.ceil(hi), False)
        expr = number_range(
            None if lo is None else int(lo), lo_ex, None if hi is None else int(hi), hi_ex
        )
        for loose, written in widened:
            if expr is None or (loose and not exact):
                for pointer, keyword in written:
                    self.mark(
                        pointer,
                        keyword,
                        "validated-after",
                        "bounds the grammar can't express exactly are checked after generation",
                    )
        return expr if expr is not None else NUMBER
