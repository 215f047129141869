"""JSON Schema ``pattern`` (an ECMA-262 regular expression) → GBNF over a JSON string's content.

The grammar produced here describes the *JSON-encoded* content of a string (the text between the
quotes, in the canonical form of :mod:`qwenjson.schema.gbnf`) whose *decoded* value the pattern
matches with ``RegExp.prototype.test`` semantics: a pattern finds a match anywhere unless
``^``/``$`` pin it, so an unanchored side is padded with any characters.

How: the pattern is first rewritten from ECMAScript syntax into the Python syntax that means the
same (``\\cX``, ``\\u{…}``, ``\\p{…}``, ``(?<name>…)``), parsed into an op tree by the standard
library's regex parser, turned into a small intermediate form (character sets, sequences,
alternations, repetitions, anchors), the anchors are resolved exactly, and the result is printed
as GBNF. Each character set is split into what JSON writes literally and what it escapes, so a
pattern matching ``"`` produces ``\\"`` in the grammar, and ``[^a]`` covers all of Unicode but
``a``, escapes included.

Anything the grammar can't express exactly (lookaround, backreferences, word boundaries, huge
repetition bounds, …) is refused with :class:`UnsupportedKeywordError`; the compiler may then check
the pattern after generation instead.
"""

from __future__ import annotations

import bisect
import functools
import importlib
import re
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.schema.gbnf import char_class, json_escape_content, literal

# Why private modules: Python has no public API that exposes a regex's parse tree, and a
# hand-written parser would be a second, less tested implementation of the same syntax. The op
# names used below (LITERAL, IN, BRANCH, SUBPATTERN, MAX_REPEAT, …) have been stable since
# Python 2 (sre_parse; re._parser since 3.11); tests/test_regex.py pins the shapes this module
# relies on, so a change shows up there. Typeshed has no stubs for them, hence Any.
sre_p: Any = importlib.import_module("re._parser")
sre_c: Any = importlib.import_module("re._constants")

__all__ = ["MAX_REPEAT_BOUND", "is_ecma_regex", "regex_to_gbnf", "to_python_regex"]

# llama.cpp expands ``x{m,n}`` into about n symbols and n-m nested rules; past this bound the
# grammar grows faster than it helps, so the pattern is refused (it can be checked afterwards).
MAX_REPEAT_BOUND = 1000
# Anchors inside a bounded repetition are resolved by unrolling it; only small ones are unrolled.
_MAX_ANCHOR_UNROLL = 16
# Groups longer than this (in GBNF text) become rules of their own, as do groups with counted
# repetitions: see _Emitter.hoisted.
_HOIST_LENGTH = 200

_MAX_CP = 0x10FFFF
Ranges = tuple[tuple[int, int], ...]


# --------------------------------------------------------------------------------------------
# Character sets: sorted, disjoint, non-adjacent inclusive code-point ranges.


def _normalize(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return tuple(out)


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _subtract(a: Ranges, b: Ranges) -> Ranges:
    return _intersect(a, _complement(b))


def _contains(ranges: Ranges, cp: int) -> bool:
    i = bisect.bisect_right(ranges, (cp, _MAX_CP)) - 1
    return i >= 0 and ranges[i][0] <= cp <= ranges[i][1]


def _size(ranges: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


# Every character a JSON string can carry in UTF-8 text: lone surrogates can't be generated.
UNIVERSE: Ranges = ((0, 0xD7FF), (0xE000, _MAX_CP))
# The characters JSON writes as themselves (canonical form): not `"`, `\`, nor U+0000–U+001F.
_PLAIN: Ranges = _intersect(UNIVERSE, _complement(((0, 0x1F), (0x22, 0x22), (0x5C, 0x5C))))

_DIGIT: Ranges = ((0x30, 0x39),)
_WORD: Ranges = _normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
# ECMA-262 WhiteSpace and LineTerminator (what `\s` matches there): not Python's `\s`.
_SPACE: Ranges = _normalize(
    [
        (0x09, 0x0D),  # \t \n \v \f \r
        (0x20, 0x20),
        (0xA0, 0xA0),
        (0x1680, 0x1680),
        (0x2000, 0x200A),
        (0x2028, 0x2029),  # line and paragraph separators
        (0x202F, 0x202F),
        (0x205F, 0x205F),
        (0x3000, 0x3000),
        (0xFEFF, 0xFEFF),  # byte order mark
    ]
)
# ECMA `.` matches anything but the line terminators.
_DOT: Ranges = _complement(((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)))

_CATEGORIES: dict[Any, Ranges] = {
    sre_c.CATEGORY_DIGIT: _DIGIT,
    sre_c.CATEGORY_NOT_DIGIT: _complement(_DIGIT),
    sre_c.CATEGORY_WORD: _WORD,
    sre_c.CATEGORY_NOT_WORD: _complement(_WORD),
    sre_c.CATEGORY_SPACE: _SPACE,
    sre_c.CATEGORY_NOT_SPACE: _complement(_SPACE),
}


_LINE_TERMINATORS: Ranges = _complement(_DOT)
# What the character-class escapes mean in ECMA-262 (for Python's matcher, see to_python_regex).
_SEMANTIC_ESCAPES: dict[str, Ranges] = {
    "d": _DIGIT,
    "D": _complement(_DIGIT),
    "w": _WORD,
    "W": _complement(_WORD),
    "s": _SPACE,
    "S": _complement(_SPACE),
}


# Every character with a case mapping lies below U+20000 (the planes above hold CJK ideographs
# and unassigned code points); tests/test_regex.py checks this against the running Python.
_CASED_LIMIT = 0x20000


@functools.cache
def _cased_code_points() -> tuple[int, ...]:
    """Code points whose simple lower or upper case is another single code point (computed once)."""
    out = []
    for cp in range(_CASED_LIMIT):
        ch = chr(cp)
        lo, up = ch.lower(), ch.upper()
        if (len(lo) == 1 and lo != ch) or (len(up) == 1 and up != ch):
            out.append(cp)
    return tuple(out)


@functools.cache
def _case_classes() -> dict[int, tuple[int, ...]]:
    """Each cased code point → every code point with the same simple case folding."""
    groups: dict[str, set[int]] = {}
    for cp in _cased_code_points():
        ch = chr(cp)
        key = ch.lower() if len(ch.lower()) == 1 else ch
        key = key.upper() if len(key.upper()) == 1 else key
        groups.setdefault(key, set()).add(cp)
        groups[key].add(ord(key))
    out: dict[int, tuple[int, ...]] = {}
    for members in groups.values():
        for cp in members:
            out[cp] = tuple(sorted(members))
    return out


def _fold_case(ranges: Ranges) -> Ranges:
    """``ranges`` closed under case-insensitive matching."""
    classes = _case_classes()
    extra = [
        (other, other)
        for cp in _cased_code_points()
        if _contains(ranges, cp)
        for other in classes.get(cp, ())
    ]
    return _normalize(list(ranges) + extra) if extra else ranges


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


# --------------------------------------------------------------------------------------------
# ECMAScript syntax → the Python syntax with the same meaning.

# ECMA-262 General_Category names and aliases (PropertyValueAliases.txt) → unicodedata prefixes.
_GENERAL_CATEGORIES: dict[str, tuple[str, ...]] = {}
for _names, _cats in [
    (("L", "Letter"), ("Lu", "Ll", "Lt", "Lm", "Lo")),
    (("LC", "Cased_Letter"), ("Lu", "Ll", "Lt")),
    (("Lu", "Uppercase_Letter"), ("Lu",)),
    (("Ll", "Lowercase_Letter"), ("Ll",)),
    (("Lt", "Titlecase_Letter"), ("Lt",)),
    (("Lm", "Modifier_Letter"), ("Lm",)),
    (("Lo", "Other_Letter"), ("Lo",)),
    (("M", "Mark", "Combining_Mark"), ("Mn", "Mc", "Me")),
    (("Mn", "Nonspacing_Mark"), ("Mn",)),
    (("Mc", "Spacing_Mark"), ("Mc",)),
    (("Me", "Enclosing_Mark"), ("Me",)),
    (("N", "Number"), ("Nd", "Nl", "No")),
    (("Nd", "Decimal_Number", "digit"), ("Nd",)),
    (("Nl", "Letter_Number"), ("Nl",)),
    (("No", "Other_Number"), ("No",)),
    (("P", "Punctuation", "punct"), ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po")),
    (("Pc", "Connector_Punctuation"), ("Pc",)),
    (("Pd", "Dash_Punctuation"), ("Pd",)),
    (("Ps", "Open_Punctuation"), ("Ps",)),
    (("Pe", "Close_Punctuation"), ("Pe",)),
    (("Pi", "Initial_Punctuation"), ("Pi",)),
    (("Pf", "Final_Punctuation"), ("Pf",)),
    (("Po", "Other_Punctuation"), ("Po",)),
    (("S", "Symbol"), ("Sm", "Sc", "Sk", "So")),
    (("Sm", "Math_Symbol"), ("Sm",)),
    (("Sc", "Currency_Symbol"), ("Sc",)),
    (("Sk", "Modifier_Symbol"), ("Sk",)),
    (("So", "Other_Symbol"), ("So",)),
    (("Z", "Separator"), ("Zs", "Zl", "Zp")),
    (("Zs", "Space_Separator"), ("Zs",)),
    (("Zl", "Line_Separator"), ("Zl",)),
    (("Zp", "Paragraph_Separator"), ("Zp",)),
    (("C", "Other"), ("Cc", "Cf", "Cs", "Co", "Cn")),
    (("Cc", "Control", "cntrl"), ("Cc",)),
    (("Cf", "Format"), ("Cf",)),
    (("Co", "Private_Use"), ("Co",)),
    (("Cn", "Unassigned"), ("Cn",)),
]:
    for _name in _names:
        _GENERAL_CATEGORIES[_name] = _cats


@functools.cache
def _all_category_ranges() -> dict[str, Ranges]:
    """Each Unicode general category → its code points (one pass over Unicode, done once)."""
    out: dict[str, list[tuple[int, int]]] = {}
    category = unicodedata.category
    prev, start = category("\x00"), 0
    for cp in range(1, _MAX_CP + 2):
        cat = category(chr(cp)) if cp <= _MAX_CP else ""
        if cat != prev:
            out.setdefault(prev, []).append((start, cp - 1))
            prev, start = cat, cp
    return {cat: tuple(ranges) for cat, ranges in out.items()}


def _category_ranges(cats: tuple[str, ...]) -> Ranges:
    table = _all_category_ranges()
    return _normalize([r for cat in cats for r in table.get(cat, ())])


def _property_ranges(name: str) -> Ranges:
    key = name.split("=", 1)[1] if name.startswith(("General_Category=", "gc=")) else name
    if key in _GENERAL_CATEGORIES:
        return _category_ranges(_GENERAL_CATEGORIES[key])
    if key in ("Any",):
        return ((0, _MAX_CP),)
    if key in ("ASCII",):
        return ((0, 0x7F),)
    raise UnsupportedKeywordError(
        "pattern", "", f"Unicode property \\p{{{name}}} (only general categories are supported)"
    )


def _class_body(ranges: Ranges) -> str:
    """Python class items for ``ranges``, escaped so they are safe anywhere inside a class."""

    def char(cp: int) -> str:
        if cp < 0x80 and chr(cp).isalnum():
            return chr(cp)
        return f"\\x{cp:02x}" if cp <= 0xFF else f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"

    return "".join(char(lo) if lo == hi else f"{char(lo)}-{char(hi)}" for lo, hi in ranges)


def _ecma_to_python(pattern: str, semantic: bool = False) -> str:
    """Rewrite the ECMAScript-only syntax of ``pattern`` into Python syntax with the same meaning.

    Patterns in JSON Schema are ECMA-262 regular expressions with Unicode semantics. Most of the
    syntax is shared with Python's; the rest is rewritten here, escape by escape, before Python's
    parser sees it. The grammar path handles the semantic differences (`\\d`, `\\w`, `\\s`, `.`,
    `$`) on the tree; with ``semantic`` they are rewritten here too, for Python's matcher.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise SchemaError(f"invalid regular expression {pattern!r}: trailing backslash")
            d = pattern[i + 1]
            if d == "c" and i + 2 < n and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
                out.append(f"\\x{ord(pattern[i + 2]) % 32:02x}")  # \cX: control character X
                i += 3
                continue
            if d == "u" and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 3)
                digits = pattern[i + 3 : end] if end > 0 else ""
                if not re.fullmatch(r"[0-9A-Fa-f]{1,6}", digits) or int(digits, 16) > _MAX_CP:
                    raise SchemaError(f"invalid regular expression {pattern!r}: bad \\u{{…}}")
                out.append(f"\\U{int(digits, 16):08x}")
                i = end + 1
                continue
            pair = re.match(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", pattern[i:], re.I)
            if d == "u" and pair:
                # A surrogate pair written as two escapes is one code point (ECMA u flag).
                high, low = int(pair[1], 16), int(pair[2], 16)
                out.append(f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}")
                i += 12
                continue
            if d in "pP":
                end = pattern.find("}", i + 3) if pattern.startswith("{", i + 2) else -1
                if end < 0:
                    raise SchemaError(f"invalid regular expression {pattern!r}: bad \\{d}{{…}}")
                ranges = _property_ranges(pattern[i + 3 : end])
                if d == "P":
                    ranges = _complement(ranges)
                body = _class_body(ranges)
                out.append(body if in_class else f"[{body}]")
                i = end + 1
                continue
            if d == "k":
                name = re.match(r"k<([A-Za-z_][A-Za-z0-9_]*)>", pattern[i + 1 :])
                if not semantic or not name:
                    raise UnsupportedKeywordError("pattern", "", "backreference \\k<…>")
                out.append(f"(?P={name[1]})")
                i += 1 + name.end()
                continue
            if semantic and d in _SEMANTIC_ESCAPES:
                ranges = _SEMANTIC_ESCAPES[d]
                out.append(_class_body(ranges) if in_class else f"[{_class_body(ranges)}]")
                i += 2
                continue
            if semantic and d in "bB" and not in_class:
                out.append(f"(?a:\\{d})")  # ECMA's word boundaries are ASCII-only, like its \\w
                i += 2
                continue
            if d in "AZzGgi":
                # Python-only escapes (anchors and friends) are syntax errors in ECMA-262 with the
                # `u` flag; translating them to Python's meaning would be wrong.
                raise SchemaError(f"invalid regular expression {pattern!r}: unknown escape \\{d}")
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            if pattern.startswith("[^]", i):
                out.append("[\\s\\S]")  # ECMA: any character
                i += 3
                continue
            if pattern.startswith("[]", i):
                if not semantic:
                    raise UnsupportedKeywordError("pattern", "", "empty class [] never matches")
                out.append("(?!)")  # matches nowhere, like ECMA's empty class
                i += 2
                continue
            in_class = True
            out.append("[^" if pattern.startswith("[^", i) else "[")
            i += len(out[-1])
            continue
        if semantic and c in ".$":
            # ECMA `.` excludes every line terminator; `$` (no m flag) is the end of input only.
            out.append(f"[^{_class_body(_LINE_TERMINATORS)}]" if c == "." else "\\Z")
            i += 1
            continue
        if c == "{" and re.match(r"\{,\d+\}", pattern[i:]):
            # Python reads `a{,2}` as a{0,2}; ECMA-262 as text (or an error with the u flag).
            raise UnsupportedKeywordError(
                "pattern", "", f"{{,n}} means different things in ECMA-262 and Python: {pattern!r}"
            )
        if (
            c == "("
            and pattern.startswith("(?<", i)
            and not pattern.startswith(("(?<=", "(?<!"), i)
        ):
            out.append("(?P<")  # ECMA named group
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


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


# --------------------------------------------------------------------------------------------
# Intermediate form → GBNF text.

_SHORT_ESCAPE_LETTERS = {0x08: "b", 0x09: "t", 0x0A: "n", 0x0C: "f", 0x0D: "r"}


def _generates_many_rules(text: str) -> bool:
    # x{m,n} makes n-m rules and x{m,} one; x{n} none. Long text makes many through `*`, `(…)`.
    return len(text) > _HOIST_LENGTH or re.search(r"\{\d+,", text) is not None


class _Emitter:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix if prefix.endswith("-") else prefix + "-"
        self.rules: dict[str, str] = {}
        self.set_rules: dict[Ranges, str] = {}
        self.group_rules: dict[str, str] = {}
        self.chars_memo: dict[Ranges, str] = {}

    def named(self, body: str) -> str:
        """A rule for ``body`` (one per distinct body), referenced by name."""
        if body not in self.group_rules:
            name = f"{self.prefix}g{len(self.group_rules)}"
            self.group_rules[body] = name
            self.rules[name] = body
        return self.group_rules[body]

    def hoisted(self, group: str) -> str:
        """``group`` (a parenthesized expression), or a rule name for it when llama.cpp needs one.

        llama.cpp refuses a quantified group when the rules it generates inside, times the
        repetition count, reach 2,000 (MAX_REPETITION_THRESHOLD); a rule reference counts as one.
        Ranged repetitions inside are what generate many rules, so such groups become rules.
        """
        if group.startswith("(") and _generates_many_rules(group):
            return self.named(group[1:-1])
        return group

    def chars(self, ranges: Ranges) -> str:
        """GBNF for one character of ``ranges``, JSON-encoded: a literal, class or rule name."""
        if ranges not in self.chars_memo:
            self.chars_memo[ranges] = self._chars(ranges)
        return self.chars_memo[ranges]

    def _chars(self, ranges: Ranges) -> str:
        if ranges == UNIVERSE:
            return "json-char"
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return literal(json_escape_content(chr(ranges[0][0])))
        if ranges in self.set_rules:
            return self.set_rules[ranges]
        alts = []
        plain = _intersect(ranges, _PLAIN)
        if plain:
            missing = _subtract(_PLAIN, plain)
            if len(plain) == 1 and plain[0][0] == plain[0][1]:
                alts.append(literal(chr(plain[0][0])))
            elif len(missing) < len(plain) and (not missing or missing[-1][1] < 0x80):
                # Mostly everything: a negated class is shorter. `"`, `\` and controls are never
                # plain, so they are always excluded here; their escaped forms come below.
                # Only ASCII exclusions, though: llama.cpp rejects a character split across
                # tokens when any completion of its first bytes falls in a negated class's
                # ranges (llama_grammar_match_partial_char), so [^…\u2028] would refuse "→" cut
                # after its first byte. Positive classes don't have that problem.
                alts.append(char_class(missing, negated_base='"\\\\\\x00-\\x1F'))
            else:
                alts.append(char_class(plain))
        for cp in (0x22, 0x5C):
            if _contains(ranges, cp):
                alts.append(literal("\\" + chr(cp)))
        shorts = "".join(
            letter for cp, letter in sorted(_SHORT_ESCAPE_LETTERS.items()) if _contains(ranges, cp)
        )
        if shorts:
            tail = literal(shorts) if len(shorts) == 1 else f"[{shorts}]"
            alts.append(literal("\\") + " " + tail)
        for high in (0, 1):
            lows = "".join(
                f"{low:x}"
                for low in range(16)
                if (cp := high * 16 + low) not in _SHORT_ESCAPE_LETTERS and _contains(ranges, cp)
            )
            if lows:
                tail = literal(lows) if len(lows) == 1 else f"[{lows}]"
                alts.append(literal("\\u00" + str(high)) + " " + tail)
        if len(alts) == 1 and " " not in alts[0]:
            return alts[0]
        name = f"{self.prefix}c{len(self.set_rules)}"
        self.set_rules[ranges] = name
        self.rules[name] = " | ".join(alts)
        return name

    def expr(self, node: _Node) -> str:
        """GBNF for ``node``: a sequence or alternation, not necessarily an atom."""
        if isinstance(node, _Alt):
            if _EMPTY in node.items:
                rest = _alt([i for i in node.items if i != _EMPTY])
                return f"{self.atom(rest)}?"
            return " | ".join(self.expr(i) for i in node.items)
        if isinstance(node, _Seq):
            if not node.items:
                return '""'
            parts: list[str] = []
            run: list[str] = []  # consecutive single characters become one literal
            for item in node.items:
                if isinstance(item, _Chars) and len(item.ranges) == 1 == _size(item.ranges):
                    run.append(chr(item.ranges[0][0]))
                    continue
                if run:
                    parts.append(literal(json_escape_content("".join(run))))
                    run = []
                parts.append(self.atom(item) if isinstance(item, _Alt) else self.expr(item))
            if run:
                parts.append(literal(json_escape_content("".join(run))))
            return " ".join(parts)
        return self.atom(node)

    def atom(self, node: _Node) -> str:
        """GBNF for ``node`` that binds tighter than sequence (safe to follow with a quantifier)."""
        if isinstance(node, _Chars):
            return self.chars(node.ranges)
        if isinstance(node, _Repeat):
            inner = self.atom(node.node)
            if isinstance(node.node, _Repeat) or (inner.startswith('"') and len(inner) > 3):
                inner = f"({inner})"  # a quantifier on a quantified atom or a longer literal
            inner = self.hoisted(inner)
            lo, hi = node.lo, node.hi
            if (lo, hi) == (0, None):
                return f"{inner}*"
            if (lo, hi) == (1, None):
                return f"{inner}+"
            if (lo, hi) == (0, 1):
                return f"{inner}?"
            if hi is None:
                return f"{inner}{{{lo},}}"
            if lo == hi:
                return f"{inner}{{{lo}}}"
            return f"{inner}{{{lo},{hi}}}"
        if isinstance(node, _Seq) and len(node.items) == 1:
            return self.atom(node.items[0])
        if (
            isinstance(node, _Seq)
            and all(isinstance(i, _Chars) and _size(i.ranges) == 1 for i in node.items)
            and node.items
        ):
            return self.expr(node)  # a single literal
        return f"({self.expr(node)})"


# --------------------------------------------------------------------------------------------


def _parse(pattern: str) -> Any:
    python_pattern = _ecma_to_python(pattern)
    try:
        with warnings.catch_warnings():
            # "Possible nested set" warnings: ECMA has no nested sets; the plain reading holds.
            warnings.simplefilter("ignore")
            return sre_p.parse(python_pattern)
    except re.error as exc:
        raise SchemaError(f"invalid regular expression {pattern!r}: {exc}") from None
    except RecursionError:
        raise UnsupportedKeywordError(
            "pattern", "", "regular expression nested too deeply"
        ) from None


def to_python_regex(pattern: str) -> str:
    """A Python regex whose ``re.search`` means what ``pattern`` means in ECMA-262 (JSON Schema).

    For checking ``pattern`` after generation: Python's own reading differs (``\\d`` and ``\\w``
    match non-ASCII digits and letters, ``\\s`` another set of spaces, ``.`` matches ``\\r``,
    ``$`` matches before a final newline, no ``\\p{…}``). Lookaround and backreferences are kept.
    Raises :class:`SchemaError` for an invalid pattern.

    Example: ``re.search(to_python_regex("^\\\\d$"), "৪")`` → ``None``.
    """
    python_pattern = _ecma_to_python(pattern, semantic=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(python_pattern)
    except re.error as exc:
        raise SchemaError(f"invalid regular expression {pattern!r}: {exc}") from None
    return python_pattern


# What may follow a backslash in ECMA-262 with the u flag (outside classes; inside, also "-").
_ECMA_ESCAPES = frozenset("fnrtvcxu0123456789dDwWsSbBpPk^$\\.*+?()[]{}|/")
_QUANTIFIER = re.compile(r"[*+?]|\{\d+(?:,\d*)?\}")


def _python_only_syntax(pattern: str) -> str | None:
    """What in ``pattern`` Python accepts but ECMA-262 (u flag) doesn't, or None."""
    i, n = 0, len(pattern)
    in_class = False
    quantified = 0  # 1 right after a quantifier, 2 after a lazy one ("*?")
    while i < n:
        c = pattern[i]
        if c == "\\":
            d = pattern[i + 1 : i + 2]
            if not (d in _ECMA_ESCAPES or (in_class and d == "-")):
                return f"\\{d} is not an ECMA-262 escape"
            if d == "0" and pattern[i + 2 : i + 3].isdigit():
                return "octal escapes are not ECMA-262 (with the u flag)"
            i, quantified = i + 2, 0
            continue
        if in_class:
            in_class = c != "]"
            i += 1
            continue
        quantifier = _QUANTIFIER.match(pattern, i)
        if quantifier and not pattern.startswith("(?", i - 1):
            if quantified == 1 and c == "?":
                quantified = 2
            elif quantified:
                return "a quantifier after a quantifier (Python's possessive form)"
            else:
                quantified = 1
            i = quantifier.end()
            continue
        quantified = 0
        if c == "[":
            in_class = True
            i += 2 if pattern.startswith("[^", i) else 1
            if pattern.startswith("]", i):  # [] and [^] are complete classes in ECMA-262
                in_class, i = False, i + 1
            continue
        if pattern.startswith("(?", i) and not re.match(
            r"\(\?(?::|=|!|<=|<!|<[A-Za-z_$][\w$]*>)", pattern[i:]
        ):
            return "(?…) groups other than (?: (?= (?! (?<= (?<! (?<name> are not ECMA-262"
        i += 1
    return None


def is_ecma_regex(pattern: str) -> bool:
    """Whether ``pattern`` is a valid ECMA-262 regular expression (u flag): the ``regex`` format.

    Stricter than Python's parser (no ``(?P<…>)``, ``(?i)``, ``(?#…)``, ``\\a``, possessive
    quantifiers) and more lenient where ECMA-262 is (``\\cX``, ``\\p{…}``, ``[]``, lookbehind of
    any width). Unicode properties other than general categories count as invalid (unchecked).
    """
    if _python_only_syntax(pattern) is not None:
        return False
    try:
        python_pattern = _ecma_to_python(pattern, semantic=True)
    except SchemaError:  # UnsupportedKeywordError included: an unknown \p{…}, or {,n}
        return False
    # Only syntax is checked here, and Python wants fixed-width lookbehind: look ahead instead.
    syntax = python_pattern.replace("(?<=", "(?=").replace("(?<!", "(?!")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(syntax)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


def regex_to_gbnf(pattern: str, prefix: str) -> tuple[str, dict[str, str]]:
    """GBNF for the JSON-encoded content of strings whose decoded value matches ``pattern``.

    Returns ``(expr, rules)``: a GBNF expression (it may reference ``json-char``) and extra rule
    definitions whose names start with ``prefix``. Raises :class:`UnsupportedKeywordError` for
    constructs a grammar can't express exactly and :class:`SchemaError` for an invalid regex.

    Example: ``regex_to_gbnf("^[0-9]{3}$", "p")`` → ``('[0-9]{3}', {})``.
    """
    tree = _parse(pattern)
    translator = _Translator(pattern)
    flags = tree.state.flags
    translator.check_flags(flags)
    try:
        node = translator.seq(tree, flags)
        triples = _resolve(node, translator)
    except RecursionError:
        raise translator.refuse("regular expression nested too deeply") from None
    alternatives = [
        _seq([_EMPTY if left else _PAD, body, _EMPTY if right else _PAD])
        for left, body, right in triples
    ]
    whole = _alt(alternatives)
    if whole == _NOTHING:
        raise translator.refuse("a pattern that matches no string")
    emitter = _Emitter(prefix)
    text = emitter.expr(whole)
    if _generates_many_rules(text):
        # Wherever the compiler puts it (inside a quantified group, say), one rule reference
        # keeps llama.cpp's count of generated rules low; see _Emitter.hoisted.
        return emitter.named(text), emitter.rules
    # An atom, so the caller can put it in a sequence between the quotes as it is.
    return (f"({text})" if isinstance(whole, _Alt) else text), emitter.rules
