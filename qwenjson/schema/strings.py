"""String keywords: ``minLength``, ``maxLength``, ``pattern`` (``regex``) and ``format``
(``formats``) → GBNF for JSON strings in canonical form."""

from __future__ import annotations

from collections.abc import Callable

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.schema.core import JSON_CHAR_REF, STRING, pointer_hint
from qwenjson.schema.flat import Flat, Node, Reader, Unsatisfiable, min_opt
from qwenjson.schema.flatten import Flattener
from qwenjson.schema.formats import EXACT_FORMATS, format_grammar
from qwenjson.schema.gbnf import QUOTE, Expr, group, repeat, seq
from qwenjson.schema.regex import regex_grammar

# A translator: (regex or format name, rule name prefix) → (expression, its rules), or None.
_Translator = Callable[[str, str], tuple[Expr, dict[str, Expr]] | None]

# String lengths may go further: `json-char{0,n}` is one rule repeated, and llama.cpp accepts
# n up to 1,999 (its MAX_REPETITION_THRESHOLD is 2,000 rules per repetition).
MAX_STRING_REPEAT = 1999


class StringRules(Flattener):
    """The string keywords: read, merged, and as GBNF."""

    def _read_strings(self, r: Reader, node: Node, f: Flat) -> None:
        """The string keywords of ``r`` into ``f``."""
        s = r.schema
        f.min_len = r.count("minLength") or 0
        f.max_len = r.count("maxLength")
        if "pattern" in s:
            if not isinstance(s["pattern"], str):
                raise SchemaError("pattern must be a string", r.pointer("pattern"))
            f.patterns = [(s["pattern"], r.pointer("pattern"))]
        if "format" in s and isinstance(s["format"], str):
            f.formats = [(s["format"], r.pointer("format"))]

    def _merge_strings(self, m: Flat, a: Flat, b: Flat) -> None:
        """The string keywords of ``a`` and ``b`` together, into ``m``."""
        m.min_len = max(a.min_len, b.min_len)
        m.max_len = min_opt(a.max_len, b.max_len)
        m.patterns = a.patterns + [x for x in b.patterns if x not in a.patterns]
        m.formats = a.formats + [x for x in b.formats if x not in a.formats]

    def _gen_string(self, f: Flat, node: Node) -> Expr:
        lo, hi = f.min_len, f.max_len
        if hi is not None and lo > hi:
            raise Unsatisfiable(f"minLength {lo} > maxLength {hi}", f.pointer)
        content: Expr | None = None
        for pattern, pptr in f.patterns:
            if content is None:
                content = self._try_external(regex_grammar, pattern, pptr, "pattern")
                if content is not None:
                    continue
            self.mark(
                pptr.rsplit("/", 1)[0],
                "pattern",
                "validated-after",
                "pattern checked after generation",
            )
        for fmt, fptr in f.formats:
            if content is None:
                content = self._try_external(format_grammar, fmt, fptr, "format")
                if content is not None and fmt in EXACT_FORMATS:
                    continue
            self.mark(
                fptr.rsplit("/", 1)[0],
                "format",
                "validated-after",
                f"format {fmt!r} checked after generation (if the validator knows it)",
            )
        if content is not None:
            for keyword, bound in (("minLength", lo > 0), ("maxLength", hi is not None)):
                if bound:
                    self.mark(
                        f.pointer,
                        keyword,
                        "validated-after",
                        "length beside pattern/format checked afterwards",
                    )
            return seq(QUOTE, group(content), QUOTE)
        if lo == 0 and hi is None:
            return STRING
        lo, hi = self.capped(
            f, lo, hi, MAX_STRING_REPEAT, ("minLength", "maxLength"), "too long for the grammar"
        )
        if lo == 0 and hi is None:
            return STRING
        return seq(QUOTE, repeat(JSON_CHAR_REF, lo, hi), QUOTE)

    def _try_external(self, fn: _Translator, arg: str, pointer: str, keyword: str) -> Expr | None:
        _, prefix = self._namespace(pointer_hint(pointer.rsplit("/", 1)[0]) + "-" + keyword)
        try:
            result = fn(arg, prefix)
        except UnsupportedKeywordError as e:
            self.mark(
                pointer.rsplit("/", 1)[0],
                keyword,
                "validated-after",
                f"not expressible in the grammar ({e.problem}); checked afterwards",
            )
            return None
        except SchemaError as e:
            raise SchemaError(e.message if e.pointer is None else str(e), pointer) from None
        if result is None:
            return None
        expr, extra = result
        self._adopt(extra, pointer)
        return expr
